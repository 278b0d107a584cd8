//! The model as a flat graph of tensor ops: what the forward pass interprets,
//! what quantizers attach to, what the ONNX writer translates one node at a time.
//! Nodes are stored in execution order; every value is written by exactly one node.

use super::config::Activation;
use tch::Tensor;

pub type ValueId = usize;
pub type QuantId = usize;

/// A fused convolution: weight, optional bias, optional activation.
#[derive(Debug)]
pub struct Conv2d {
    /// Parameter name prefix: `model.3.cv1.conv` for Conv/RepConvN blocks, the module path for plain convs.
    pub prefix: String,
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub stride: i64,
    pub padding: i64,
    pub groups: i64,
    pub dilation: i64,
    pub act: Activation,
}

impl Conv2d {
    pub fn out_channels(&self) -> i64 {
        self.weight.size()[0]
    }
    pub fn in_channels(&self) -> i64 {
        self.weight.size()[1] * self.groups
    }
    pub fn kernel(&self) -> i64 {
        self.weight.size()[2]
    }
    /// Output channels `start..start + len` as a conv of their own (views of the weight and
    /// bias, so gradients reach the originals).
    pub fn rows(&self, start: i64, len: i64) -> Conv2d {
        Conv2d {
            prefix: self.prefix.clone(),
            weight: self.weight.narrow(0, start, len),
            bias: self.bias.as_ref().map(|b| b.narrow(0, start, len)),
            stride: self.stride,
            padding: self.padding,
            groups: self.groups,
            dilation: self.dilation,
            act: self.act,
        }
    }
}

/// The decode step of a DDetect head: per-level maps in, (B, 4+nc, A) out.
#[derive(Debug)]
pub struct Detect {
    pub nc: i64,
    pub reg_max: i64,
    pub strides: Vec<f64>,
    /// The DFL's fixed 1x1 conv weight (1, reg_max, 1, 1) = 0..reg_max.
    pub dfl_weight: Tensor,
}

#[derive(Debug)]
pub enum Op {
    Conv(Conv2d),
    MaxPool {
        kernel: i64,
        stride: i64,
        padding: i64,
    },
    AvgPool {
        kernel: i64,
        stride: i64,
        padding: i64,
    },
    Upsample {
        scale: i64,
    },
    /// Nearest resize of input 0 to the spatial size of input 1 (CBFuse).
    ResizeLike,
    Concat,
    /// Split along channels into consecutive parts.
    Split {
        sizes: Vec<i64>,
    },
    /// Element-wise sum of all inputs.
    Add,
    Detect(Detect),
    /// A segmentation head's eval output: the decoded detections (input 0) with the
    /// per-level mask-coefficient maps (inputs 1..) flattened and appended as rows.
    AppendCoeffs,
}

impl Op {
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Conv(_) => "Conv",
            Op::MaxPool { .. } => "MaxPool",
            Op::AvgPool { .. } => "AvgPool",
            Op::Upsample { .. } => "Upsample",
            Op::ResizeLike => "ResizeLike",
            Op::Concat => "Concat",
            Op::Split { .. } => "Split",
            Op::Add => "Add",
            Op::Detect(_) => "Detect",
            Op::AppendCoeffs => "AppendCoeffs",
        }
    }
}

/// A quantizer attached to one place of one node. Several slots may name the same
/// quantizer (tied scales); `enabled` switches this place alone.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuantSlot {
    pub quant: QuantId,
    pub enabled: bool,
}

/// Where a node is quantized: each input, its output, its weight.
#[derive(Debug, Clone, Default)]
pub struct QuantSlots {
    pub inputs: Vec<Option<QuantSlot>>,
    pub output: Option<QuantSlot>,
    pub weight: Option<QuantSlot>,
    /// A point inside a composite op: the input of the Detect's DFL conv.
    pub internal: Option<QuantSlot>,
}

impl QuantSlots {
    pub fn all(&self) -> impl Iterator<Item = &QuantSlot> {
        self.inputs.iter().flatten().chain(self.output.iter()).chain(self.weight.iter()).chain(self.internal.iter())
    }
    pub fn all_mut(&mut self) -> impl Iterator<Item = &mut QuantSlot> {
        self.inputs.iter_mut().flatten().chain(self.output.iter_mut()).chain(self.weight.iter_mut()).chain(self.internal.iter_mut())
    }
}

#[derive(Debug)]
pub struct Node {
    pub op: Op,
    pub inputs: Vec<ValueId>,
    pub outputs: Vec<ValueId>,
    /// Top-level layer (`model.model[i]`) this node belongs to.
    pub layer: usize,
    /// Upstream module path, e.g. `model.3.cv1` (parameters are `NAME.conv.weight` …).
    pub name: String,
    pub quant: QuantSlots,
}

/// What one top-level layer computes, for hooks (supervision, per-layer parity).
#[derive(Debug, Clone)]
pub struct Layer {
    pub index: usize,
    pub module: String,
    pub from: Vec<i64>,
    pub outputs: Vec<ValueId>,
}

#[derive(Debug)]
pub struct Graph {
    pub nodes: Vec<Node>,
    pub num_values: usize,
    pub input: ValueId,
    pub layers: Vec<Layer>,
    /// The eval output (B, 4+nc+nm, A); for dual heads, the main branch.
    pub output: ValueId,
    pub output_aux: Option<ValueId>,
    /// Raw detect-head maps (B, 4*reg_max+nc, H, W) per level, main branch.
    pub heads: Vec<ValueId>,
    pub strides: Vec<f64>,
    pub nc: usize,
    /// Mask coefficients per anchor (0 for detection models).
    pub nm: usize,
    /// Segmentation models: the mask prototypes (B, nm, H/4, W/4).
    pub proto: Option<ValueId>,
    /// Per value: its channel count and its spatial stride relative to the input.
    pub channels: Vec<i64>,
    pub value_stride: Vec<i64>,
}

