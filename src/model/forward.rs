//! Runs a graph: each node in order, values freed after their last reader.
//! Quantizers act through a hook so that the same pass serves FP inference,
//! calibration (statistics) and fake-quantized training.

use super::config::Activation;
use super::graph::{Conv2d, Detect, Graph, Node, Op, QuantId, QuantSlot, ValueId};
use crate::cuda::kernels::{self, Epilogue};
use tch::{Kind, Tensor};

/// What happens at a quantizer slot.
pub trait QuantHook {
    fn activation(&mut self, quant: QuantId, x: &Tensor) -> Tensor;
    fn weight(&mut self, quant: QuantId, w: &Tensor) -> Tensor;
    /// Whether a value read through the same quantizer by several nodes may be quantized
    /// once for all of them, and a conv's activation fused with the quantizer all its
    /// readers share ([`QuantHook::activation_fused`]). False for hooks that count
    /// what they see (calibration).
    fn shares_quantized_values(&self) -> bool {
        false
    }
    /// Whether a conv whose output only feeds a Split may run as one conv per part (each part
    /// then contiguous; a split view is strided, so its readers copy it and concatenations of
    /// it take a slow path). Same values up to the convolutions' rounding: training only.
    fn splits_convs(&self) -> bool {
        false
    }
    /// `activation(quant, act(z + bias))` as one op, where the hook has one (None: not here);
    /// `z` is a convolution's output, `bias` its bias when the convolution left it out.
    fn activation_fused(&mut self, _quant: QuantId, _z: &Tensor, _bias: Option<&Tensor>, _act: Activation) -> Option<Tensor> {
        None
    }
}

/// Plain floating point: every slot is a no-op.
pub struct NoQuant;

impl QuantHook for NoQuant {
    fn activation(&mut self, _: QuantId, x: &Tensor) -> Tensor {
        x.shallow_clone()
    }
    fn weight(&mut self, _: QuantId, w: &Tensor) -> Tensor {
        w.shallow_clone()
    }
}

/// Plain floating point for a frozen teacher in training: [`NoQuant`], with convs that feed
/// a Split run per part ([`QuantHook::splits_convs`]).
pub struct TeacherPass;

impl QuantHook for TeacherPass {
    fn activation(&mut self, _: QuantId, x: &Tensor) -> Tensor {
        x.shallow_clone()
    }
    fn weight(&mut self, _: QuantId, w: &Tensor) -> Tensor {
        w.shallow_clone()
    }
    fn splits_convs(&self) -> bool {
        true
    }
}

/// Values computed by a forward pass; only those asked to be kept survive.
pub struct Values(Vec<Option<Tensor>>);

impl Values {
    pub fn get(&self, v: ValueId) -> &Tensor {
        self.0[v].as_ref().expect("value was not kept by the forward pass")
    }
    pub fn take(&mut self, v: ValueId) -> Tensor {
        self.0[v].take().expect("value was not kept by the forward pass")
    }
}

impl Graph {
    /// Eval output (B, 4+nc, A).
    pub fn forward(&self, x: &Tensor) -> Tensor {
        self.run(x, &mut NoQuant, &[self.output]).take(self.output)
    }

    /// Runs the graph, keeping `keep` (and nothing else that is done with).
    pub fn run(&self, x: &Tensor, hook: &mut dyn QuantHook, keep: &[ValueId]) -> Values {
        self.run_nodes(x, hook, keep, None)
    }

    /// Which nodes `keep` depends on; the rest need not run.
    pub fn needed_nodes(&self, keep: &[ValueId]) -> Vec<bool> {
        let mut want = vec![false; self.num_values];
        keep.iter().for_each(|&v| want[v] = true);
        let mut needed = vec![false; self.nodes.len()];
        for (i, n) in self.nodes.iter().enumerate().rev() {
            if n.outputs.iter().any(|&o| want[o]) {
                needed[i] = true;
                n.inputs.iter().for_each(|&v| want[v] = true);
            }
        }
        needed
    }

