//! Quantization-aware finetuning (recipe §5): the fake-quantized student learns
//! to reproduce the FP teacher's layer outputs; no labels are used.

use super::fake_quant::{QParams, TINY_AMAX};
use super::optimizer::{Adam, FlatParams, LossScale};
use super::quantizer::QuantTable;
use crate::model::detector::Detector;
use crate::model::forward::{NoQuant, QuantHook};
use crate::model::graph::{Graph, QuantId, ValueId};
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

/// What the student imitates: the top-level layers of `supervised_layers(L, stride)` (the
/// recipe), and with `head` also the detect head's raw per-level maps (not in the recipe: it
/// lets QAT correct the head's own quantization error, which the recipe never trains).
#[derive(Clone, Copy, Debug)]
pub struct Supervision {
    pub stride: usize,
    pub head: bool,
}

impl Supervision {
    pub fn recipe(stride: usize) -> Supervision {
        Supervision { stride, head: false }
    }
}

pub struct Qat {
    teacher: Graph,
    pub params: FlatParams,
    pub adam: Adam,
    pub scale: LossScale,
    weights: FlatWeightQuant,
    supervised: Vec<ValueId>,
    /// Nodes the supervised outputs depend on (the detect head only with `Supervision::head`).
    needed: Vec<bool>,
    half: bool,
}

impl Qat {
    /// Freezes a teacher copy of `student`'s FP weights and makes the student
    /// trainable; `half` computes in fp16 with fp32 master weights (mixed precision).
    /// `teacher`: the FP graph to imitate (default: a copy of the student before training).
    pub fn new(student: &mut Detector, teacher: Option<Graph>, supervision: Supervision, half: bool) -> Qat {
        let mut teacher = teacher.unwrap_or_else(|| student.graph.deep_clone());
        let device = teacher.convs().next().map_or(tch::Device::Cpu, |(_, c)| c.weight.device());
        if half {
            teacher.to(device, Kind::Half);
        }
        let params = FlatParams::new(&student.graph);
        params.bind_master(&mut student.graph);
        let q = student.quant.as_ref().expect("QAT needs a quantized student");
        let weights = FlatWeightQuant::new(&student.graph, &params, &q.table);
        let g = &student.graph;
        let mut supervised: Vec<ValueId> = supervised_layers(g.layers.len(), supervision.stride)
            .into_iter()
            .filter(|&i| g.layers[i].outputs.len() == 1)
            .map(|i| g.layers[i].outputs[0])
            .collect();
        if supervision.head {
            supervised.extend(&g.heads);
        }
        let needed = g.needed_nodes(&supervised);
        let adam = Adam::new(&params.flat);
        let scale = LossScale::new(device);
        Qat { teacher, params, adam, scale, weights, supervised, needed, half }
    }

    /// One step on batch `x`; returns the loss (sum over layers of per-item MSE, summed
    /// over the batch) as a device scalar. Nothing here waits for the GPU.
    pub fn step(&mut self, student: &mut Detector, x: &Tensor, lr: f64) -> Tensor {
        let keep = &self.supervised;
        let only = Some(self.needed.as_slice());
        let x = if self.half { x.to_kind(Kind::Half) } else { x.shallow_clone() };
        let targets = tch::no_grad(|| self.teacher.run_nodes(&x, &mut NoQuant, keep, only));
        // Weights: fake-quantized all at once on the flat buffer, then viewed by the convs.
        let wq = self.weights.apply(&self.params.flat);
        let wq = if self.half { wq.to_kind(Kind::Half) } else { wq };
        self.params.bind(&mut student.graph, &wq);
        let table = &student.quant.as_ref().expect("QAT needs a quantized student").table;
        let outs = student.graph.run_nodes(&x, &mut TrainQuant(table), keep, only);
        let mut loss = Tensor::zeros([], (Kind::Float, x.device()));
        for &v in keep {
            let d = outs.get(v).to_kind(Kind::Float) - targets.get(v).to_kind(Kind::Float);
            loss += d.square().mean_dim([1i64, 2, 3].as_slice(), false, Kind::Float).sum(Kind::Float);
        }
        if self.half {
            (&loss * &self.scale.scale).backward();
        } else {
            loss.backward();
        }
        drop(outs);
        let inv_scale = if self.half { self.scale.scale.reciprocal() } else { Tensor::ones([], (Kind::Float, x.device())) };
        let found_inf = self.adam.step(&mut self.params.flat, lr, &inv_scale);
        if self.half {
            self.scale.update(&found_inf);
        }
        self.params.bind_master(&mut student.graph);
        loss.detach()
    }
}

/// Per-channel weight fake-quantization of the whole flat buffer: each element
/// carries its channel's scale; biases and unquantized convs pass through.
struct FlatWeightQuant {
    scale: Tensor,
    zero: Tensor,
    amax: Tensor,
    mask: Tensor,
}

impl FlatWeightQuant {
    fn new(graph: &Graph, params: &FlatParams, table: &QuantTable) -> FlatWeightQuant {
        let device = params.flat.device();
        let mut amax_parts = Vec::new();
        let mut mask_parts = Vec::new();
        for s in &params.spans {
            let n: i64 = s.size.iter().product();
            let slot = graph.nodes[s.node].quant.weight.filter(|w| w.enabled && !s.is_bias);
            let amax = slot.and_then(|w| table.quantizers[w.quant].amax.as_ref());
            match amax {
                Some(a) => {
                    let per = n / s.size[0];
                    amax_parts.push(a.to_device(device).to_kind(Kind::Float).clamp_min(TINY_AMAX).unsqueeze(1).expand([s.size[0], per], false).reshape([-1]));
                    mask_parts.push(Tensor::ones([n], (Kind::Bool, device)));
                }
                None => {
                    amax_parts.push(Tensor::ones([n], (Kind::Float, device)));
                    mask_parts.push(Tensor::zeros([n], (Kind::Bool, device)));
                }
            }
        }
        let amax = Tensor::cat(&amax_parts, 0);
        FlatWeightQuant { scale: &amax / 127.0, zero: amax.zeros_like().to_kind(Kind::Int), amax, mask: Tensor::cat(&mask_parts, 0) }
    }

    fn apply(&self, w: &Tensor) -> Tensor {
        let n = w.size()[0];
        let clipped = w.clamp_tensor(Some(-&self.amax), Some(self.amax.shallow_clone()));
        let q = clipped.view([n, 1]).fake_quantize_per_channel_affine(&self.scale, &self.zero, 0, -128, 127).view([n]);
        q.where_self(&self.mask, w)
    }
}

/// Training-time activation quantization: the recipe's STE mask (|x| <= amax)
/// from one clamp before the native fake-quant kernel. Weights arrive quantized.
struct TrainQuant<'a>(&'a QuantTable);

impl QuantHook for TrainQuant<'_> {
    fn activation(&mut self, q: QuantId, x: &Tensor) -> Tensor {
        match &self.0.quantizers[q].params {
            Some(QParams::PerTensor { amax }) => x.clamp(-amax, *amax).fake_quantize_per_tensor_affine(amax / 127.0, 0, -128, 127),
            Some(p) => p.apply(x),
            None => x.shallow_clone(),
        }
    }
    fn weight(&mut self, _: QuantId, w: &Tensor) -> Tensor {
        w.shallow_clone()
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
