//! Quantization-aware finetuning: one training step of the fake-quantized student
//! under an [`Objective`] — the reference recipe's layer-wise distillation from the
//! FP teacher, the YOLOv9 task loss on labels, or both — with Adam on fp32 master
//! weights, optional learned activation ranges and a moving average of the weights.
//! On CUDA the step is recorded once as a CUDA graph and replayed (`Qat::capture`),
//! so it must never read a value back to the host.

use super::assigner::GtBoxes;
use super::ema::Ema;
use super::fake_quant::{train_fake_quant, QParams, TINY_AMAX};
use super::learned_amax::{fake_quant_learned, LearnedAmax};
use super::objective::Objective;
use super::optimizer::{Adam, FlatParams, LossScale};
use super::quantizer::QuantTable;
use super::task_loss::TaskLoss;
use super::QuantModel;
use crate::cuda::graph::CudaGraph;
use crate::cuda::kernels::{bias_act, distill_mse, learned_fake_quant, silu_fake_quant, Epilogue};
use crate::model::forward::{QuantHook, TeacherPass};
use crate::model::graph::{channels_last, Graph, QuantId, ValueId};
use crate::model::Activation;
use anyhow::{bail, Result};
use tch::{Kind, Tensor};

/// Layers supervised: 0, s, 2s, … below L−1, plus L−2 (never the detect layer).
pub fn supervised_layers(num_layers: usize, stride: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (0..num_layers.saturating_sub(1)).step_by(stride.max(1)).collect();
    if num_layers >= 2 && !v.contains(&(num_layers - 2)) {
        v.push(num_layers - 2);
    }
    v
}

/// What the student imitates under distillation: the top-level layers of
/// `supervised_layers(L, stride)` (the recipe), and with `head` also the detect head's raw
/// per-level maps (not in the recipe: it lets QAT correct the head's own quantization error).
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
    /// The FP model the student imitates (distillation only).
    teacher: Option<Graph>,
    pub params: FlatParams,
    pub adam: Adam,
    pub scale: LossScale,
    weights: FlatWeightQuant,
    objective: Objective,
    task: TaskLoss,
    /// Values the distillation compares (empty without it).
    supervised: Vec<ValueId>,
    /// Values the student keeps: the supervised ones, and the head maps for the task loss.
    keep: Vec<ValueId>,
    /// Segmentation models: the coefficient maps and the prototypes the mask loss reads.
    mask_inputs: Option<(Vec<ValueId>, ValueId)>,
    /// Nodes the kept values depend on, for the student and for the teacher.
    needed: Vec<bool>,
    teacher_needed: Vec<bool>,
    half: bool,
    /// The learning rate, a device scalar (a captured step reads it on every replay).
    lr: Tensor,
    /// Activation ranges trained alongside the weights (`--learn-amax`).
    learned: Option<LearnedAmax>,
    ema: Option<Ema>,
    /// The last step's loss parts (box, cls, dfl, mask, distill), unweighted, on the device.
    pub parts: Tensor,
    graphed: Option<Graphed>,
}

/// The step recorded as a CUDA graph: its input buffers and its outputs.
struct Graphed {
    graph: CudaGraph,
    x: Tensor,
    gt: Option<GtBoxes>,
    loss: Tensor,
    parts: Tensor,
}

impl Graphed {
    fn fits(&self, x: &Tensor, gt: Option<&GtBoxes>) -> bool {
        let same_gt = match (&self.gt, gt) {
            (Some(a), Some(b)) => a.boxes.size() == b.boxes.size() && a.masks.as_ref().map(Tensor::size) == b.masks.as_ref().map(Tensor::size),
            (None, None) => true,
            _ => false,
        };
        self.x.size() == x.size() && same_gt
    }
}

