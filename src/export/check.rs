//! TensorRT rules check for an ONNX model (ours or anyone's): what TensorRT's
//! ONNX parser and its explicit-quantization (Q/DQ) mode require.
//!
//! Errors (the check fails with a one-line message):
//! * the default-domain opset is missing, or the IR version is older than the opset needs;
//! * an op TensorRT's ONNX parser does not accept (see `TRT_ONNX_OPS`, `TRT_PLUGINS`);
//! * a Q/DQ node whose scale is not a constant float32, not finite or not > 0,
//!   whose zero point is missing, not int8, not 0, or not shaped like the scale;
//!   a per-axis scale on an activation; a QuantizeLinear feeding anything but
//!   DequantizeLinear nodes of the same scale; a DequantizeLinear fed by neither a
//!   QuantizeLinear nor a constant; per-axis Q/DQ below opset 13;
//! * a conv weight quantized with a scale that is not per output channel
//!   (1-D of length = out channels, `axis=0`);
//! * Q/DQ on a conv bias.
//!
//! Reported, not errors: convs of a quantized model that do not read both their
//! activation and their weight through DequantizeLinear (TensorRT runs them in
//! FP16/FP32, e.g. skipped layers), per-tensor weight scales,
//! unused initializers.

use super::onnx_builder::{attr_i, dtype_name, ir_version_for_opset, tensor_values};
use anyhow::{anyhow, bail, Result};
use onnx_protobuf::tensor_proto::DataType;
use onnx_protobuf::{GraphProto, Message, ModelProto, NodeProto, TensorProto};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::Path;

/// Default-domain ops TensorRT's ONNX parser (onnx-tensorrt, TensorRT 8.6–10) accepts.
pub const TRT_ONNX_OPS: &[&str] = &[
    "Abs",
    "Acos",
    "Acosh",
    "Add",
    "And",
    "ArgMax",
    "ArgMin",
    "Asin",
    "Asinh",
    "Atan",
    "Atanh",
    "AveragePool",
    "BatchNormalization",
    "Cast",
    "Ceil",
    "Celu",
    "Clip",
    "Concat",
    "Constant",
    "ConstantOfShape",
    "Conv",
    "ConvTranspose",
    "Cos",
    "Cosh",
    "CumSum",
    "DepthToSpace",
    "DequantizeLinear",
    "Div",
    "Dropout",
    "Einsum",
    "Elu",
    "Equal",
    "Erf",
    "Exp",
    "Expand",
    "EyeLike",
    "Flatten",
    "Floor",
    "Gather",
    "GatherElements",
    "GatherND",
    "Gelu",
    "Gemm",
    "GlobalAveragePool",
    "GlobalLpPool",
    "GlobalMaxPool",
    "Greater",
    "GreaterOrEqual",
    "GridSample",
    "GroupNormalization",
    "GRU",
    "HardSigmoid",
    "HardSwish",
    "Hardmax",
    "Identity",
    "If",
    "ImageScaler",
    "InstanceNormalization",
    "IsInf",
    "IsNaN",
    "LayerNormalization",
    "LeakyRelu",
    "Less",
    "LessOrEqual",
    "Log",
    "LogSoftmax",
    "Loop",
    "LpNormalization",
    "LpPool",
    "LRN",
    "LSTM",
    "MatMul",
    "Max",
    "MaxPool",
    "Mean",
    "Min",
    "Mish",
    "Mod",
    "Mul",
    "Neg",
    "NonMaxSuppression",
    "NonZero",
    "Not",
    "OneHot",
    "Or",
    "Pad",
    "ParametricSoftplus",
    "Pow",
    "PRelu",
    "QuantizeLinear",
    "RandomNormal",
    "RandomNormalLike",
    "RandomUniform",
    "RandomUniformLike",
    "Range",
    "Reciprocal",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceMax",
    "ReduceMean",
    "ReduceMin",
    "ReduceProd",
    "ReduceSum",
    "ReduceSumSquare",
    "Relu",
    "Reshape",
    "Resize",
    "ReverseSequence",
    "RNN",
    "RoiAlign",
    "Round",
    "ScaledTanh",
    "Scan",
    "Scatter",
    "ScatterElements",
    "ScatterND",
    "Selu",
    "Shape",
    "Shrink",
    "Sigmoid",
    "Sign",
    "Sin",
    "Sinh",
    "Size",
    "Slice",
    "Softmax",
    "Softplus",
    "Softsign",
    "SpaceToDepth",
    "Split",
    "Sqrt",
    "Squeeze",
    "Sub",
    "Sum",
    "Tan",
    "Tanh",
    "ThresholdedRelu",
    "Tile",
    "TopK",
    "Transpose",
    "Trilu",
    "Unsqueeze",
    "Upsample",
    "Where",
    "Xor",
];