    /// Like [`Graph::run`], skipping nodes not marked in `only` (see [`Graph::needed_nodes`]).
    pub fn run_nodes(&self, x: &Tensor, hook: &mut dyn QuantHook, keep: &[ValueId], only: Option<&[bool]>) -> Values {
        let last_use = self.last_use(keep);
        let mut vals: Vec<Option<Tensor>> = (0..self.num_values).map(|_| None).collect();
        // Values already quantized (by a fused activation or a first reader), with their quantizer.
        let mut quantized: Vec<Option<(QuantId, Tensor)>> = (0..self.num_values).map(|_| None).collect();
        let share = hook.shares_quantized_values();
        let plan = Plan::new(self, keep, only, share, hook.splits_convs());
        vals[self.input] = Some(x.shallow_clone());
        for (i, node) in self.nodes.iter().enumerate() {
            if only.is_some_and(|m| !m[i]) || plan.done_by_conv[i] {
                continue;
            }
            let inputs: Vec<Tensor> = node.inputs.iter().zip(&node.quant.inputs).map(|(&v, slot)| read(hook, *slot, v, &vals, &mut quantized, share)).collect();
            match (&node.op, plan.split_by[i], plan.concat_quant(self, i)) {
                (Op::Conv(c), Some(j), _) => {
                    let Op::Split { sizes } = &self.nodes[j].op else { unreachable!("split_by names Split nodes") };
                    let mut start = 0;
                    for (&len, &o) in sizes.iter().zip(&self.nodes[j].outputs) {
                        let fused = plan.fused_output(c, o);
                        let y = conv_node(&c.rows(start, len), &inputs[0], node.quant.weight, fused, hook);
                        store(y, o, fused, &mut vals, &mut quantized);
                        start += len;
                    }
                }
                (Op::Conv(c), None, _) if node.quant.output.is_none_or(|s| !s.enabled) => {
                    let o = node.outputs[0];
                    let fused = plan.fused_output(c, o);
                    store(conv_node(c, &inputs[0], node.quant.weight, fused, hook), o, fused, &mut vals, &mut quantized);
                }
                (Op::Concat, _, Some(q)) => {
                    let parts: Vec<Tensor> = node.inputs.iter().map(|&v| read_as(hook, q, v, &vals, &mut quantized)).collect();
                    store((Tensor::cat(&parts, 1), true), node.outputs[0], Some(q), &mut vals, &mut quantized);
                }
                _ => {
                    for (o, y) in node.outputs.iter().zip(eval_node(node, &inputs, hook)) {
                        vals[*o] = Some(y);
                    }
                }
            }
            for &v in &node.inputs {
                if last_use[v] == Some(i) {
                    vals[v] = None;
                    quantized[v] = None;
                }
            }
        }
        Values(vals)
    }

    /// For each conv whose SiLU output is read only through one quantizer (every reader's
    /// enabled input slot names it, and the raw value is neither kept nor quantized as an
    /// output): that quantizer, so the activation and the fake-quant can run as one op.
    pub fn fusable_activations(&self, keep: &[ValueId], only: Option<&[bool]>) -> Vec<Option<QuantId>> {
        let sole = self.sole_quantizers(&self.consumers(), keep, only);
        self.nodes
            .iter()
            .map(|node| match &node.op {
                Op::Conv(c) if c.act == Activation::SiLU && node.quant.output.is_none_or(|s| !s.enabled) => sole[*node.outputs.first()?],
                _ => None,
            })
            .collect()
    }

    /// Per value: the quantizer every running reader reads it through, when there is one
    /// and the value is not kept raw. A Concat whose own value is read only through quantizer
    /// q reads its inputs through q ([`Plan::concat_quant`]): quantizing each part equals
    /// quantizing the whole, values and straight-through masks alike.
    fn sole_quantizers(&self, consumers: &[Vec<(usize, usize)>], keep: &[ValueId], only: Option<&[bool]>) -> Vec<Option<QuantId>> {
        let runs = |n: usize| only.is_none_or(|m| m[n]);
        let mut sole: Vec<Option<QuantId>> = vec![None; self.num_values];
        // Readers come after what they read, so a Concat's value is settled before its inputs.
        let mut order: Vec<ValueId> = (0..self.num_values).collect();
        let producer = self.producers();
        order.sort_by_key(|&v| std::cmp::Reverse(producer[v]));
        for v in order {
            if keep.contains(&v) {
                continue;
            }
            let mut readers = consumers[v].iter().filter(|&&(n, _)| runs(n)).peekable();
            if readers.peek().is_none() {
                continue;
            }
            let through = |&(n, k): &(usize, usize)| match self.nodes[n].quant.inputs[k].filter(|s| s.enabled) {
                Some(s) => Some(s.quant),
                None if self.concat_reads_quantized(n) => sole[self.nodes[n].outputs[0]],
                None => None,
            };
            let quants: Option<Vec<QuantId>> = readers.map(through).collect();
            sole[v] = quants.and_then(|q| q.iter().all(|&x| x == q[0]).then(|| q[0]));
        }
        sole
    }