impl Qat {
    /// Freezes a teacher copy of `student`'s FP weights and makes the student
    /// trainable; `half` computes in fp16 with fp32 master weights (mixed precision).
    /// `teacher`: the FP graph to imitate (default: a copy of the student before training).
    /// The objective is the recipe's distillation until [`Qat::set_objective`].
    pub fn new(student: &mut impl QuantModel, teacher: Option<Graph>, supervision: Supervision, half: bool) -> Qat {
        let mut teacher = teacher.unwrap_or_else(|| student.graph().deep_clone());
        let device = teacher.convs().next().map_or(tch::Device::Cpu, |(_, c)| c.weight.device());
        if half {
            teacher.to(device, Kind::Half);
        }
        let params = FlatParams::new(student.graph());
        params.bind_master(student.graph_mut());
        let q = student.quant().expect("QAT needs a quantized student");
        let weights = FlatWeightQuant::new(student.graph(), &params, &q.table);
        let g = student.graph();
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
        let task = TaskLoss::new(g.nc, &g.strides);
        let parts = Tensor::zeros([5], (Kind::Float, device));
        Qat {
            teacher: Some(teacher),
            params,
            adam,
            scale,
            weights,
            objective: Objective::distill(),
            task,
            keep: supervised.clone(),
            mask_inputs: g.proto.map(|p| (g.coefficient_maps(), p)),
            supervised,
            teacher_needed: needed.clone(),
            needed,
            half,
            lr,
            learned: None,
            ema: None,
            parts,
            graphed: None,
        }
    }

    /// What the step minimizes. Without distillation the teacher is dropped.
    pub fn set_objective(&mut self, student: &impl QuantModel, objective: Objective) {
        self.objective = objective;
        let g = student.graph();
        if !objective.uses_teacher() {
            self.teacher = None;
            self.supervised.clear();
        }
        self.keep = self.supervised.clone();
        if objective.uses_labels() {
            let mask_inputs = self.mask_inputs.iter().flat_map(|(coeffs, p)| coeffs.iter().copied().chain([*p]));
            let wanted: Vec<ValueId> = g.heads.iter().copied().chain(mask_inputs).collect();
            self.keep.extend(wanted.into_iter().filter(|h| !self.supervised.contains(h)));
        }
        self.needed = g.needed_nodes(&self.keep);
        self.graphed = None;
    }

    pub fn objective(&self) -> Objective {
        self.objective
    }

    /// Keeps a moving average of the weights (and learned ranges), upstream's `ModelEMA`;
    /// evaluation and checkpoints then use the average ([`Qat::bind_for_eval`]).
    pub fn enable_ema(&mut self, decay: f64, tau: f64) {
        let log_amax = self.learned.as_ref().map(|l| &l.log_amax);
        self.ema = Some(Ema::new(&self.params.flat, log_amax, decay, tau));
        self.graphed = None;
    }

    /// Computes in channels-last layout (NHWC in memory): batches, activations, the teacher's
    /// weights, and the student's, which the flat buffer (and the optimizer state laid out
    /// like it) then holds channels-last. Checkpoints and the saved optimizer state do not
    /// depend on the layout. `student` is rebound to the relaid weights.
    pub fn set_channels_last(&mut self, student: &mut impl QuantModel, on: bool) {
        if on == self.params.channels_last() {
            return;
        }
        if on {
            if let Some(t) = self.teacher.as_mut() {
                t.weights_channels_last();
            }
        }
        let laid_out = self.flat_laid_state();
        let canonical: Vec<Tensor> = laid_out.iter().map(|t| self.params.to_canonical(t)).collect();
        self.params.set_channels_last(on);
        for (t, c) in laid_out.iter().zip(&canonical) {
            tch::no_grad(|| t.shallow_clone().copy_(&self.params.from_canonical(c)));
        }
        self.graphed = None;
        self.params.bind_master(student.graph_mut());
    }

    pub fn channels_last(&self) -> bool {
        self.params.channels_last()
    }

    /// The state tensors laid out like the flat parameter buffer, besides the buffer itself.
    fn flat_laid_state(&self) -> Vec<Tensor> {
        let named = self.state_aliases();
        named.into_iter().filter(|(n, _)| FLAT_LAID.contains(&n.as_str()) && n != "master").map(|(_, t)| t).collect()
    }