/// Plugin ops (any custom domain) that TensorRT's plugin library registers and the parser falls back to.
pub const TRT_PLUGINS: &[&str] = &[
    "EfficientNMS_TRT",
    "EfficientNMS_ONNX_TRT",
    "BatchedNMS_TRT",
    "BatchedNMSDynamic_TRT",
    "NMS_TRT",
    "NMSDynamic_TRT",
    "ROIAlign_TRT",
    "MultilevelCropAndResize_TRT",
    "MultilevelProposeROI_TRT",
    "PyramidROIAlign_TRT",
    "ResizeNearest_TRT",
    "InstanceNormalization_TRT",
    "GroupNormalizationPlugin",
    "CustomEmbLayerNormPluginDynamic",
    "CustomSkipLayerNormPluginDynamic",
    "CustomGeluPluginDynamic",
    "CustomFCPluginDynamic",
    "CustomQKVToContextPluginDynamic",
    "DisentangledAttention_TRT",
    "ModulatedDeformConv2d",
    "GridAnchor_TRT",
    "GridAnchorRect_TRT",
    "DetectionLayer_TRT",
    "ProposalLayer_TRT",
    "ProposalDynamic",
    "FlattenConcat_TRT",
    "CropAndResize",
    "CropAndResizeDynamic",
    "Region_TRT",
    "Reorg_TRT",
    "Normalize_TRT",
    "PriorBox_TRT",
    "LReLU_TRT",
    "Clip_TRT",
    "CoordConvAC",
    "DecodeBbox3DPlugin",
    "VoxelGeneratorPlugin",
    "PillarScatterPlugin",
    "SpecialSlice_TRT",
    "EfficientNMSX_TRT",
];

/// Plugins in `TRT_PLUGINS` that TensorRT's own plugin library does not register: an engine
/// build needs the library that does loaded (trtexec `--staticPlugins`/`--dynamicPlugins`).
/// `EfficientNMSX_TRT` is EfficientNMS with a fifth output (the kept boxes' anchor indices),
/// the node the reference patch writes for segmentation models.
pub const EXTERNAL_PLUGINS: &[&str] = &["EfficientNMSX_TRT"];

/// The newest default-domain opset the parser is known to take.
pub const MAX_OPSET: i64 = 21;

/// What the check looked at and found.
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    pub ir_version: i64,
    pub opset: i64,
    /// Other operator-set domains imported (e.g. `TRT` for plugins).
    pub domains: Vec<(String, i64)>,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub nodes: usize,
    pub initializers: usize,
    pub op_counts: BTreeMap<String, usize>,
    /// The model holds Q/DQ nodes.
    pub quantized: bool,
    pub quantize_nodes: usize,
    pub dequantize_nodes: usize,
    /// Q/DQ with a per-tensor (scalar) scale.
    pub per_tensor_qdq: usize,
    /// Q/DQ with a per-axis scale.
    pub per_axis_qdq: usize,
    pub convs: usize,
    /// Convs reading their activation and weight through DequantizeLinear.
    pub int8_convs: usize,
    /// Convs of a quantized model that TensorRT will run in FP16/FP32, with why.
    pub fp_convs: Vec<String>,
    /// Plugin nodes (custom domains).
    pub plugins: Vec<String>,
    /// Not errors: per-tensor weight scales, unused initializers, newer opset/IR than tested.
    pub notes: Vec<String>,
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "TensorRT check: passed")?;
        let domains: Vec<String> = self.domains.iter().map(|(d, v)| format!("{d} v{v}")).collect();
        writeln!(
            f,
            "  opset {} (IR version {}){}",
            self.opset,
            self.ir_version,
            if domains.is_empty() { String::new() } else { format!(", plus {}", domains.join(", ")) }
        )?;
        writeln!(f, "  inputs: {}", self.inputs.join(", "))?;
        writeln!(f, "  outputs: {}", self.outputs.join(", "))?;
        let ops: Vec<String> = self.op_counts.iter().map(|(k, v)| format!("{k} {v}")).collect();
        writeln!(f, "  {} nodes, {} initializers; ops all accepted by the TensorRT ONNX parser: {}", self.nodes, self.initializers, ops.join(", "))?;
        if !self.plugins.is_empty() {
            writeln!(f, "  plugins: {}", self.plugins.join(", "))?;
        }
        if self.quantized {
            writeln!(
                f,
                "  Q/DQ: {} QuantizeLinear, {} DequantizeLinear ({} per tensor, {} per channel); scales finite > 0, zero points int8 0, no Q/DQ on biases",
                self.quantize_nodes, self.dequantize_nodes, self.per_tensor_qdq, self.per_axis_qdq
            )?;
            writeln!(f, "  convs: {} of {} INT8 (activation and per-channel weight through DequantizeLinear)", self.int8_convs, self.convs)?;
            if !self.fp_convs.is_empty() {
                writeln!(f, "  info: {} convs stay FP16/FP32 in TensorRT:", self.fp_convs.len())?;
                for c in &self.fp_convs {
                    writeln!(f, "    {c}")?;
                }
            }
        } else {
            writeln!(f, "  no Q/DQ nodes: a floating-point model ({} convs)", self.convs)?;
        }
        for n in &self.notes {
            writeln!(f, "  note: {n}")?;
        }
        Ok(())
    }
}