    /// Whether node `n` is a Concat without quantizers of its own (inputs or output).
    fn concat_reads_quantized(&self, n: usize) -> bool {
        let node = &self.nodes[n];
        matches!(node.op, Op::Concat) && node.quant.inputs.iter().all(|s| s.is_none_or(|s| !s.enabled)) && node.quant.output.is_none_or(|s| !s.enabled)
    }

    /// Per node: for a conv (ungrouped, no output quantizer) whose output feeds only one
    /// running Split and is not kept, that Split.
    fn convs_feeding_splits(&self, consumers: &[Vec<(usize, usize)>], keep: &[ValueId], only: Option<&[bool]>) -> Vec<Option<usize>> {
        let runs = |n: usize| only.is_none_or(|m| m[n]);
        self.nodes
            .iter()
            .map(|node| {
                let Op::Conv(c) = &node.op else { return None };
                let v = *node.outputs.first()?;
                if c.groups != 1 || node.quant.output.is_some_and(|s| s.enabled) || keep.contains(&v) {
                    return None;
                }
                match consumers[v].as_slice() {
                    &[(j, 0)] if runs(j) && matches!(self.nodes[j].op, Op::Split { .. }) && self.nodes[j].quant.inputs[0].is_none_or(|s| !s.enabled) => Some(j),
                    _ => None,
                }
            })
            .collect()
    }

    /// The last node reading each value; `None` for values kept to the end.
    fn last_use(&self, keep: &[ValueId]) -> Vec<Option<usize>> {
        let mut last = vec![None; self.num_values];
        for (i, n) in self.nodes.iter().enumerate() {
            for &v in &n.inputs {
                last[v] = Some(i);
            }
        }
        for &k in keep {
            last[k] = None;
        }
        last[self.input] = None;
        last
    }
}

/// How one pass runs the graph beyond node by node.
struct Plan {
    /// Per value: the quantizer all its readers share (see [`Graph::sole_quantizers`]); only
    /// when the hook shares quantized values.
    sole: Vec<Option<QuantId>>,
    /// Per node: for a conv run per part of the Split it feeds, that Split.
    split_by: Vec<Option<usize>>,
    /// Per node: a Split whose parts its conv computed.
    done_by_conv: Vec<bool>,
}

impl Plan {
    fn new(g: &Graph, keep: &[ValueId], only: Option<&[bool]>, share: bool, split: bool) -> Plan {
        let consumers = if share || split { g.consumers() } else { Vec::new() };
        let sole = if share { g.sole_quantizers(&consumers, keep, only) } else { vec![None; g.num_values] };
        let split_by = if split { g.convs_feeding_splits(&consumers, keep, only) } else { vec![None; g.nodes.len()] };
        let mut done_by_conv = vec![false; g.nodes.len()];
        split_by.iter().flatten().for_each(|&j| done_by_conv[j] = true);
        Plan { sole, split_by, done_by_conv }
    }

    /// The quantizer a SiLU conv's output `o` may be fused with.
    fn fused_output(&self, c: &Conv2d, o: ValueId) -> Option<QuantId> {
        self.sole[o].filter(|_| c.act == Activation::SiLU)
    }

    /// For Concat node `n` whose value every reader reads through one quantizer: that
    /// quantizer. The node then concatenates its inputs quantized (most arrive so from
    /// their convs' epilogues) instead of quantizing the whole again for its readers.
    fn concat_quant(&self, g: &Graph, n: usize) -> Option<QuantId> {
        if !g.concat_reads_quantized(n) {
            return None;
        }
        self.sole[g.nodes[n].outputs[0]]
    }
}

/// Stores a conv's value; quantized values are also recorded as read through `fused`.
fn store((y, is_quantized): (Tensor, bool), o: ValueId, fused: Option<QuantId>, vals: &mut [Option<Tensor>], quantized: &mut [Option<(QuantId, Tensor)>]) {
    if let (true, Some(q)) = (is_quantized, fused) {
        quantized[o] = Some((q, y.shallow_clone()));
    }
    vals[o] = Some(y);
}

