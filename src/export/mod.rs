//! ONNX export (as the reference YOLOv9-QAT patch's `export.py` writes it): the fused model as an ONNX graph, with Q/DQ pairs
//! where the model's quantizers are, optionally followed by NMS (end2end);
//! a TensorRT rules check run on every export; ONNX Runtime to run the result.
//!
//! * `onnx_builder`: the protobuf graph builder; `shapes`: static shape inference;
//! * `lower`: model ops → ONNX nodes; `decode`: the Detect decode; `qdq`: Q/DQ pairs;
//! * `end2end`: EfficientNMS_TRT (EfficientNMSX_TRT + ROIAlign_TRT for masks) or plain-ONNX NMS; `check`: TensorRT rules;
//! * `ort`: ONNX Runtime from Rust.

pub mod check;
pub mod decode;
pub mod end2end;
pub mod lower;
pub mod onnx_builder;
pub mod onnx_eval;
pub mod ort;
pub mod qdq;
pub mod shapes;

pub use check::{check_file, check_model, CheckReport};
pub use end2end::{End2End, MaskPooling, Nms};

use crate::detector::Detector;
use anyhow::{anyhow, bail, Result};
use lower::{lower_graph, ShapePlan};
use onnx_builder::{Dim, Elem, OnnxBuilder};
use onnx_protobuf::{Message, ModelProto};
use qdq::{QdqEmitter, QdqStats};
use std::fmt;
use std::path::{Path, PathBuf};

/// Default-domain opset without / with end2end NMS.
pub const OPSET: i64 = 13;
pub const OPSET_END2END: i64 = 16;
/// The opsets the writer supports.
pub const OPSET_RANGE: std::ops::RangeInclusive<i64> = 13..=21;

#[derive(Debug, Clone, PartialEq)]
pub struct ExportOptions {
    /// Symbolic batch, height, width (and anchors).
    pub dynamic: bool,
    /// Append NMS; implies a symbolic batch.
    pub end2end: Option<End2End>,
    /// (height, width) of a static export; also written to the `imgsz` metadata.
    pub imgsz: (i64, i64),
    /// Batch of a static export (ignored when dynamic or end2end).
    pub batch: i64,
    /// Default-domain opset (default 13, 16 with end2end).
    pub opset: Option<i64>,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions { dynamic: false, end2end: None, imgsz: (640, 640), batch: 1, opset: None }
    }
}

impl ExportOptions {
    pub fn opset(&self) -> i64 {
        self.opset.unwrap_or(if self.end2end.is_some() { OPSET_END2END } else { OPSET })
    }

    fn validate(&self, max_stride: i64) -> Result<()> {
        let (h, w) = self.imgsz;
        if h <= 0 || w <= 0 {
            bail!("--imgsz {h} {w}: sizes must be positive");
        }
        if !self.dynamic && (h % max_stride != 0 || w % max_stride != 0) {
            bail!("--imgsz {h} {w}: must be multiples of the model's largest stride {max_stride}");
        }
        if self.batch < 1 {
            bail!("--batch {}: must be at least 1", self.batch);
        }
        let opset = self.opset();
        if !OPSET_RANGE.contains(&opset) {
            bail!("--opset {opset}: supported are {} to {}", OPSET_RANGE.start(), OPSET_RANGE.end());
        }
        if let Some(e) = &self.end2end {
            e.validate()?;
        }
        Ok(())
    }
}

/// Largest .onnx read: protobuf's own 2 GiB message limit (larger models keep their
/// weights in external data files, which yolo-qat does not write).
pub const MAX_ONNX_BYTES: u64 = 2 << 30;

/// The bytes of an .onnx file: a regular file within [`MAX_ONNX_BYTES`] (a device such as
/// `/dev/zero` would otherwise be read until memory runs out).
pub fn read_onnx_bytes(path: &Path) -> Result<Vec<u8>> {
    crate::util::regular_file::read_regular(path, MAX_ONNX_BYTES).map_err(|e| anyhow!("{}: cannot read: {e}", path.display()))
}

/// A graph input or output: name, dims, element type.
#[derive(Debug, Clone)]
pub struct TensorSpec {
    pub name: String,
    pub dims: Vec<Dim>,
    pub elem: Elem,
}

impl fmt::Display for TensorSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dims: Vec<String> = self.dims.iter().map(Dim::to_string).collect();
        let t = match self.elem {
            Elem::F32 => "float32",
            Elem::I8 => "int8",
            Elem::I32 => "int32",
            Elem::I64 => "int64",
            Elem::Bool => "bool",
        };
        write!(f, "{} ({}) {t}", self.name, dims.join(", "))
    }
}

/// The model as built in memory, before it is written.
pub struct Built {
    pub model: ModelProto,
    pub opset: i64,
    pub input: TensorSpec,
    pub outputs: Vec<TensorSpec>,
    pub qdq: QdqStats,
    pub quantized: bool,
}

