//! End-to-end exports: NMS after the `output0` graph, giving per image
//! `num_dets` (B,1) int32, `det_boxes` (B,K,4) float corners x1,y1,x2,y2 in input
//! pixels, `det_scores` (B,K) float and `det_classes` (B,K) int32, the first
//! `num_dets` rows valid and the rest zero. Segmentation models add `det_masks`
//! (B,K,R·R): each detection's mask inside its box, R×R, after the sigmoid.
//!
//! * `Nms::Trt` (`trt.rs`): TensorRT's `EfficientNMS_TRT` plugin (domain `TRT`), as the reference
//!   YOLOv9-QAT patch's `--end2end`; for segmentation `EfficientNMSX_TRT` (which also returns the
//!   kept anchors) and `ROIAlign_TRT`, as that patch's `models/experimental_trt.py` does.
//! * `Nms::Onnx` (`onnx_ops.rs`): standard ONNX ops that ONNX Runtime runs: NonMaxSuppression,
//!   then the top K per image, and for segmentation `RoiAlign` (opset 16, half-pixel).
//! * `masks.rs`: coefficients of the kept anchors × the prototypes pooled inside each box.
//!
//! Semantics against eval's multi-class NMS (upstream `non_max_suppression`,
//! multi-label): the same candidates (every class score > conf), the same
//! per-class greedy suppression at IoU > iou, the same top-K by score. Known
//! differences: upstream keeps only the 30000 best candidates before NMS
//! (EfficientNMS the 4096 best; the ONNX path keeps all), and equal scores may
//! be ordered differently.

mod masks;
mod onnx_ops;
mod trt;

use super::onnx_builder::{Attr, Dim, Elem, OnnxBuilder};
use anyhow::{bail, Result};

/// Which NMS the end-to-end export appends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nms {
    /// TensorRT's `EfficientNMS_TRT` (`EfficientNMSX_TRT` + `ROIAlign_TRT` for segmentation) plugin nodes.
    Trt,
    /// Standard ONNX operators (NonMaxSuppression, TopK, Gather, RoiAlign, …) for ONNX Runtime.
    Onnx,
}

impl Nms {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "trt" | "TRT" => Ok(Nms::Trt),
            "onnx" | "ONNX" => Ok(Nms::Onnx),
            _ => bail!("--nms {s}: expected trt or onnx"),
        }
    }
    pub fn name(&self) -> &'static str {
        match self {
            Nms::Trt => "trt",
            Nms::Onnx => "onnx",
        }
    }
}

/// Per-detection masks of a segmentation end-to-end export (the reference patch's
/// `--mask-resolution 160 --pooler-scale 0.25 --sampling-ratio 0`).
#[derive(Debug, Clone, PartialEq)]
pub struct MaskPooling {
    /// R: each mask is R×R over its box.
    pub resolution: i64,
    /// Input pixels → prototype cells (the prototypes are at 1/4 of the input).
    pub pooler_scale: f64,
    /// Bilinear samples per bin side; 0 = ceil(box side / R), ROIAlign's adaptive rule.
    pub sampling_ratio: i64,
}

impl Default for MaskPooling {
    fn default() -> Self {
        MaskPooling { resolution: 160, pooler_scale: 0.25, sampling_ratio: 0 }
    }
}

/// End-to-end NMS settings (the reference patch's defaults: IoU 0.45, conf 0.25, 100 boxes).
#[derive(Debug, Clone, PartialEq)]
pub struct End2End {
    pub iou_thres: f64,
    pub conf_thres: f64,
    pub topk_all: i64,
    pub class_agnostic: bool,
    pub nms: Nms,
    /// Used by segmentation models only.
    pub masks: MaskPooling,
}

impl Default for End2End {
    fn default() -> Self {
        End2End { iou_thres: 0.45, conf_thres: 0.25, topk_all: 100, class_agnostic: false, nms: Nms::Trt, masks: MaskPooling::default() }
    }
}

impl End2End {
    pub fn validate(&self) -> Result<()> {
        if !(self.iou_thres > 0.0 && self.iou_thres <= 1.0) {
            bail!("--iou-thres {}: must be in (0, 1]", self.iou_thres);
        }
        if !(0.0..1.0).contains(&self.conf_thres) {
            bail!("--conf-thres {}: must be in [0, 1)", self.conf_thres);
        }
        if self.topk_all < 1 {
            bail!("--topk-all {}: must be at least 1", self.topk_all);
        }
        let m = &self.masks;
        if !(1..=1024).contains(&m.resolution) {
            bail!("--mask-resolution {}: must be 1 to 1024", m.resolution);
        }
        if !(m.pooler_scale > 0.0 && m.pooler_scale.is_finite()) {
            bail!("--pooler-scale {}: must be positive", m.pooler_scale);
        }
        if m.sampling_ratio < 0 {
            bail!("--sampling-ratio {}: must be 0 (adaptive) or more", m.sampling_ratio);
        }
        Ok(())
    }
}

