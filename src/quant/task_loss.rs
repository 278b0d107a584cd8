//! The YOLOv9 training loss (upstream `utils/loss_tal.py` `ComputeLoss`), computed
//! from the detect head's raw maps and the training loader's labels:
//!
//! * anchors assigned by [`Assigner`] (topk 10, alpha 0.5, beta 6);
//! * classification: BCE with logits against the assigner's soft targets, summed
//!   and divided by the targets' sum (at least 1);
//! * box: `1 − CIoU` of the decoded box and its label, and the distribution focal
//!   loss over the 16 DFL bins (Li et al., "Generalized Focal Loss", NeurIPS 2020),
//!   both weighted by the anchor's target score;
//! * gains box 7.5, cls 0.5, dfl 1.5, and the sum times the batch size (what
//!   upstream `train.py` backpropagates);
//! * segmentation models add the mask term ([`super::mask_loss`], upstream
//!   `utils/segment/loss_tal.py`) with gain 2.5 / batch.
//!
//! The foreground is applied as a mask over all anchors (upstream selects it), so
//! shapes never depend on the data and a CUDA graph can record the loss.

use super::assigner::{Assigner, Assignment, GtBoxes};
use super::box_iou::ciou;
use super::mask_loss::{mask_loss, MASK_GAIN};
use crate::model::forward::anchors;
use tch::{Kind, Tensor};

/// Upstream's gains (hard-coded in `loss_tal.py`).
pub const BOX_GAIN: f64 = 7.5;
pub const CLS_GAIN: f64 = 0.5;
pub const DFL_GAIN: f64 = 1.5;

pub struct TaskLoss {
    pub nc: i64,
    pub reg_max: i64,
    pub strides: Vec<f64>,
    pub assigner: Assigner,
}

/// The loss and what went into it.
pub struct LossParts {
    /// The scalar to backpropagate: (box + cls + dfl) × batch size.
    pub total: Tensor,
    /// (3,) box, cls, dfl after their gains (upstream's `loss_items`); (4,) with the mask
    /// term last for [`TaskLoss::compute_segment`].
    pub items: Tensor,
    pub assignment: Assignment,
}

/// Batch labels `(image, class, [cx, cy, w, h] normalized)` as padded corner boxes in
/// pixels of an `h × w` input: at least `min_per_image` slots per image (padding
/// beyond the labels), so that batches can share one shape.
pub fn gt_boxes(labels: &[(usize, usize, [f32; 4])], batch: usize, (h, w): (i64, i64), min_per_image: usize, device: tch::Device) -> GtBoxes {
    let mut counts = vec![0usize; batch];
    labels.iter().filter(|l| l.0 < batch).for_each(|l| counts[l.0] += 1);
    let m = counts.iter().copied().max().unwrap_or(0).max(min_per_image);
    let mut cls = vec![0f32; batch * m];
    let mut boxes = vec![0f32; batch * m * 4];
    let mut mask = vec![0f32; batch * m];
    let mut next = vec![0usize; batch];
    let (w, h) = (w as f32, h as f32);
    for &(i, c, [cx, cy, bw, bh]) in labels.iter().filter(|l| l.0 < batch) {
        let k = i * m + next[i];
        next[i] += 1;
        // Upstream scales xywh first, then converts (`xywh2xyxy(out.mul_(scale))`).
        let (cx, cy, bw, bh) = (cx * w, cy * h, bw * w, bh * h);
        boxes[4 * k..4 * k + 4].copy_from_slice(&[cx - bw / 2.0, cy - bh / 2.0, cx + bw / 2.0, cy + bh / 2.0]);
        cls[k] = c as f32;
        // Upstream's mask is `box sum > 0` (a label at the origin corner counts as padding).
        mask[k] = if boxes[4 * k..4 * k + 4].iter().sum::<f32>() > 0.0 { 1.0 } else { 0.0 };
    }
    let (b, m) = (batch as i64, m as i64);
    let t = |v: &[f32], d: i64| crate::cuda::upload::f32s(v, device).view([b, m, d]);
    GtBoxes { labels: t(&cls, 1), boxes: t(&boxes, 4), mask: t(&mask, 1), masks: None }
}

impl TaskLoss {
    pub fn new(nc: usize, strides: &[f64]) -> TaskLoss {
        TaskLoss { nc: nc as i64, reg_max: 16, strides: strides.to_vec(), assigner: Assigner::default() }
    }