/// Value `v` as a reader with this slot sees it: quantized once per quantizer when the
/// hook allows sharing, else quantized for this reader alone.
fn read(
    hook: &mut dyn QuantHook,
    slot: Option<QuantSlot>,
    v: ValueId,
    vals: &[Option<Tensor>],
    quantized: &mut [Option<(QuantId, Tensor)>],
    share: bool,
) -> Tensor {
    let x = vals[v].as_ref().expect("graph is not in execution order");
    let Some(s) = slot.filter(|s| s.enabled && share) else { return apply(hook, slot, x) };
    if let Some((q, y)) = &quantized[v] {
        if *q == s.quant {
            return y.shallow_clone();
        }
    }
    let y = hook.activation(s.quant, x);
    if quantized[v].is_none() {
        quantized[v] = Some((s.quant, y.shallow_clone()));
    }
    y
}

/// Value `v` quantized by `q`: as recorded when it already was, else quantized now.
fn read_as(hook: &mut dyn QuantHook, q: QuantId, v: ValueId, vals: &[Option<Tensor>], quantized: &mut [Option<(QuantId, Tensor)>]) -> Tensor {
    if let Some((p, y)) = &quantized[v] {
        if *p == q {
            return y.shallow_clone();
        }
    }
    let y = hook.activation(q, vals[v].as_ref().expect("graph is not in execution order"));
    if quantized[v].is_none() {
        quantized[v] = Some((q, y.shallow_clone()));
    }
    y
}

fn apply(hook: &mut dyn QuantHook, slot: Option<QuantSlot>, x: &Tensor) -> Tensor {
    match slot {
        Some(s) if s.enabled => hook.activation(s.quant, x),
        _ => x.shallow_clone(),
    }
}

fn eval_node(node: &Node, xs: &[Tensor], hook: &mut dyn QuantHook) -> Vec<Tensor> {
    let y = match &node.op {
        Op::Conv(c) => conv_node(c, &xs[0], node.quant.weight, None, hook).0,
        Op::MaxPool { kernel: k, stride: s, padding: p } => xs[0].max_pool2d([*k, *k], [*s, *s], [*p, *p], [1, 1], false),
        // ADown's pool through our kernel where it applies (bit-identical, much faster).
        Op::AvgPool { kernel: 2, stride: 1, padding: 0 } => {
            kernels::avg_pool_2x2(&xs[0]).unwrap_or_else(|| xs[0].avg_pool2d([2, 2], [1, 1], [0, 0], false, true, None))
        }
        Op::AvgPool { kernel: k, stride: s, padding: p } => xs[0].avg_pool2d([*k, *k], [*s, *s], [*p, *p], false, true, None),
        Op::Upsample { scale } => {
            let (h, w) = (xs[0].size()[2], xs[0].size()[3]);
            xs[0].upsample_nearest2d([h * scale, w * scale], Some(*scale as f64), Some(*scale as f64))
        }
        Op::ResizeLike => {
            let t = xs[1].size();
            xs[0].upsample_nearest2d([t[2], t[3]], None, None)
        }
        Op::Concat => Tensor::cat(xs, 1),
        Op::Split { sizes } => return xs[0].split_with_sizes(sizes.as_slice(), 1),
        Op::Add => xs[1..].iter().fold(xs[0].shallow_clone(), |acc, x| acc + x),
        Op::Detect(d) => decode(d, xs, node.quant.internal, hook),
        Op::AppendCoeffs => append_coeffs(xs),
    };
    let y = match node.quant.output {
        Some(s) if s.enabled => hook.activation(s.quant, &y),
        _ => y,
    };
    vec![y]
}

/// A conv node's value, `act(conv(x) + bias)`, quantized by `fused` when the hook folds that
/// in (then the flag is true). Where our kernel applies, the bias and activation run as one
/// pass after a bias-free convolution (ATen would add the bias in a slow broadcast pass).
fn conv_node(c: &Conv2d, x: &Tensor, wslot: Option<QuantSlot>, fused: Option<QuantId>, hook: &mut dyn QuantHook) -> (Tensor, bool) {
    let epilogue = match c.act {
        Activation::SiLU => Some(Epilogue::SiLU),
        Activation::Identity => Some(Epilogue::Identity),
        _ => None,
    };
    let split = c.bias.as_ref().filter(|b| epilogue.is_some() && kernels::bias_act_applies(x, b));
    let z = conv_linear(c, x, wslot, hook, split.is_none());
    if let Some(q) = fused {
        if let Some(y) = hook.activation_fused(q, &z, split, c.act) {
            return (y, true);
        }
    }
    let y = match (split, epilogue) {
        (Some(b), Some(e)) => kernels::bias_act(&z, b, e, None).unwrap_or_else(|| activate(z + b.reshape([1, -1, 1, 1]), c.act)),
        _ => activate(z, c.act),
    };
    (y, false)
}