/// Checks an .onnx file; the error names the file.
pub fn check_file(path: &Path) -> Result<CheckReport> {
    let bytes = super::read_onnx_bytes(path)?;
    let model = ModelProto::parse_from_bytes(&bytes).map_err(|e| anyhow!("{}: not an ONNX model: {e}", path.display()))?;
    check_model(&model).map_err(|e| anyhow!("{}: {e}", path.display()))
}

/// A constant's data: an initializer or a `Constant` node's `value`.
struct Consts<'a> {
    map: HashMap<&'a str, &'a TensorProto>,
}

impl<'a> Consts<'a> {
    fn get(&self, name: &str) -> Option<&'a TensorProto> {
        self.map.get(name).copied()
    }
}

/// Scale and zero point of one Q/DQ node, validated.
struct QParams {
    scale: Vec<f64>,
    /// Per-axis (1-D, more than one value, or 1-D with an explicit axis on a weight).
    per_axis: bool,
    axis: i64,
}

fn qparams(node: &NodeProto, consts: &Consts, opset: i64) -> Result<QParams> {
    let what = format!("{} `{}`", node.op_type, node.name);
    let sname = node.input.get(1).filter(|s| !s.is_empty()).ok_or_else(|| anyhow!("{what}: no scale input"))?;
    let st = consts.get(sname).ok_or_else(|| anyhow!("{what}: scale `{sname}` is not a constant (TensorRT needs constant scales)"))?;
    if st.data_type != DataType::FLOAT as i32 {
        bail!("{what}: scale `{sname}` is {}, not float32", dtype_name(st.data_type));
    }
    let scale = tensor_values(st).ok_or_else(|| anyhow!("{what}: scale `{sname}` cannot be read"))?;
    if scale.is_empty() {
        bail!("{what}: scale `{sname}` is empty");
    }
    if let Some(bad) = scale.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
        bail!("{what}: scale `{sname}` holds {bad} (scales must be finite and > 0)");
    }
    if st.dims.len() > 1 {
        bail!("{what}: scale `{sname}` has shape {:?} (scalar or 1-D only)", st.dims);
    }
    let zname = node.input.get(2).filter(|s| !s.is_empty()).ok_or_else(|| anyhow!("{what}: no zero point (TensorRT needs an int8 zero point of 0)"))?;
    let zt = consts.get(zname).ok_or_else(|| anyhow!("{what}: zero point `{zname}` is not a constant"))?;
    if zt.data_type != DataType::INT8 as i32 {
        bail!("{what}: zero point `{zname}` is {}, not int8", dtype_name(zt.data_type));
    }
    let zp = tensor_values(zt).ok_or_else(|| anyhow!("{what}: zero point `{zname}` cannot be read"))?;
    if zp.iter().any(|&z| z != 0.0) {
        bail!("{what}: zero point `{zname}` is not 0 (TensorRT quantization is symmetric)");
    }
    if zt.dims != st.dims {
        bail!("{what}: zero point shape {:?} differs from scale shape {:?}", zt.dims, st.dims);
    }
    let per_axis = st.dims.len() == 1 && st.dims[0] > 1;
    if per_axis && opset < 13 {
        bail!("{what}: per-axis quantization needs opset 13, the model has {opset}");
    }
    Ok(QParams { scale, per_axis, axis: attr_i(node, "axis").unwrap_or(1) })
}