    /// Also trains every calibrated activation amax (log-parameterized, Adam at `lr`);
    /// see [`LearnedAmax`]. Call before [`Qat::enable_ema`] to average the ranges too.
    pub fn learn_amax(&mut self, student: &impl QuantModel, lr: f64) {
        let q = student.quant().expect("QAT needs a quantized student");
        self.learned = LearnedAmax::new(&q.table, lr, self.lr.device());
        self.graphed = None;
    }

    /// Binds the weights and ranges to evaluate and save: the moving average when there is
    /// one, else the current ones. [`Qat::bind_master`] goes back to training.
    pub fn bind_for_eval(&self, student: &mut impl QuantModel) {
        match &self.ema {
            Some(e) => self.params.bind_plain(student.graph_mut(), &e.flat.detach()),
            None => self.params.bind_master(student.graph_mut()),
        }
        if let (Some(l), Some(q)) = (&self.learned, student.parts_mut().1.as_mut()) {
            match self.ema.as_ref().and_then(|e| e.log_amax.as_ref()) {
                Some(avg) => l.write_back_from(avg, &mut q.table),
                None => l.write_back(&mut q.table),
            }
        }
    }

    pub fn bind_master(&self, student: &mut impl QuantModel) {
        self.params.bind_master(student.graph_mut());
    }

    /// One distillation step on batch `x` (no labels); see [`Qat::step_with`].
    pub fn step(&mut self, student: &mut impl QuantModel, x: &Tensor, lr: f64) -> Tensor {
        self.step_with(student, x, None, lr)
    }

    /// One step on batch `x` with its labels `gt` (needed by the task loss); returns the
    /// weighted loss as a device scalar (the unweighted parts land in `parts`). Replays the
    /// captured graph when there is one for this batch shape and label count.
    pub fn step_with(&mut self, student: &mut impl QuantModel, x: &Tensor, gt: Option<&GtBoxes>, lr: f64) -> Tensor {
        let _ = self.lr.fill_(lr);
        if let Some(e) = self.ema.as_mut() {
            e.prepare();
        }
        if let Some(g) = self.graphed.as_mut().filter(|g| g.fits(x, gt)) {
            g.x.copy_(x);
            if let (Some(s), Some(b)) = (&g.gt, gt) {
                s.labels.shallow_clone().copy_(&b.labels);
                s.boxes.shallow_clone().copy_(&b.boxes);
                s.mask.shallow_clone().copy_(&b.mask);
                if let (Some(sm), Some(bm)) = (&s.masks, &b.masks) {
                    sm.shallow_clone().copy_(bm);
                }
            }
            if g.graph.replay().is_ok() {
                self.parts = g.parts.copy();
                return g.loss.copy();
            }
            self.graphed = None;
        }
        self.step_eager(student, x, gt)
    }