pub const OUTPUT_NAMES: [&str; 4] = ["num_dets", "det_boxes", "det_scores", "det_classes"];
/// The fifth output of a segmentation end-to-end export.
pub const MASKS_OUTPUT: &str = "det_masks";

/// The segmentation head's extra inputs to the end-to-end part.
pub struct SegOutputs<'a> {
    /// The prototypes (B, nm, H/4, W/4).
    pub proto: &'a str,
    pub nm: i64,
}

/// The graph values the NMS leaves for the masks: which anchor each output row came from and
/// which rows are real detections.
struct Kept {
    /// (B, K) int64 anchor index of each output row (0 on padding rows).
    anchors: String,
    /// (B, K) bool: the row is one of the first `num_dets`.
    valid: String,
}

/// Appends the NMS (and the masks of a segmentation model) to `output0` (B, 4+nc[+nm], A)
/// and declares the outputs. `images` gives the batch size at run time; `batch` is its
/// dimension; `opset` the default-domain opset.
#[allow(clippy::too_many_arguments)]
pub fn append(g: &mut OnnxBuilder, e: &End2End, output0: &str, images: &str, nc: i64, seg: Option<&SegOutputs>, batch: &Dim, opset: i64) -> Result<()> {
    e.validate()?;
    if seg.is_some() && opset < 16 {
        bail!("--opset {opset}: end-to-end segmentation needs opset 16 or newer (RoiAlign's half-pixel coordinates)");
    }
    let names: Vec<String> = OUTPUT_NAMES.iter().map(|n| g.reserve(n)).collect::<Result<_>>()?;
    let nm = seg.map_or(0, |s| s.nm);
    let kept = match e.nms {
        Nms::Trt => trt::nms(g, e, output0, nc, nm, names)?,
        Nms::Onnx => onnx_ops::nms(g, e, output0, images, nc, nm, opset, names)?,
    };
    let k = Dim::Fixed(e.topk_all);
    g.add_output("num_dets", Elem::I32, &[batch.clone(), Dim::Fixed(1)]);
    g.add_output("det_boxes", Elem::F32, &[batch.clone(), k.clone(), Dim::Fixed(4)]);
    g.add_output("det_scores", Elem::F32, &[batch.clone(), k.clone()]);
    g.add_output("det_classes", Elem::I32, &[batch.clone(), k.clone()]);
    if let (Some(seg), Some(kept)) = (seg, kept) {
        let name = g.reserve(MASKS_OUTPUT)?;
        masks::append(g, e, output0, nc, seg, &kept, "det_boxes", name);
        g.add_output(MASKS_OUTPUT, Elem::F32, &[batch.clone(), k, Dim::Fixed(e.masks.resolution * e.masks.resolution)]);
    }
    Ok(())
}

/// The shape of `like` (whose first dimension is the batch), its batch as a 1-D [B], and the
/// (B, 1) column 0..B of image indices.
struct BatchColumn {
    shape: String,
    batch: String,
    column: String,
}

fn batch_column(g: &mut OnnxBuilder, p: &str, like: &str) -> BatchColumn {
    let shape = g.node("Shape", &format!("{p}/shape"), &[like], vec![]);
    let (z1, o1) = (g.const_i64(&[0]), g.const_i64(&[1]));
    let batch = g.node("Slice", &format!("{p}/batch"), &[&shape, &z1, &o1], vec![]);
    let b0 = g.node("Squeeze", &format!("{p}/batch_scalar"), &[&batch, &z1], vec![]);
    let (zero, one) = (g.scalar_i64(0), g.scalar_i64(1));
    let images = g.node("Range", &format!("{p}/image_index"), &[&zero, &b0, &one], vec![]);
    let column = g.node("Unsqueeze", &format!("{p}/image_index_col"), &[&images, &o1], vec![]);
    BatchColumn { shape, batch, column }
}

/// boxes (B, A, 4) centre-size and scores (B, A, nc) from output0 (B, 4+nc+nm, A).
fn boxes_scores(g: &mut OnnxBuilder, output0: &str, nc: i64, nm: i64) -> (String, String) {
    let t = g.node("Transpose", "end2end/transpose", &[output0], vec![("perm", Attr::Ints(vec![0, 2, 1]))]);
    let sizes: Vec<i64> = if nm > 0 { vec![4, nc, nm] } else { vec![4, nc] };
    let split = g.const_i64(&sizes);
    let mut parts = g.node_n("Split", "end2end/split", &[&t, &split], sizes.len(), vec![("axis", Attr::Int(2))]);
    parts.truncate(2);
    let scores = parts.pop().expect("two parts");
    let boxes = parts.pop().expect("two parts");
    (boxes, scores)
}