/// Q/DQ nodes are keyed by their (unique) output name.
fn out_key(n: &NodeProto) -> &str {
    n.output.first().map(String::as_str).unwrap_or("")
}

fn same_values(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-7 * x.abs().max(y.abs()))
}

/// Checks a model against TensorRT's rules; the error is one line.
pub fn check_model(model: &ModelProto) -> Result<CheckReport> {
    let graph = model.graph.as_ref().ok_or_else(|| anyhow!("the model has no graph"))?;
    let mut rep = CheckReport { ir_version: model.ir_version, ..Default::default() };
    check_versions(model, &mut rep)?;
    rep.nodes = graph.node.len();
    rep.initializers = graph.initializer.len();
    rep.inputs = graph.input.iter().filter(|i| !graph.initializer.iter().any(|t| t.name == i.name)).map(describe_value).collect();
    rep.outputs = graph.output.iter().map(describe_value).collect();
    let ix = Index::new(graph);
    check_ops(graph, &mut rep)?;
    let qp = check_qdq(graph, &ix, &mut rep)?;
    for n in graph.node.iter().filter(|n| n.op_type == "Conv") {
        check_conv(n, &ix, &qp, &mut rep)?;
    }
    note_unused_initializers(graph, &mut rep);
    Ok(rep)
}

/// The default-domain opset, other domains, and the IR version the opset needs.
fn check_versions(model: &ModelProto, rep: &mut CheckReport) -> Result<()> {
    let mut opset = None;
    for o in &model.opset_import {
        if o.domain.is_empty() || o.domain == "ai.onnx" {
            opset = Some(o.version);
        } else {
            rep.domains.push((o.domain.clone(), o.version));
        }
    }
    rep.opset = opset.ok_or_else(|| anyhow!("no default-domain opset import"))?;
    if rep.ir_version < ir_version_for_opset(rep.opset) {
        bail!("IR version {} is older than opset {} needs ({})", rep.ir_version, rep.opset, ir_version_for_opset(rep.opset));
    }
    if rep.opset > MAX_OPSET {
        rep.notes.push(format!("opset {} is newer than {MAX_OPSET}, the newest this check knows TensorRT to take", rep.opset));
    }
    Ok(())
}

/// Who produces and who reads each value, and the constants.
struct Index<'a> {
    consts: Consts<'a>,
    producer: HashMap<&'a str, &'a NodeProto>,
    readers: HashMap<&'a str, Vec<&'a NodeProto>>,
}

impl<'a> Index<'a> {
    fn new(graph: &'a GraphProto) -> Index<'a> {
        let mut consts = Consts { map: graph.initializer.iter().map(|t| (t.name.as_str(), t)).collect() };
        for n in graph.node.iter().filter(|n| n.op_type == "Constant" && (n.domain.is_empty() || n.domain == "ai.onnx")) {
            if let (Some(out), Some(t)) = (n.output.first(), n.attribute.iter().find(|a| a.name == "value").and_then(|a| a.t.as_ref())) {
                consts.map.insert(out.as_str(), t);
            }
        }
        let producer = graph.node.iter().flat_map(|n| n.output.iter().map(move |o| (o.as_str(), n))).collect();
        let mut readers: HashMap<&str, Vec<&NodeProto>> = HashMap::new();
        for n in &graph.node {
            for i in n.input.iter().filter(|s| !s.is_empty()) {
                readers.entry(i.as_str()).or_default().push(n);
            }
        }
        Index { consts, producer, readers }
    }

    /// The DequantizeLinear producing `name`, if that is what produces it.
    fn dq_of(&self, name: &str) -> Option<&'a NodeProto> {
        self.producer.get(name).copied().filter(|p| p.op_type == "DequantizeLinear")
    }
}

