//! Quantization-aware finetuning (recipe §5): the fake-quantized student learns
//! to reproduce the FP teacher's layer outputs; no labels are used. On CUDA the
//! step is recorded once as a CUDA graph and replayed (`Qat::capture`), so it must
//! never read a value back to the host.

use super::fake_quant::{train_fake_quant, QParams, TINY_AMAX};
use super::learned_amax::{fake_quant_learned, LearnedAmax};
use super::optimizer::{Adam, FlatParams, LossScale};
use super::quantizer::QuantTable;
use crate::cuda::graph::CudaGraph;
use crate::model::detector::Detector;
use crate::model::forward::{NoQuant, QuantHook};
use crate::model::graph::{channels_last, Graph, QuantId, ValueId};
use anyhow::{bail, Result};
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
    /// The learning rate, a device scalar (a captured step reads it on every replay).
    lr: Tensor,
    channels_last: bool,
    /// Activation ranges trained alongside the weights (`--learn-amax`).
    learned: Option<LearnedAmax>,
    graphed: Option<Graphed>,
}

/// The step recorded as a CUDA graph: its input buffer and its loss output.
struct Graphed {
    graph: CudaGraph,
    x: Tensor,
    loss: Tensor,
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
        let lr = Tensor::zeros([], (Kind::Float, device));
        Qat { teacher, params, adam, scale, weights, supervised, needed, half, lr, channels_last: false, learned: None, graphed: None }
    }

    /// Computes in channels-last layout (NHWC in memory): batches, activations and the
    /// teacher's weights; the student's weights are converted by each convolution.
    pub fn set_channels_last(&mut self, on: bool) {
        if on && !self.channels_last {
            self.teacher.weights_channels_last();
        }
        self.channels_last = on;
        self.graphed = None;
    }

    /// Also trains every calibrated activation amax (log-parameterized, Adam at `lr`);
    /// see [`LearnedAmax`]. `write_back_amax` puts the values into the student's table.
    pub fn learn_amax(&mut self, student: &Detector, lr: f64) {
        let q = student.quant.as_ref().expect("QAT needs a quantized student");
        self.learned = LearnedAmax::new(&q.table, lr, self.lr.device());
        self.graphed = None;
    }

    /// Copies learned activation ranges into the student's quantizers (before evaluating
    /// or saving it); nothing to do without `learn_amax`.
    pub fn write_back_amax(&self, student: &mut Detector) {
        if let (Some(l), Some(q)) = (&self.learned, student.quant.as_mut()) {
            l.write_back(&mut q.table);
        }
    }

    /// One step on batch `x`; returns the loss (sum over layers of per-item MSE, summed
    /// over the batch) as a device scalar. Replays the captured graph when there is one
    /// for this batch shape.
    pub fn step(&mut self, student: &mut Detector, x: &Tensor, lr: f64) -> Tensor {
        let _ = self.lr.fill_(lr);
        if let Some(g) = self.graphed.as_mut().filter(|g| g.x.size() == x.size()) {
            g.x.copy_(x);
            if g.graph.replay().is_ok() {
                return g.loss.copy();
            }
            self.graphed = None;
        }
        self.step_eager(student, x)
    }

    /// Records the step for batches shaped like `x` as a CUDA graph (after three warm-up
    /// steps whose effect on the weights and optimizer state is undone). Later `step`s of
    /// that shape replay it: one launch instead of thousands.
    pub fn capture(&mut self, student: &mut Detector, x: &Tensor) -> Result<()> {
        let tch::Device::Cuda(device) = x.device() else { bail!("CUDA graphs need a CUDA device") };
        let mut state = vec![self.params.flat.detach()];
        state.extend(self.adam.state());
        state.extend(self.scale.state());
        state.extend(self.learned.iter().flat_map(LearnedAmax::state));
        let saved: Vec<Tensor> = state.iter().map(Tensor::copy).collect();
        let x_static = x.copy();
        // A libtorch error while recording (an op that syncs with the host) panics in tch.
        let recorded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.record(student, &x_static, device))).unwrap_or_else(|p| {
            let msg = p.downcast_ref::<String>().map(String::as_str).or_else(|| p.downcast_ref::<&str>().copied()).unwrap_or("panic");
            Err(anyhow::anyhow!("{}", crate::util::torch_error_line(msg)))
        });
        // Whether or not the capture worked, the warm-up steps are undone.
        tch::no_grad(|| {
            for (t, s) in state.iter().zip(&saved) {
                t.shallow_clone().copy_(s);
            }
        });
        let (graph, loss) = recorded?;
        self.graphed = Some(Graphed { graph, x: x_static, loss });
        Ok(())
    }

    /// Three warm-up steps on the graph's side stream, then one step recorded.
    fn record(&mut self, student: &mut Detector, x: &Tensor, device: usize) -> Result<(CudaGraph, Tensor)> {
        let mut graph = CudaGraph::new(device)?;
        for _ in 0..3 {
            let _ = self.step_eager(student, x);
        }
        // The warm-up's cached blocks go back before the graph takes its own pool.
        CudaGraph::empty_cache()?;
        graph.begin()?;
        let loss = self.step_eager(student, x);
        graph.end()?;
        Ok((graph, loss))
    }

    /// What a resumed run needs besides the weights: Adam's moments and step count and
    /// the loss scale, by name.
    pub fn optimizer_state(&self) -> Vec<(String, Tensor)> {
        let names = ["adam.m", "adam.v", "adam.steps", "loss_scale.scale", "loss_scale.growth"];
        let tensors = self.adam.state().into_iter().chain(self.scale.state());
        names.iter().zip(tensors).map(|(n, t)| (n.to_string(), t)).collect()
    }

    /// Restores what `optimizer_state` saved (shapes must match this student).
    pub fn load_optimizer_state(&mut self, saved: &[(String, Tensor)]) -> Result<()> {
        for (name, mine) in self.optimizer_state() {
            let Some((_, t)) = saved.iter().find(|(n, _)| *n == name) else { bail!("optimizer state has no `{name}`") };
            if t.size() != mine.size() {
                bail!("optimizer state `{name}` has shape {:?}, this model needs {:?}", t.size(), mine.size());
            }
            tch::no_grad(|| mine.shallow_clone().copy_(t));
        }
        Ok(())
    }

    /// The step as kernels launched one by one. Nothing here waits for the GPU.
    fn step_eager(&mut self, student: &mut Detector, x: &Tensor) -> Tensor {
        let keep = &self.supervised;
        let only = Some(self.needed.as_slice());
        let x = if self.half { x.to_kind(Kind::Half) } else { x.shallow_clone() };
        let x = if self.channels_last { channels_last(&x) } else { x };
        let targets = tch::no_grad(|| self.teacher.run_nodes(&x, &mut NoQuant, keep, only));
        // Weights: fake-quantized all at once on the flat buffer, then viewed by the convs.
        let wq = self.weights.apply(&self.params.flat);
        let wq = if self.half { wq.to_kind(Kind::Half) } else { wq };
        self.params.bind(&mut student.graph, &wq);
        let table = &student.quant.as_ref().expect("QAT needs a quantized student").table;
        let amaxes = self.learned.as_ref().map(LearnedAmax::amaxes);
        let learned = self.learned.as_ref().zip(amaxes.as_deref());
        let outs = student.graph.run_nodes(&x, &mut TrainQuant { table, learned }, keep, only);
        let mut loss = Tensor::zeros([], (Kind::Float, x.device()));
        for &v in keep {
            // In the compute precision; the mean accumulates (and returns) fp32.
            let d = outs.get(v) - targets.get(v);
            loss += d.square().mean_dim([1i64, 2, 3].as_slice(), false, Kind::Float).sum(Kind::Float);
        }
        if self.half {
            (&loss * &self.scale.scale).backward();
        } else {
            loss.backward();
        }
        drop(outs);
        let inv_scale = if self.half { self.scale.scale.reciprocal() } else { Tensor::ones([], (Kind::Float, x.device())) };
        let mut found_inf = self.adam.step(&mut self.params.flat, &self.lr, &inv_scale);
        if let Some(l) = self.learned.as_mut() {
            found_inf = found_inf.maximum(&l.step(&inv_scale));
        }
        if self.half {
            self.scale.update(&found_inf);
        }
        self.params.bind_master(&mut student.graph);
        loss.detach()
    }
}