/// What `export` wrote.
#[derive(Debug, Clone)]
pub struct ExportReport {
    pub path: PathBuf,
    pub bytes: u64,
    pub opset: i64,
    pub ir_version: i64,
    pub input: TensorSpec,
    pub outputs: Vec<TensorSpec>,
    /// The model carried quantizer state.
    pub quantized: bool,
    pub qdq: QdqStats,
    pub nodes: usize,
    pub initializers: usize,
    pub check: CheckReport,
}

impl fmt::Display for ExportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "exported {} ({:.1} MB): opset {}, IR version {}, {} nodes, {} initializers",
            self.path.display(),
            self.bytes as f64 / 1e6,
            self.opset,
            self.ir_version,
            self.nodes,
            self.initializers
        )?;
        writeln!(f, "  input  {}", self.input)?;
        for o in &self.outputs {
            writeln!(f, "  output {o}")?;
        }
        if self.quantized {
            let q = &self.qdq;
            writeln!(
                f,
                "  Q/DQ: {} activation pairs ({} further reads share an existing pair), {} per-channel weight pairs; {} quantizer slots disabled (floating point)",
                q.activation_pairs, q.shared_reads, q.weight_pairs, q.disabled_slots
            )?;
            if !q.uncalibrated.is_empty() {
                let shown: Vec<&str> = q.uncalibrated.iter().take(5).map(String::as_str).collect();
                writeln!(
                    f,
                    "  warning: {} enabled quantizers have no amax (uncalibrated), left in floating point: {}{}",
                    q.uncalibrated.len(),
                    shown.join(", "),
                    if q.uncalibrated.len() > 5 { ", …" } else { "" }
                )?;
            }
        } else {
            writeln!(f, "  floating point (the model has no quantizers)")?;
        }
        write!(f, "{}", self.check)
    }
}

/// Upstream's metadata format: `{0: 'person', 1: 'bicycle'}`.
fn names_dict(names: &[String]) -> String {
    let items: Vec<String> = names.iter().enumerate().map(|(i, n)| format!("{i}: '{}'", n.replace('\\', "\\\\").replace('\'', "\\'"))).collect();
    format!("{{{}}}", items.join(", "))
}

/// Class names back from `names_dict`'s text (what `predict` reads from an export).
pub fn parse_names_dict(s: &str) -> Option<Vec<String>> {
    let body = s.trim().strip_prefix('{')?.strip_suffix('}')?;
    let mut names = Vec::new();
    let mut rest = body.trim();
    while !rest.is_empty() {
        let (index, after) = rest.split_once(':')?;
        if index.trim().parse::<usize>().ok()? != names.len() {
            return None;
        }
        let after = after.trim_start().strip_prefix('\'')?;
        let (name, tail) = take_quoted(after)?;
        names.push(name);
        rest = tail.trim_start().strip_prefix(',').unwrap_or(tail).trim_start();
    }
    Some(names)
}

/// The text up to the closing quote (backslash escapes undone) and what follows it.
fn take_quoted(s: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?.1),
            '\'' => return Some((out, &s[i + 1..])),
            _ => out.push(c),
        }
    }
    None
}

/// Builds the ONNX model in memory.
pub fn build(model: &Detector, opts: &ExportOptions) -> Result<Built> {
    let graph = &model.graph;
    let max_stride = graph.strides.iter().cloned().fold(1.0, f64::max).round() as i64;
    opts.validate(max_stride)?;
    let opset = opts.opset();
    let (h, w) = opts.imgsz;
    let batch = if opts.dynamic || opts.end2end.is_some() { Dim::Sym("batch".into()) } else { Dim::Fixed(opts.batch) };
    let sizes = if opts.dynamic {
        None
    } else {
        let needed = shapes::needed_nodes(graph);
        Some(shapes::spatial_sizes(graph, &needed, h, w)?)
    };
    let hw = if opts.dynamic { [Dim::Sym("height".into()), Dim::Sym("width".into())] } else { [Dim::Fixed(h), Dim::Fixed(w)] };

    let mut g = OnnxBuilder::new();
    let input_dims = vec![batch.clone(), Dim::Fixed(3), hw[0].clone(), hw[1].clone()];
    let images = g.add_input("images", Elem::F32, &input_dims)?;
    let mut qdq = QdqEmitter::new(model.quant.as_ref().map(|q| &q.table));
    let plan = ShapePlan { batch: batch.clone(), sizes };
    let lowered = lower_graph(&mut g, graph, &mut qdq, &images, &plan, ["output0", "output1"])?;
    let (outputs, domains) = declare_outputs(&mut g, opts, graph, &lowered, &images, &batch, opset)?;
    let metadata = vec![
        ("stride".to_string(), max_stride.to_string()),
        ("names".to_string(), names_dict(&model.names)),
        ("imgsz".to_string(), format!("[{h}, {w}]")),
        ("batch".to_string(), batch.to_string()),
        ("dynamic".to_string(), opts.dynamic.to_string()),
        ("quantized".to_string(), model.quant.is_some().to_string()),
        ("model type".to_string(), if graph.is_segmentation() { "Segmentation" } else { "Detection" }.to_string()),
    ];
    let proto = g.into_model("yolo-qat", opset, &domains, &metadata);
    Ok(Built {
        model: proto,
        opset,
        input: TensorSpec { name: images, dims: input_dims, elem: Elem::F32 },
        outputs,
        qdq: qdq.stats,
        quantized: model.quant.is_some(),
    })
}