impl Graph {
    pub fn convs(&self) -> impl Iterator<Item = (&Node, &Conv2d)> {
        self.nodes.iter().filter_map(|n| match &n.op {
            Op::Conv(c) => Some((n, c)),
            _ => None,
        })
    }

    pub fn convs_mut(&mut self) -> impl Iterator<Item = &mut Conv2d> {
        self.nodes.iter_mut().filter_map(|n| match &mut n.op {
            Op::Conv(c) => Some(c),
            _ => None,
        })
    }

    /// Index of each value's producing node.
    pub fn producers(&self) -> Vec<Option<usize>> {
        let mut p = vec![None; self.num_values];
        for (i, n) in self.nodes.iter().enumerate() {
            for &o in &n.outputs {
                p[o] = Some(i);
            }
        }
        p
    }

    /// For each value, the (node, input position) pairs that read it.
    pub fn consumers(&self) -> Vec<Vec<(usize, usize)>> {
        let mut c = vec![Vec::new(); self.num_values];
        for (i, n) in self.nodes.iter().enumerate() {
            for (k, &v) in n.inputs.iter().enumerate() {
                c[v].push((i, k));
            }
        }
        c
    }

    pub fn parameter_count(&self) -> i64 {
        self.convs().map(|(_, c)| c.weight.numel() as i64 + c.bias.as_ref().map_or(0, |b| b.numel() as i64)).sum()
    }

    pub fn is_dual(&self) -> bool {
        self.output_aux.is_some()
    }

    pub fn is_segmentation(&self) -> bool {
        self.proto.is_some()
    }

    /// Segmentation models: the per-level mask-coefficient maps (B, nm, H, W) that the eval
    /// output appends to the detections (the inputs of its `AppendCoeffs` node after the first).
    pub fn coefficient_maps(&self) -> Vec<ValueId> {
        self.nodes.iter().find(|n| matches!(n.op, Op::AppendCoeffs) && n.outputs.contains(&self.output)).map_or_else(Vec::new, |n| n.inputs[1..].to_vec())
    }

    /// A deep copy (own storage), e.g. the teacher of QAT.
    pub fn deep_clone(&self) -> Graph {
        let nodes = self
            .nodes
            .iter()
            .map(|n| Node {
                op: clone_op(&n.op),
                inputs: n.inputs.clone(),
                outputs: n.outputs.clone(),
                layer: n.layer,
                name: n.name.clone(),
                quant: n.quant.clone(),
            })
            .collect();
        Graph {
            nodes,
            num_values: self.num_values,
            input: self.input,
            layers: self.layers.clone(),
            output: self.output,
            output_aux: self.output_aux,
            heads: self.heads.clone(),
            strides: self.strides.clone(),
            nc: self.nc,
            nm: self.nm,
            proto: self.proto,
            channels: self.channels.clone(),
            value_stride: self.value_stride.clone(),
        }
    }

    /// Stores every conv weight channels-last (NHWC in memory, NCHW in shape), so that
    /// cuDNN runs its NHWC kernels without transposing the weight on every call.
    pub fn weights_channels_last(&mut self) {
        for c in self.convs_mut() {
            c.weight = channels_last(&c.weight);
        }
    }

    /// Moves / casts every parameter.
    pub fn to(&mut self, device: tch::Device, kind: tch::Kind) {
        for n in &mut self.nodes {
            match &mut n.op {
                Op::Conv(c) => {
                    c.weight = c.weight.to_device(device).to_kind(kind).detach();
                    c.bias = c.bias.as_ref().map(|b| b.to_device(device).to_kind(kind).detach());
                }
                Op::Detect(d) => d.dfl_weight = d.dfl_weight.to_device(device).to_kind(kind),
                _ => {}
            }
        }
    }
}

fn clone_op(op: &Op) -> Op {
    match op {
        Op::Conv(c) => Op::Conv(Conv2d { prefix: c.prefix.clone(), weight: c.weight.copy().detach(), bias: c.bias.as_ref().map(|b| b.copy().detach()), ..*c }),
        Op::MaxPool { kernel, stride, padding } => Op::MaxPool { kernel: *kernel, stride: *stride, padding: *padding },
        Op::AvgPool { kernel, stride, padding } => Op::AvgPool { kernel: *kernel, stride: *stride, padding: *padding },
        Op::Upsample { scale } => Op::Upsample { scale: *scale },
        Op::ResizeLike => Op::ResizeLike,
        Op::Concat => Op::Concat,
        Op::Split { sizes } => Op::Split { sizes: sizes.clone() },
        Op::Add => Op::Add,
        Op::AppendCoeffs => Op::AppendCoeffs,
        Op::Detect(d) => Op::Detect(Detect { nc: d.nc, reg_max: d.reg_max, strides: d.strides.clone(), dfl_weight: d.dfl_weight.copy() }),
    }
}

/// The same 4-d tensor laid out channels-last (tch has no memory-format argument; the
/// permute–contiguous–permute round trip yields exactly PyTorch's channels-last strides).
pub fn channels_last(x: &tch::Tensor) -> tch::Tensor {
    x.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}