/// Per-channel weight fake-quantization of the whole flat buffer: each element
/// carries its channel's scale; biases and unquantized convs pass through. Written
/// out in elementwise ops (ATen's per-channel kernel reads its zero points back to
/// the host, which a CUDA graph cannot record).
struct FlatWeightQuant {
    /// 127 / amax per element (amax is 1 where not quantized).
    inv_scale: Tensor,
    /// amax / 127 per element.
    scale: Tensor,
    amax: Tensor,
    /// Quantized elements, and its complement (whose gradient always passes).
    mask: Tensor,
    unquantized: Tensor,
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
        FlatWeightQuant::from_amax(amax, Tensor::cat(&mask_parts, 0))
    }

    fn from_amax(amax: Tensor, mask: Tensor) -> FlatWeightQuant {
        FlatWeightQuant { inv_scale: 127.0 / &amax, scale: &amax / 127.0, unquantized: mask.logical_not(), amax, mask }
    }

    /// Recipe §3 on every element: q = clamp(round(w·127/amax), −128, 127), value q·amax/127,
    /// gradient 1 where |w| ≤ amax (and everywhere for unquantized elements).
    fn apply(&self, w: &Tensor) -> Tensor {
        let q = (w * &self.inv_scale).round().clamp(-128.0, 127.0) * &self.scale;
        let pass = w.abs().le_tensor(&self.amax).logical_or(&self.unquantized);
        let through = w * pass.to_kind(Kind::Float);
        let value = q.where_self(&self.mask, w);
        &through + (value - &through).detach()
    }
}