    /// The loss of raw head maps `heads[J]` (B, 4·reg_max + nc, H_J, W_J), in fp32.
    pub fn compute(&self, heads: &[Tensor], gt: &GtBoxes) -> LossParts {
        let b = heads[0].size()[0];
        let no = 4 * self.reg_max + self.nc;
        let flat: Vec<Tensor> = heads.iter().map(|h| h.to_kind(Kind::Float).reshape([b, no, -1])).collect();
        let parts = Tensor::cat(&flat, 2).split_with_sizes([4 * self.reg_max, self.nc], 1);
        let dist = parts[0].permute([0, 2, 1]);
        let logits = parts[1].permute([0, 2, 1]);
        let sizes: Vec<(i64, i64)> = heads.iter().map(|h| (h.size()[2], h.size()[3])).collect();
        let (points, strides) = anchors(&sizes, &self.strides, Kind::Float, logits.device());
        let (points, strides) = (points.transpose(0, 1), strides.transpose(0, 1));
        let boxes = self.decode(&dist, &points);
        let assignment = self.assigner.assign(&logits.detach().sigmoid(), &(boxes.detach() * &strides), &(&points * &strides), gt);
        let target_boxes = &assignment.boxes / &strides;
        let score_sum = assignment.scores.sum(Kind::Float).clamp_min(1.0);
        let cls = logits.binary_cross_entropy_with_logits::<Tensor>(&assignment.scores, None, None, tch::Reduction::Sum) / &score_sum;
        let fg = assignment.fg.unsqueeze(-1);
        let weight = assignment.scores.sum_dim_intlist([-1].as_slice(), true, Kind::Float);
        let iou = ciou(&boxes, &target_boxes);
        let box_loss = (iou.neg() + 1.0).g_mul(&weight).where_self(&fg, &weight.zeros_like()).sum(Kind::Float) / &score_sum;
        let dfl = self.dfl(&dist, &points, &target_boxes);
        let dfl_loss = (dfl * &weight).where_self(&fg, &weight.zeros_like()).sum(Kind::Float) / &score_sum;
        let items = Tensor::stack(&[box_loss * BOX_GAIN, cls * CLS_GAIN, dfl_loss * DFL_GAIN], 0);
        let total = items.sum(Kind::Float) * b as f64;
        LossParts { total, items, assignment }
    }

    /// The segmentation loss: [`TaskLoss::compute`]'s terms plus the mask term of the
    /// coefficient maps `coeffs` (per level, (B, nm, H, W)) and prototypes `proto` against
    /// `gt.masks`.
    pub fn compute_segment(&self, heads: &[Tensor], coeffs: &[Tensor], proto: &Tensor, gt: &GtBoxes) -> LossParts {
        let mut parts = self.compute(heads, gt);
        let s = heads[0].size();
        let b = s[0];
        // Upstream: imgsz = the first level's size times its stride.
        let imgsz = ((s[2] as f64 * self.strides[0]) as i64, (s[3] as f64 * self.strides[0]) as i64);
        let masks = gt.masks.as_ref().expect("the mask loss needs the labels' masks");
        let seg = mask_loss(coeffs, proto, &parts.assignment, masks, imgsz, self.assigner.topk) * (MASK_GAIN / b as f64);
        parts.total = &parts.total + &seg * b as f64;
        parts.items = Tensor::cat(&[parts.items.shallow_clone(), seg.unsqueeze(0)], 0);
        parts
    }

    /// Corner boxes in grid units from the DFL distributions (B, A, 4·reg_max).
    fn decode(&self, dist: &Tensor, points: &Tensor) -> Tensor {
        let (b, a, _) = dist.size3().expect("dist (B, A, 4·reg_max)");
        let proj = Tensor::arange(self.reg_max, (Kind::Float, dist.device()));
        let ltrb = dist.view([b, a, 4, self.reg_max]).softmax(3, Kind::Float).matmul(&proj);
        let lt_rb = ltrb.chunk(2, -1);
        Tensor::cat(&[points - &lt_rb[0], points + &lt_rb[1]], -1)
    }

    /// Distribution focal loss per anchor (B, A, 1): cross entropy against the two bins
    /// around each side's target distance, weighted by closeness, averaged over sides.
    fn dfl(&self, dist: &Tensor, points: &Tensor, target: &Tensor) -> Tensor {
        let (b, a, _) = dist.size3().expect("dist (B, A, 4·reg_max)");
        let corners = target.chunk(2, -1);
        let ltrb = Tensor::cat(&[points - &corners[0], &corners[1] - points], -1).clamp(0.0, (self.reg_max - 1) as f64 - 0.01);
        let left = ltrb.to_kind(Kind::Int64);
        let right = &left + 1;
        let w_left = right.to_kind(Kind::Float) - &ltrb;
        let w_right = 1.0 - &w_left;
        let log_p = dist.view([b, a, 4, self.reg_max]).log_softmax(-1, Kind::Float);
        let ce = |idx: &Tensor| -log_p.gather(-1, &idx.unsqueeze(-1), false).squeeze_dim(-1);
        let sides: Tensor = ce(&left) * w_left + ce(&right) * w_right;
        sides.mean_dim([-1].as_slice(), true, Kind::Float)
    }
}