/// An operator-set domain besides the default one, and its version.
type Domain = (&'static str, i64);

/// The graph outputs: `output0` (and `output1`) as lowered, or the end-to-end part's; and the
/// operator-set domains the end-to-end part needs.
fn declare_outputs(
    g: &mut OnnxBuilder,
    opts: &ExportOptions,
    graph: &crate::model::Graph,
    lowered: &lower::Lowered,
    images: &str,
    batch: &Dim,
    opset: i64,
) -> Result<(Vec<TensorSpec>, Vec<Domain>)> {
    let Some(e) = &opts.end2end else {
        let rows = 4 + graph.nc as i64 + graph.nm as i64;
        let output0 = TensorSpec { name: lowered.output.clone(), dims: vec![batch.clone(), Dim::Fixed(rows), lowered.anchors.clone()], elem: Elem::F32 };
        let output1 = lowered.proto.as_ref().map(|(name, hw)| {
            let hw = hw.map_or_else(|| [Dim::Sym("proto_height".into()), Dim::Sym("proto_width".into())], |(h, w)| [Dim::Fixed(h), Dim::Fixed(w)]);
            TensorSpec { name: name.clone(), dims: vec![batch.clone(), Dim::Fixed(graph.nm as i64), hw[0].clone(), hw[1].clone()], elem: Elem::F32 }
        });
        let outs: Vec<TensorSpec> = std::iter::once(output0).chain(output1).collect();
        for o in &outs {
            g.add_output(&o.name, Elem::F32, &o.dims);
        }
        return Ok((outs, Vec::new()));
    };
    let seg = lowered.proto.as_ref().map(|(proto, _)| end2end::SegOutputs { proto, nm: graph.nm as i64 });
    end2end::append(g, e, &lowered.output, images, graph.nc as i64, seg.as_ref(), batch, opset)?;
    let domains = if e.nms == Nms::Trt { vec![("TRT", 1)] } else { Vec::new() };
    let k = Dim::Fixed(e.topk_all);
    let mut outs = vec![
        TensorSpec { name: "num_dets".into(), dims: vec![batch.clone(), Dim::Fixed(1)], elem: Elem::I32 },
        TensorSpec { name: "det_boxes".into(), dims: vec![batch.clone(), k.clone(), Dim::Fixed(4)], elem: Elem::F32 },
        TensorSpec { name: "det_scores".into(), dims: vec![batch.clone(), k.clone()], elem: Elem::F32 },
        TensorSpec { name: "det_classes".into(), dims: vec![batch.clone(), k.clone()], elem: Elem::I32 },
    ];
    if seg.is_some() {
        let rr = Dim::Fixed(e.masks.resolution * e.masks.resolution);
        outs.push(TensorSpec { name: end2end::MASKS_OUTPUT.into(), dims: vec![batch.clone(), k, rr], elem: Elem::F32 });
    }
    Ok((outs, domains))
}

/// Exports `model` to `path` (written atomically) after the TensorRT rules check passes.
pub fn export(model: &Detector, opts: &ExportOptions, path: &Path) -> Result<ExportReport> {
    let built = build(model, opts)?;
    let check = check_model(&built.model).map_err(|e| anyhow!("{}: the exported model fails the TensorRT check (nothing written): {e}", path.display()))?;
    let bytes = built.model.write_to_bytes().map_err(|e| anyhow!("{}: cannot encode the ONNX model: {e}", path.display()))?;
    crate::util::write_atomic(path, &bytes)?;
    let graph = built.model.graph.as_ref().expect("built models have a graph");
    Ok(ExportReport {
        path: path.to_path_buf(),
        bytes: bytes.len() as u64,
        opset: built.opset,
        ir_version: built.model.ir_version,
        input: built.input,
        outputs: built.outputs,
        quantized: built.quantized,
        qdq: built.qdq,
        nodes: graph.node.len(),
        initializers: graph.initializer.len(),
        check,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_dict_round_trips() {
        let names: Vec<String> = ["circle", "it's", "back\\slash", "a, b: c"].map(String::from).to_vec();
        let text = names_dict(&names);
        assert_eq!(parse_names_dict(&text), Some(names));
        assert_eq!(parse_names_dict("{}"), Some(vec![]));
        assert_eq!(parse_names_dict("{1: 'x'}"), None, "indices must count from 0");
    }
}