/// Training-time activation quantization: the native fake-quant value with the
/// recipe's STE mask (|x| <= amax), or a learned amax's quantizer.
/// Weights arrive quantized.
struct TrainQuant<'a> {
    table: &'a QuantTable,
    /// The learned ranges and this step's amax tensors.
    learned: Option<(&'a LearnedAmax, &'a [Tensor])>,
}

impl QuantHook for TrainQuant<'_> {
    fn activation(&mut self, q: QuantId, x: &Tensor) -> Tensor {
        if let Some((l, amaxes)) = self.learned {
            if let Some(i) = l.slot(q) {
                return fake_quant_learned(x, &amaxes[i]);
            }
        }
        match &self.table.quantizers[q].params {
            Some(QParams::PerTensor { amax }) => train_fake_quant(x, *amax),
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
    fn flat_weight_quant_rounds_clamps_and_masks_the_gradient() {
        let amax = Tensor::from_slice(&[1.27f32, 1.27, 1.27, 1.27, 1.0]);
        let mask = Tensor::from_slice(&[true, true, true, true, false]);
        let fq = FlatWeightQuant::from_amax(amax, mask);
        // Steps of 0.01: 0.014 → 0.01, −0.026 → −0.03, 1.5 → 1.27 (clamped), −1.2851 → −1.28 (q = −128), 3.3 unquantized.
        let w = Tensor::from_slice(&[0.014f32, -0.026, 1.5, -1.2851, 3.3]).set_requires_grad(true);
        let y = fq.apply(&w);
        let got: Vec<f32> = Vec::try_from(y.detach()).unwrap();
        let want = [0.01f32, -0.03, 1.27, -1.28, 3.3];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{got:?}");
        }
        y.sum(Kind::Float).backward();
        let grad: Vec<f32> = Vec::try_from(w.grad()).unwrap();
        assert_eq!(grad, [1.0, 1.0, 0.0, 0.0, 1.0], "gradient only where |w| <= amax, and through unquantized elements");
    }

    #[test]
    fn lr_schedule() {
        let lrs: Vec<f64> = (0..10).map(lr_for_epoch).collect();
        assert_eq!(lrs, [1e-6, 1e-6, 1e-6, 1e-6, 1e-6, 1e-6, 1e-5, 1e-6, 1e-6, 1e-6]);
    }
}