/// Every op is one TensorRT's ONNX parser takes, or a known plugin.
fn check_ops(graph: &GraphProto, rep: &mut CheckReport) -> Result<()> {
    for n in &graph.node {
        *rep.op_counts.entry(n.op_type.clone()).or_default() += 1;
        if n.domain.is_empty() || n.domain == "ai.onnx" {
            if !TRT_ONNX_OPS.contains(&n.op_type.as_str()) {
                bail!("op {} (node `{}`) is not supported by TensorRT's ONNX parser", n.op_type, n.name);
            }
        } else if TRT_PLUGINS.contains(&n.op_type.as_str()) {
            let note =
                if EXTERNAL_PLUGINS.contains(&n.op_type.as_str()) { " [not in TensorRT's own plugin library: load the library that registers it]" } else { "" };
            rep.plugins.push(format!("{}::{} (`{}`){note}", n.domain, n.op_type, n.name));
        } else {
            bail!("op {}::{} (node `{}`) is neither a standard op nor a known TensorRT plugin", n.domain, n.op_type, n.name);
        }
    }
    Ok(())
}

/// Q/DQ nodes: valid parameters, Q → DQ pairs with equal scales, per-tensor activations,
/// DQs reading a Q or a constant. Returns each node's parameters by output name.
fn check_qdq<'a>(graph: &'a GraphProto, ix: &Index<'a>, rep: &mut CheckReport) -> Result<HashMap<&'a str, QParams>> {
    let mut qp: HashMap<&str, QParams> = HashMap::new();
    for n in graph.node.iter().filter(|n| n.op_type == "QuantizeLinear" || n.op_type == "DequantizeLinear") {
        let p = qparams(n, &ix.consts, rep.opset)?;
        *(if p.per_axis { &mut rep.per_axis_qdq } else { &mut rep.per_tensor_qdq }) += 1;
        *(if n.op_type == "QuantizeLinear" { &mut rep.quantize_nodes } else { &mut rep.dequantize_nodes }) += 1;
        qp.insert(out_key(n), p);
    }
    rep.quantized = rep.quantize_nodes + rep.dequantize_nodes > 0;
    for n in graph.node.iter().filter(|n| n.op_type == "QuantizeLinear") {
        check_quantize(n, graph, ix, &qp)?;
    }
    for n in graph.node.iter().filter(|n| n.op_type == "DequantizeLinear") {
        let input = n.input.first().map(String::as_str).unwrap_or("");
        let from_q = ix.producer.get(input).is_some_and(|p| p.op_type == "QuantizeLinear");
        if !from_q && ix.consts.get(input).is_none() {
            bail!("DequantizeLinear `{}` reads `{input}`, neither a QuantizeLinear output nor a constant", n.name);
        }
    }
    Ok(qp)
}

/// A QuantizeLinear feeds only DequantizeLinears of the same scale and axis, and
/// quantizes activations per tensor.
fn check_quantize(n: &NodeProto, graph: &GraphProto, ix: &Index, qp: &HashMap<&str, QParams>) -> Result<()> {
    let p = &qp[out_key(n)];
    let out = n.output.first().map(String::as_str).unwrap_or("");
    let rs = ix.readers.get(out).map(Vec::as_slice).unwrap_or(&[]);
    if rs.is_empty() && !graph.output.iter().any(|o| o.name == out) {
        bail!("QuantizeLinear `{}` has no reader", n.name);
    }
    for r in rs {
        if r.op_type != "DequantizeLinear" {
            bail!("QuantizeLinear `{}` feeds {} `{}` (TensorRT needs Q → DQ pairs)", n.name, r.op_type, r.name);
        }
        let rp = &qp[out_key(r)];
        if !same_values(&p.scale, &rp.scale) || p.per_axis != rp.per_axis || (p.per_axis && p.axis != rp.axis) {
            bail!("QuantizeLinear `{}` and DequantizeLinear `{}` have different scales or axes", n.name, r.name);
        }
    }
    let input = n.input.first().map(String::as_str).unwrap_or("");
    if p.per_axis && ix.consts.get(input).is_none() {
        bail!("QuantizeLinear `{}` quantizes activation `{input}` per axis (TensorRT needs per-tensor activation scales)", n.name);
    }
    Ok(())
}