/// The convolution before its activation, with or without its bias.
fn conv_linear(c: &Conv2d, x: &Tensor, wslot: Option<QuantSlot>, hook: &mut dyn QuantHook, with_bias: bool) -> Tensor {
    let w = match wslot {
        Some(s) if s.enabled => hook.weight(s.quant, &c.weight),
        _ => c.weight.shallow_clone(),
    };
    let bias = c.bias.as_ref().filter(|_| with_bias);
    x.conv2d(&w, bias, [c.stride, c.stride], [c.padding, c.padding], [c.dilation, c.dilation], c.groups)
}

pub fn activate(y: Tensor, act: Activation) -> Tensor {
    match act {
        Activation::SiLU => y.silu(),
        Activation::ReLU => y.relu(),
        Activation::LeakyReLU(slope) => {
            let neg = &y * slope;
            y.maximum(&neg)
        }
        Activation::Identity => y,
    }
}

/// Upstream `DSegment.forward`: each level's (B, nm, H, W) coefficients flattened
/// to (B, nm, H·W), concatenated over levels, appended to the detections' rows.
fn append_coeffs(xs: &[Tensor]) -> Tensor {
    let b = xs[0].size()[0];
    let flat: Vec<Tensor> = xs[1..].iter().map(|m| m.reshape([b, m.size()[1], -1])).collect();
    Tensor::cat(&[xs[0].shallow_clone(), Tensor::cat(&flat, 2).to_kind(xs[0].kind())], 1)
}

/// Anchor centres (2, A) and their strides (1, A) for maps of these sizes.
pub fn anchors(sizes: &[(i64, i64)], strides: &[f64], kind: Kind, device: tch::Device) -> (Tensor, Tensor) {
    let mut points = Vec::new();
    let mut st = Vec::new();
    for (&(h, w), &s) in sizes.iter().zip(strides) {
        let sx = Tensor::arange(w, (kind, device)) + 0.5;
        let sy = Tensor::arange(h, (kind, device)) + 0.5;
        let grid = Tensor::meshgrid_indexing(&[sy, sx], "ij");
        points.push(Tensor::stack(&[grid[1].reshape([-1]), grid[0].reshape([-1])], 0));
        st.push(Tensor::full([1, h * w], s, (kind, device)));
    }
    (Tensor::cat(&points, 1), Tensor::cat(&st, 1))
}

/// DFL expectation over the box distribution, dist2bbox (centre-size), sigmoid scores.
fn decode(d: &Detect, maps: &[Tensor], dfl_slot: Option<QuantSlot>, hook: &mut dyn QuantHook) -> Tensor {
    let b = maps[0].size()[0];
    let no = 4 * d.reg_max + d.nc;
    let flat: Vec<Tensor> = maps.iter().map(|m| m.reshape([b, no, -1])).collect();
    let cat = Tensor::cat(&flat, 2);
    let a = cat.size()[2];
    let parts = cat.split_with_sizes([4 * d.reg_max, d.nc], 1);
    let prob = parts[0].reshape([b, 4, d.reg_max, a]).transpose(2, 1).softmax(1, None::<Kind>);
    let prob = match dfl_slot {
        Some(s) if s.enabled => hook.activation(s.quant, &prob),
        _ => prob,
    };
    let dist = prob.conv2d(&d.dfl_weight.to_kind(prob.kind()), None::<Tensor>, [1, 1], [0, 0], [1, 1], 1).reshape([b, 4, a]);
    let sizes: Vec<(i64, i64)> = maps.iter().map(|m| (m.size()[2], m.size()[3])).collect();
    let (points, strides) = anchors(&sizes, &d.strides, cat.kind(), cat.device());
    let lt_rb = dist.split(2, 1);
    let x1y1 = &points - &lt_rb[0];
    let x2y2 = &points + &lt_rb[1];
    let centre = (&x1y1 + &x2y2) / 2.0;
    let wh = x2y2 - x1y1;
    let dbox = Tensor::cat(&[centre, wh], 1) * strides;
    Tensor::cat(&[dbox, parts[1].sigmoid()], 1)
}