    /// Records the step for batches shaped like `x` (and label tensors shaped like `gt`) as
    /// a CUDA graph, after three warm-up steps whose effect on the weights and optimizer
    /// state is undone. Later steps of that shape replay it: one launch instead of thousands.
    pub fn capture(&mut self, student: &mut impl QuantModel, x: &Tensor, gt: Option<&GtBoxes>) -> Result<()> {
        let tch::Device::Cuda(device) = x.device() else { bail!("CUDA graphs need a CUDA device") };
        let state = self.mutable_state();
        let saved: Vec<Tensor> = state.iter().map(Tensor::copy).collect();
        let ema_updates = self.ema.as_ref().map(|e| e.updates);
        let x_static = x.copy();
        let gt_static = gt.map(|g| GtBoxes { labels: g.labels.copy(), boxes: g.boxes.copy(), mask: g.mask.copy(), masks: g.masks.as_ref().map(Tensor::copy) });
        // A libtorch error while recording (an op that syncs with the host) panics in tch.
        let recorded =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.record(student, &x_static, gt_static.as_ref(), device))).unwrap_or_else(|p| {
                let msg = p.downcast_ref::<String>().map(String::as_str).or_else(|| p.downcast_ref::<&str>().copied()).unwrap_or("panic");
                Err(anyhow::anyhow!("{}", crate::util::torch_error_line(msg)))
            });
        // Whether or not the capture worked, the warm-up steps are undone.
        tch::no_grad(|| {
            for (t, s) in state.iter().zip(&saved) {
                t.shallow_clone().copy_(s);
            }
        });
        if let (Some(e), Some(n)) = (self.ema.as_mut(), ema_updates) {
            e.updates = n;
        }
        let (graph, loss) = recorded?;
        self.graphed = Some(Graphed { graph, x: x_static, gt: gt_static, loss, parts: self.parts.shallow_clone() });
        Ok(())
    }

    /// Everything a step updates in place.
    fn mutable_state(&self) -> Vec<Tensor> {
        let mut state = vec![self.params.flat.detach()];
        state.extend(self.adam.state());
        state.extend(self.scale.state());
        state.extend(self.learned.iter().flat_map(LearnedAmax::state));
        state.extend(self.ema.iter().flat_map(Ema::state));
        state
    }

    /// Three warm-up steps on the graph's side stream, then one step recorded.
    fn record(&mut self, student: &mut impl QuantModel, x: &Tensor, gt: Option<&GtBoxes>, device: usize) -> Result<(CudaGraph, Tensor)> {
        let mut graph = CudaGraph::new(device)?;
        for _ in 0..3 {
            let _ = self.step_eager(student, x, gt);
        }
        // The warm-up's cached blocks go back before the graph takes its own pool.
        CudaGraph::empty_cache()?;
        graph.begin()?;
        let loss = self.step_eager(student, x, gt);
        graph.end()?;
        Ok((graph, loss))
    }

    /// What a resumed run needs besides the checkpoint, by name: the fp32 master weights
    /// (the checkpoint may hold their average), Adam's moments and step count, the loss
    /// scale, and the learned ranges and moving average when there are any. Buffers laid
    /// out like the flat parameters come in the canonical layout (every weight O×I×kh×kw).
    pub fn optimizer_state(&self) -> Vec<(String, Tensor)> {
        let canonical = |(n, t): (String, Tensor)| {
            let t = if FLAT_LAID.contains(&n.as_str()) { self.params.to_canonical(&t) } else { t };
            (n, t)
        };
        self.state_aliases().into_iter().map(canonical).collect()
    }

    /// The optimizer state by name, each tensor an alias of the live one.
    fn state_aliases(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![("master".to_string(), self.params.flat.detach())];
        let names = ["adam.m", "adam.v", "adam.steps", "loss_scale.scale", "loss_scale.growth"];
        let tensors = self.adam.state().into_iter().chain(self.scale.state());
        out.extend(names.iter().zip(tensors).map(|(n, t)| (n.to_string(), t)));
        if let Some(l) = &self.learned {
            let names = ["learned.log_amax", "learned.adam.m", "learned.adam.v", "learned.adam.steps"];
            out.extend(names.iter().zip(l.state()).map(|(n, t)| (n.to_string(), t)));
        }
        if let Some(e) = &self.ema {
            let names = ["ema.flat", "ema.log_amax"];
            out.extend(names.iter().zip(e.state()).map(|(n, t)| (n.to_string(), t)));
        }
        out
    }

    /// Restores what `optimizer_state` saved (shapes must match this student), and the
    /// moving average's update count.
    pub fn load_optimizer_state(&mut self, saved: &[(String, Tensor)], ema_updates: u64) -> Result<()> {
        for (name, mine) in self.state_aliases() {
            let Some((_, t)) = saved.iter().find(|(n, _)| *n == name) else { bail!("optimizer state has no `{name}`") };
            if t.size() != mine.size() {
                bail!("optimizer state `{name}` has shape {:?}, this model needs {:?}", t.size(), mine.size());
            }
            let t = if FLAT_LAID.contains(&name.as_str()) { self.params.from_canonical(&t.to_device(mine.device())) } else { t.shallow_clone() };
            tch::no_grad(|| mine.shallow_clone().copy_(&t));
        }
        if let Some(e) = self.ema.as_mut() {
            e.updates = ema_updates;
        }
        Ok(())
    }

    pub fn ema_updates(&self) -> Option<u64> {
        self.ema.as_ref().map(|e| e.updates)
    }

    /// The step as kernels launched one by one. Nothing here waits for the GPU.
    fn step_eager(&mut self, student: &mut impl QuantModel, x: &Tensor, gt: Option<&GtBoxes>) -> Tensor {
        let x = if self.half { x.to_kind(Kind::Half) } else { x.shallow_clone() };
        let x = if self.channels_last() { channels_last(&x) } else { x };
        let targets = self.teacher.as_ref().map(|t| tch::no_grad(|| t.run_nodes(&x, &mut TeacherPass, &self.supervised, Some(&self.teacher_needed))));
        // Weights: fake-quantized all at once on the flat buffer, then viewed by the convs.
        let wq = self.weights.apply(&self.params.flat);
        let wq = if self.half { wq.to_kind(Kind::Half) } else { wq };
        self.params.bind(student.graph_mut(), &wq);
        let table = &student.quant().expect("QAT needs a quantized student").table;
        let amaxes = self.learned.as_ref().map(LearnedAmax::amaxes);
        let learned = self.learned.as_ref().zip(amaxes.as_deref());
        let outs = student.graph().run_nodes(&x, &mut TrainQuant { table, learned }, &self.keep, Some(&self.needed));
        let mut distill = Tensor::zeros([], (Kind::Float, x.device()));
        if let Some(targets) = &targets {
            for &v in &self.supervised {
                let (s, t) = (outs.get(v), targets.get(v));
                // In the compute precision; the mean accumulates (and returns) fp32.
                distill += distill_mse(s, t).unwrap_or_else(|| (s - t).square().mean_dim([1i64, 2, 3].as_slice(), false, Kind::Float).sum(Kind::Float));
            }
        }
        let o = self.objective;
        let mut loss = &distill * o.distill_weight;
        let mut items = Tensor::zeros([4], (Kind::Float, x.device()));
        if o.uses_labels() {
            let g = student.graph();
            let gt = gt.expect("the task loss needs the batch's labels");
            let get = |v: &ValueId| outs.get(*v).shallow_clone();
            let heads: Vec<Tensor> = g.heads.iter().map(get).collect();
            let parts = match (&self.mask_inputs, &gt.masks) {
                (Some((coeffs, p)), Some(_)) => self.task.compute_segment(&heads, &coeffs.iter().map(get).collect::<Vec<_>>(), &get(p), gt),
                _ => self.task.compute(&heads, gt),
            };
            loss += parts.total * o.task_weight;
            let n = parts.items.size()[0];
            items = items.slice_scatter(&parts.items.detach(), 0, 0, n, 1);
        }
        self.parts = Tensor::cat(&[items, distill.detach().unsqueeze(0)], 0);
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
        if let Some(e) = self.ema.as_mut() {
            e.update(&self.params.flat, self.learned.as_ref().map(|l| &l.log_amax));
        }
        // Views of the master weights (no copy: this runs inside the recorded graph too).
        self.params.bind(student.graph_mut(), &self.params.flat.detach());
        loss.detach()
    }
}

/// Names of the optimizer state laid out like the flat parameter buffer.
const FLAT_LAID: [&str; 4] = ["master", "adam.m", "adam.v", "ema.flat"];

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

    /// pytorch-quantization's `fake_tensor_quant` on every element: q = clamp(round(w·127/amax), −128, 127), value q·amax/127,
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
                return learned_fake_quant(x, &amaxes[i]).unwrap_or_else(|| fake_quant_learned(x, &amaxes[i]));
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
    fn shares_quantized_values(&self) -> bool {
        true
    }
    fn splits_convs(&self) -> bool {
        true
    }
    fn activation_fused(&mut self, q: QuantId, z: &Tensor, bias: Option<&Tensor>, act: Activation) -> Option<Tensor> {
        let learned = self.learned.is_some_and(|(l, _)| l.slot(q).is_some());
        match (&self.table.quantizers[q].params, act, learned, bias) {
            (Some(QParams::PerTensor { amax }), Activation::SiLU, false, Some(b)) => bias_act(z, b, Epilogue::SiLU, Some(*amax)),
            (Some(QParams::PerTensor { amax }), Activation::SiLU, false, None) => silu_fake_quant(z, *amax),
            _ => None,
        }
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
}
