//! Quantization-aware finetuning (recipe §5): the fake-quantized student learns
//! to reproduce the FP teacher's layer outputs; no labels are used.

use super::optimizer::{FlatAdam, LossScale};
use super::quantizer::FakeQuant;
use crate::model::detector::Detector;
use crate::model::forward::NoQuant;
use crate::model::graph::{Graph, ValueId};
use tch::{Kind, Tensor};

/// LR by epoch: 1e-6, except 1e-5 in epoch 6.
pub fn lr_for_epoch(epoch: usize) -> f64 {
    if epoch == 6 {
        1e-5
    } else {
        1e-6
    }
}

/// Layers supervised: 0, s, 2s, … below L−1, plus L−2 (never the detect layer).
pub fn supervised_layers(num_layers: usize, stride: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (0..num_layers.saturating_sub(1)).step_by(stride.max(1)).collect();
    if num_layers >= 2 && !v.contains(&(num_layers - 2)) {
        v.push(num_layers - 2);
    }
    v
}

pub struct Qat {
    teacher: Graph,
    pub opt: FlatAdam,
    pub scale: LossScale,
    supervised: Vec<ValueId>,
    /// Nodes the supervised outputs depend on (the detect head is not among them).
    needed: Vec<bool>,
    half: bool,
}

impl Qat {
    /// Freezes a teacher copy of `student`'s FP weights and makes the student
    /// trainable; `half` computes in fp16 with fp32 master weights (mixed precision).
    pub fn new(student: &mut Detector, supervision_stride: usize, half: bool) -> Qat {
        let mut teacher = student.graph.deep_clone();
        if half {
            let device = teacher.convs().next().map_or(tch::Device::Cpu, |(_, c)| c.weight.device());
            teacher.to(device, Kind::Half);
        }
        let opt = FlatAdam::new(&mut student.graph, half);
        let g = &student.graph;
        let supervised: Vec<ValueId> = supervised_layers(g.layers.len(), supervision_stride)
            .into_iter()
            .filter_map(|i| (g.layers[i].outputs.len() == 1).then(|| g.layers[i].outputs[0]))
            .collect();
        let needed = g.needed_nodes(&supervised);
        Qat { teacher, opt, scale: LossScale::default(), supervised, needed, half }
    }

    /// One step on batch `x`; returns the loss (sum over layers of per-item MSE, summed over the batch).
    pub fn step(&mut self, student: &Detector, x: &Tensor, lr: f64) -> f64 {
        let q = student.quant.as_ref().expect("QAT needs a quantized student");
        let keep = &self.supervised;
        let only = Some(self.needed.as_slice());
        let x = if self.half { x.to_kind(Kind::Half) } else { x.shallow_clone() };
        let targets = tch::no_grad(|| self.teacher.run_nodes(&x, &mut NoQuant, keep, only));
        let outs = student.graph.run_nodes(&x, &mut FakeQuant(&q.table), keep, only);
        let mut loss = Tensor::zeros([], (Kind::Float, x.device()));
        for &v in keep {
            let d = outs.get(v).to_kind(Kind::Float) - targets.get(v).to_kind(Kind::Float);
            loss += d.square().mean_dim([1i64, 2, 3].as_slice(), false, Kind::Float).sum(Kind::Float);
        }
        let value = loss.double_value(&[]);
        let scale = if self.half { self.scale.scale } else { 1.0 };
        (&loss * scale).backward();
        let finite = self.opt.step(lr, scale);
        if self.half {
            self.scale.update(finite);
        }
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supervision_follows_the_recipe() {
        assert_eq!(supervised_layers(23, 1), (0..22).collect::<Vec<_>>());
        assert_eq!(supervised_layers(23, 4), vec![0, 4, 8, 12, 16, 20, 21]);
        assert_eq!(supervised_layers(23, 7), vec![0, 7, 14, 21]);
    }

    #[test]
    fn lr_schedule() {
        let lrs: Vec<f64> = (0..10).map(lr_for_epoch).collect();
        assert_eq!(lrs, [1e-6, 1e-6, 1e-6, 1e-6, 1e-6, 1e-6, 1e-5, 1e-6, 1e-6, 1e-6]);
    }
}