/// One conv: an unquantized bias, a per-tensor activation, a per-output-channel weight;
/// counted INT8 when both operands come through DequantizeLinear.
fn check_conv(n: &NodeProto, ix: &Index, qp: &HashMap<&str, QParams>, rep: &mut CheckReport) -> Result<()> {
    rep.convs += 1;
    let x = n.input.first().map(String::as_str).unwrap_or("");
    let w = n.input.get(1).map(String::as_str).unwrap_or("");
    if let Some(b) = n.input.get(2).filter(|s| !s.is_empty()) {
        if let Some(d) = ix.dq_of(b) {
            bail!("Conv `{}` reads its bias through DequantizeLinear `{}` (biases must not be quantized)", n.name, d.name);
        }
        if ix.producer.get(b.as_str()).is_some_and(|p| p.op_type == "QuantizeLinear") {
            bail!("Conv `{}` reads its bias through a QuantizeLinear (biases must not be quantized)", n.name);
        }
    }
    let x_dq = ix.dq_of(x);
    if let Some(d) = x_dq.filter(|d| qp[out_key(d)].per_axis) {
        bail!("Conv `{}` reads its activation through per-axis DequantizeLinear `{}` (activations must be per tensor)", n.name, d.name);
    }
    let w_dq = ix.dq_of(w);
    if let Some(d) = w_dq {
        check_conv_weight(n, d, ix, &qp[out_key(d)], rep)?;
    }
    match (x_dq.is_some(), w_dq.is_some()) {
        (true, true) => rep.int8_convs += 1,
        (xq, wq) if rep.quantized => {
            let why = match (xq, wq) {
                (false, false) => "neither activation nor weight quantized",
                (false, true) => "activation not quantized",
                _ => "weight not quantized",
            };
            rep.fp_convs.push(format!("{} ({why})", n.name));
        }
        _ => {}
    }
    Ok(())
}

/// A conv's weight DequantizeLinear `d`: per output channel (axis 0, one scale each).
fn check_conv_weight(n: &NodeProto, d: &NodeProto, ix: &Index, p: &QParams, rep: &mut CheckReport) -> Result<()> {
    // The weight tensor behind the DQ (through its QuantizeLinear, or an int8 constant).
    let src = d.input.first().map(String::as_str).unwrap_or("");
    let src = match ix.producer.get(src) {
        Some(q) if q.op_type == "QuantizeLinear" => q.input.first().map(String::as_str).unwrap_or(""),
        _ => src,
    };
    let Some(oc) = ix.consts.get(src).and_then(|t| t.dims.first().copied()) else {
        rep.notes.push(format!("Conv `{}`: quantized weight is not a constant", n.name));
        return Ok(());
    };
    if p.per_axis {
        if p.axis != 0 {
            bail!("Conv `{}`: weight scale has axis {} (TensorRT needs axis 0, per output channel)", n.name, p.axis);
        }
        if p.scale.len() as i64 != oc {
            bail!("Conv `{}`: weight scale has {} values for {oc} output channels", n.name, p.scale.len());
        }
    } else if oc > 1 {
        rep.notes.push(format!("Conv `{}`: weight quantized per tensor, not per output channel", n.name));
    }
    Ok(())
}

/// Initializers nothing reads (a note, not an error).
fn note_unused_initializers(graph: &GraphProto, rep: &mut CheckReport) {
    let read: HashSet<&str> = graph.node.iter().flat_map(|n| n.input.iter().map(String::as_str)).chain(graph.output.iter().map(|o| o.name.as_str())).collect();
    let unused: Vec<&str> = graph.initializer.iter().map(|t| t.name.as_str()).filter(|n| !read.contains(n)).collect();
    if !unused.is_empty() {
        rep.notes.push(format!("{} unused initializers, e.g. `{}`", unused.len(), unused[0]));
    }
}

fn describe_value(v: &onnx_protobuf::ValueInfoProto) -> String {
    use onnx_protobuf::tensor_shape_proto::dimension::Value as D;
    use onnx_protobuf::type_proto::Value as T;
    match v.type_.as_ref().and_then(|t| t.value.as_ref()) {
        Some(T::TensorType(t)) => {
            let dims: Vec<String> = t
                .shape
                .as_ref()
                .map(|s| {
                    s.dim
                        .iter()
                        .map(|d| match &d.value {
                            Some(D::DimValue(n)) => n.to_string(),
                            Some(D::DimParam(p)) => p.clone(),
                            _ => "?".into(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            format!("{} ({}) {}", v.name, dims.join(", "), dtype_name(t.elem_type))
        }
        _ => v.name.clone(),
    }
}
