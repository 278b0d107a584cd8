//! The QAT epoch: batches through [`Qat`] steps under a learning-rate schedule, the
//! step recorded as a CUDA graph when it can be, the loss summed on the device and
//! read only for the progress line (the host never waits for the GPU within a step).

use super::assigner::GtBoxes;
use super::mask_loss::gt_masks;
use super::objective::LrSchedule;
use super::qat::Qat;
use super::task_loss::gt_boxes;
use super::QuantModel;
use crate::util::catch_oom;
use anyhow::{bail, Result};
use indicatif::ProgressBar;
use std::sync::atomic::{AtomicBool, Ordering};
use tch::{Device, Kind, Tensor};

/// One training batch: images in [0, 1] on the device and their labels
/// `(image, class, [cx, cy, w, h] normalized)`; with polygon labels, each label's
/// `mask_size`² mask in label order (see `TrainBatch::masks`).
pub struct Batch {
    pub x: Tensor,
    pub labels: Vec<(usize, usize, [f32; 4])>,
    pub masks: Vec<u8>,
    pub mask_size: usize,
}

/// A u8 (B,3,H,W) batch as float in [0,1] on `device`, uploaded without waiting for the
/// GPU ([`crate::cuda::upload`]).
pub fn images_to_tensor(images: &[u8], b: usize, h: usize, w: usize, device: Device) -> Tensor {
    crate::cuda::upload::bytes(images, device).view([b as i64, 3, h as i64, w as i64]).to_kind(Kind::Float) / 255.0
}

/// Label slots per image that a recorded step is padded to: at least 32, a power of two
/// over the first batch's largest count, so that most later batches fit the same graph
/// (a batch with more labels runs eagerly).
fn label_slots(labels: &[(usize, usize, [f32; 4])], batch: usize) -> usize {
    let mut counts = vec![0usize; batch.max(1)];
    labels.iter().filter(|l| l.0 < batch).for_each(|l| counts[l.0] += 1);
    (2 * counts.into_iter().max().unwrap_or(0)).next_power_of_two().max(32)
}

/// Mean losses of one epoch.
#[derive(Debug, Clone, Copy, Default)]
pub struct EpochStats {
    /// The weighted loss the optimizer saw.
    pub loss: f64,
    /// Unweighted task-loss items (box, cls, dfl, mask) and the layer MSE.
    pub parts: [f64; 5],
    pub images: usize,
    /// LR of the epoch's last step.
    pub lr: f64,
}

pub struct Trainer {
    pub schedule: LrSchedule,
    pub epochs: usize,
    pub iters: usize,
    /// Record the step as a CUDA graph at the first batch (CUDA only).
    pub want_graph: bool,
    /// Label slots per image of the recorded step (0 until recorded).
    slots: usize,
}

impl Trainer {
    pub fn new(schedule: LrSchedule, epochs: usize, iters: usize, want_graph: bool) -> Trainer {
        Trainer { schedule, epochs, iters, want_graph, slots: 0 }
    }

    /// Trains one epoch on `batches` (at most `iters` of them).
    pub fn epoch(
        &mut self,
        qat: &mut Qat,
        student: &mut impl QuantModel,
        batches: impl Iterator<Item = Batch>,
        epoch: usize,
        stop: &AtomicBool,
        bar: &ProgressBar,
    ) -> Result<EpochStats> {
        let labels_used = qat.objective().uses_labels();
        let mut sum = Tensor::zeros([], (Kind::Float, student_device(student)));
        let mut parts = Tensor::zeros([5], (Kind::Float, student_device(student)));
        let mut stats = EpochStats::default();
        let mut steps = 0usize;
        for (i, b) in batches.take(self.iters).enumerate() {
            if stop.load(Ordering::SeqCst) {
                bail!("interrupted in epoch {epoch}");
            }
            let lr = self.schedule.at(epoch, i, self.epochs, self.iters);
            let gt = labels_used.then(|| self.gt(&b));
            if self.want_graph {
                self.want_graph = false;
                match catch_oom(|| qat.capture(student, &b.x, gt.as_ref())) {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) | Err(e) => eprintln!("CUDA graph not used ({e:#}); launching kernels one by one"),
                }
            }
            let loss = catch_oom(|| qat.step_with(student, &b.x, gt.as_ref(), lr))?;
            sum += loss;
            parts += &qat.parts;
            stats.images += b.x.size()[0] as usize;
            stats.lr = lr;
            steps += 1;
            if i % 10 == 9 {
                bar.set_message(format!("loss {:.4} lr {lr:.1e}", sum.double_value(&[]) / steps as f64));
            }
            bar.set_position(i as u64 + 1);
        }
        let n = steps.max(1) as f64;
        stats.loss = sum.double_value(&[]) / n;
        let p: Vec<f64> = Vec::try_from(parts.to_kind(Kind::Double)).unwrap_or_default();
        for (k, v) in p.iter().enumerate().take(5) {
            stats.parts[k] = v / n;
        }
        Ok(stats)
    }

    /// The batch's labels, padded to the recorded step's slot count when they fit.
    fn gt(&mut self, b: &Batch) -> GtBoxes {
        let (n, h, w) = (b.x.size()[0] as usize, b.x.size()[2], b.x.size()[3]);
        if self.slots == 0 {
            self.slots = label_slots(&b.labels, n);
        }
        let mut gt = gt_boxes(&b.labels, n, (h, w), self.slots, b.x.device());
        if b.mask_size > 0 {
            let m = gt.boxes.size()[1] as usize;
            gt.masks = Some(gt_masks(&b.labels, &b.masks, b.mask_size, n, m, b.x.device()));
        }
        gt
    }
}

fn student_device(student: &impl QuantModel) -> Device {
    student.graph().convs().next().map_or(Device::Cpu, |(_, c)| c.weight.device())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_slots_leave_room_and_are_powers_of_two() {
        assert_eq!(label_slots(&[], 4), 32);
        let many: Vec<_> = (0..40).map(|_| (1usize, 0usize, [0.5f32; 4])).collect();
        assert_eq!(label_slots(&many, 4), 128);
    }
}
