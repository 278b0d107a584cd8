//! End-to-end exports: NMS after the `output0` graph, giving per image
//! `num_dets` (B,1) int32, `det_boxes` (B,K,4) float corners x1,y1,x2,y2 in input
//! pixels, `det_scores` (B,K) float and `det_classes` (B,K) int32, the first
//! `num_dets` rows valid and the rest zero.
//!
//! * `Nms::Trt`: TensorRT's `EfficientNMS_TRT` plugin (domain `TRT`), as the reference YOLOv9-QAT patch's `--end2end`.
//! * `Nms::Onnx`: standard ONNX ops that ONNX Runtime runs: NonMaxSuppression
//!   (centre-size boxes, per class unless class-agnostic, at most K per class),
//!   then the top K per image by score through a dense (B, N+K) score matrix and
//!   TopK, then Gather; boxes converted to corners.
//!
//! Semantics against eval's multi-class NMS (upstream `non_max_suppression`,
//! multi-label): the same candidates (every class score > conf), the same
//! per-class greedy suppression at IoU > iou, the same top-K by score. Known
//! differences: upstream keeps only the 30000 best candidates before NMS
//! (EfficientNMS the 4096 best; the ONNX path keeps all), and equal scores may
//! be ordered differently.

use super::onnx_builder::{Attr, Dim, Elem, OnnxBuilder};
use anyhow::{bail, Result};

/// Which NMS the end-to-end export appends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nms {
    /// TensorRT's `EfficientNMS_TRT` plugin node.
    Trt,
    /// Standard ONNX operators (NonMaxSuppression, TopK, Gather, …) for ONNX Runtime.
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

/// End-to-end NMS settings (the reference patch's defaults: IoU 0.45, conf 0.25, 100 boxes).
#[derive(Debug, Clone, PartialEq)]
pub struct End2End {
    pub iou_thres: f64,
    pub conf_thres: f64,
    pub topk_all: i64,
    pub class_agnostic: bool,
    pub nms: Nms,
}

impl Default for End2End {
    fn default() -> Self {
        End2End { iou_thres: 0.45, conf_thres: 0.25, topk_all: 100, class_agnostic: false, nms: Nms::Trt }
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
        Ok(())
    }
}

pub const OUTPUT_NAMES: [&str; 4] = ["num_dets", "det_boxes", "det_scores", "det_classes"];

/// Appends the NMS to `output0` (B, 4+nc, A) and declares the four outputs.
/// `images` gives the batch size at run time; `batch` is its dimension; `opset` the default-domain opset.
pub fn append(g: &mut OnnxBuilder, e: &End2End, output0: &str, images: &str, nc: i64, batch: &Dim, opset: i64) -> Result<()> {
    e.validate()?;
    let k = e.topk_all;
    let names: Vec<String> = OUTPUT_NAMES.iter().map(|n| g.reserve(n)).collect::<Result<_>>()?;
    match e.nms {
        Nms::Trt => trt(g, e, output0, nc, names)?,
        Nms::Onnx => onnx(g, e, output0, images, nc, opset, names)?,
    }
    let kd = Dim::Fixed(k);
    g.add_output("num_dets", Elem::I32, &[batch.clone(), Dim::Fixed(1)]);
    g.add_output("det_boxes", Elem::F32, &[batch.clone(), kd.clone(), Dim::Fixed(4)]);
    g.add_output("det_scores", Elem::F32, &[batch.clone(), kd.clone()]);
    g.add_output("det_classes", Elem::I32, &[batch.clone(), kd]);
    Ok(())
}

/// boxes (B, A, 4) centre-size and scores (B, A, nc) from output0.
fn boxes_scores(g: &mut OnnxBuilder, output0: &str, nc: i64) -> (String, String) {
    let t = g.node("Transpose", "end2end/transpose", &[output0], vec![("perm", Attr::Ints(vec![0, 2, 1]))]);
    let split = g.const_i64(&[4, nc]);
    let mut parts = g.node_n("Split", "end2end/split", &[&t, &split], 2, vec![("axis", Attr::Int(2))]);
    let scores = parts.pop().expect("two parts");
    let boxes = parts.pop().expect("two parts");
    (boxes, scores)
}

fn trt(g: &mut OnnxBuilder, e: &End2End, output0: &str, nc: i64, outputs: Vec<String>) -> Result<()> {
    let (boxes, scores) = boxes_scores(g, output0, nc);
    let mut attrs = vec![
        ("background_class", Attr::Int(-1)),
        ("box_coding", Attr::Int(1)),
        ("iou_threshold", Attr::Float(e.iou_thres as f32)),
        ("max_output_boxes", Attr::Int(e.topk_all)),
        ("plugin_version", Attr::Str("1".into())),
        ("score_activation", Attr::Int(0)),
        ("score_threshold", Attr::Float(e.conf_thres as f32)),
    ];
    if e.class_agnostic {
        attrs.push(("class_agnostic", Attr::Int(1)));
    }
    g.node_named("EfficientNMS_TRT", "TRT", "end2end/EfficientNMS_TRT", &[&boxes, &scores], outputs, attrs);
    Ok(())
}

fn onnx(g: &mut OnnxBuilder, e: &End2End, output0: &str, images: &str, nc: i64, opset: i64, outputs: Vec<String>) -> Result<()> {
    let k = e.topk_all;
    let p = "end2end";
    let i32_code = Attr::Int(Elem::I32.code() as i64);
    // output0 (B, 4+nc, A) → boxes (B, A, 4) centre-size, class scores (B, nc, A).
    let split = g.const_i64(&[4, nc]);
    let parts = g.node_n("Split", &format!("{p}/split"), &[output0, &split], 2, vec![("axis", Attr::Int(1))]);
    let boxes = g.node("Transpose", &format!("{p}/boxes"), &[&parts[0]], vec![("perm", Attr::Ints(vec![0, 2, 1]))]);
    let (nms_scores, anchor_class) = if e.class_agnostic {
        // ReduceMax takes its axes as an input from opset 18 on.
        let best = if opset >= 18 {
            let axes = g.const_i64(&[1]);
            g.node("ReduceMax", &format!("{p}/best_score"), &[&parts[1], &axes], vec![("keepdims", Attr::Int(1))])
        } else {
            g.node("ReduceMax", &format!("{p}/best_score"), &[&parts[1]], vec![("axes", Attr::Ints(vec![1])), ("keepdims", Attr::Int(1))])
        };
        let cls = g.node("ArgMax", &format!("{p}/best_class"), &[&parts[1]], vec![("axis", Attr::Int(1)), ("keepdims", Attr::Int(0))]);
        (best, Some(cls))
    } else {
        (parts[1].clone(), None)
    };
    let max_per_class = g.const_i64(&[k]);
    let iou = g.init_f32(&format!("{p}.iou_threshold"), &[1], &[e.iou_thres as f32]);
    let conf = g.init_f32(&format!("{p}.score_threshold"), &[1], &[e.conf_thres as f32]);
    let sel = g.node("NonMaxSuppression", &format!("{p}/nms"), &[&boxes, &nms_scores, &max_per_class, &iou, &conf], vec![("center_point_box", Attr::Int(1))]);
    // sel (N, 3) = (batch, class, anchor).
    let ones = g.const_i64(&[1, 1, 1]);
    let cols = g.node_n("Split", &format!("{p}/sel_split"), &[&sel, &ones], 3, vec![("axis", Attr::Int(1))]);
    let ba = g.node("Concat", &format!("{p}/batch_anchor"), &[&cols[0], &cols[2]], vec![("axis", Attr::Int(1))]);
    let score = g.node("GatherND", &format!("{p}/sel_score"), &[&nms_scores, &sel], vec![]);
    let bx = g.node("GatherND", &format!("{p}/sel_box"), &[&boxes, &ba], vec![]);
    let ax1 = g.const_i64(&[1]);
    let class = match &anchor_class {
        Some(c) => g.node("GatherND", &format!("{p}/sel_class"), &[c, &ba], vec![]),
        None => g.node("Squeeze", &format!("{p}/sel_class"), &[&cols[1], &ax1], vec![]),
    };
    let class = g.node("Cast", &format!("{p}/sel_class_i32"), &[&class], vec![("to", i32_code.clone())]);
    let batch_of = g.node("Squeeze", &format!("{p}/sel_batch"), &[&cols[0], &ax1], vec![]);
    // Centre-size → corners.
    let halves = g.const_i64(&[2, 2]);
    let xy_wh = g.node_n("Split", &format!("{p}/xy_wh"), &[&bx, &halves], 2, vec![("axis", Attr::Int(1))]);
    let half = g.const_f32(&[], 0.5);
    let half_wh = g.node("Mul", &format!("{p}/half_wh"), &[&xy_wh[1], &half], vec![]);
    let x1y1 = g.node("Sub", &format!("{p}/x1y1"), &[&xy_wh[0], &half_wh], vec![]);
    let x2y2 = g.node("Add", &format!("{p}/x2y2"), &[&xy_wh[0], &half_wh], vec![]);
    let corners = g.node("Concat", &format!("{p}/corners"), &[&x1y1, &x2y2], vec![("axis", Attr::Int(1))]);
    // Dense (B, N) scores, -1 where the row is another image's; K sentinel columns so TopK always has K.
    let shape = g.node("Shape", &format!("{p}/images_shape"), &[images], vec![]);
    let (z1, o1) = (g.const_i64(&[0]), g.const_i64(&[1]));
    let b1 = g.node("Slice", &format!("{p}/batch"), &[&shape, &z1, &o1], vec![]);
    let ax0 = g.const_i64(&[0]);
    let b0 = g.node("Squeeze", &format!("{p}/batch_scalar"), &[&b1, &ax0], vec![]);
    let (zero, one) = (g.scalar_i64(0), g.scalar_i64(1));
    let images_idx = g.node("Range", &format!("{p}/image_index"), &[&zero, &b0, &one], vec![]);
    let images_col = g.node("Unsqueeze", &format!("{p}/image_index_col"), &[&images_idx, &ax1], vec![]);
    let batch_row = g.node("Unsqueeze", &format!("{p}/sel_batch_row"), &[&batch_of, &ax0], vec![]);
    let mine = g.node("Equal", &format!("{p}/mine"), &[&images_col, &batch_row], vec![]);
    let score_row = g.node("Unsqueeze", &format!("{p}/score_row"), &[&score, &ax0], vec![]);
    let minus1 = g.const_f32(&[], -1.0);
    let dense = g.node("Where", &format!("{p}/dense"), &[&mine, &score_row, &minus1], vec![]);
    let kk = g.const_i64(&[k]);
    let pad_shape = g.node("Concat", &format!("{p}/pad_shape"), &[&b1, &kk], vec![("axis", Attr::Int(0))]);
    let minus1_11 = g.const_f32(&[1, 1], -1.0);
    let pad = g.node("Expand", &format!("{p}/pad"), &[&minus1_11, &pad_shape], vec![]);
    let dense = g.node("Concat", &format!("{p}/dense_padded"), &[&dense, &pad], vec![("axis", Attr::Int(1))]);
    let top = g.node_n("TopK", &format!("{p}/topk"), &[&dense, &kk], 2, vec![("axis", Attr::Int(1)), ("largest", Attr::Int(1)), ("sorted", Attr::Int(1))]);
    let thr = g.const_f32(&[], -0.5);
    let valid = g.node("Greater", &format!("{p}/valid"), &[&top[0], &thr], vec![]);
    // num_dets (B, 1) int32.
    let valid_i = g.node("Cast", &format!("{p}/valid_i32"), &[&valid], vec![("to", i32_code)]);
    g.node_named("ReduceSum", "", &format!("{p}/num_dets"), &[&valid_i, &ax1], vec![outputs[0].clone()], vec![("keepdims", Attr::Int(1))]);
    // Gathered rows, K zero rows appended for the sentinel columns, invalid rows zeroed.
    let zero_f = g.const_f32(&[], 0.0);
    let zero_boxes = g.const_f32(&[k, 4], 0.0);
    let corners = g.node("Concat", &format!("{p}/corners_padded"), &[&corners, &zero_boxes], vec![("axis", Attr::Int(0))]);
    let det_boxes = g.node("Gather", &format!("{p}/det_boxes_all"), &[&corners, &top[1]], vec![("axis", Attr::Int(0))]);
    let ax2 = g.const_i64(&[2]);
    let valid3 = g.node("Unsqueeze", &format!("{p}/valid3"), &[&valid, &ax2], vec![]);
    g.node_named("Where", "", &format!("{p}/det_boxes"), &[&valid3, &det_boxes, &zero_f], vec![outputs[1].clone()], vec![]);
    g.node_named("Where", "", &format!("{p}/det_scores"), &[&valid, &top[0], &zero_f], vec![outputs[2].clone()], vec![]);
    let zero_cls = g.init_i32(&format!("{p}.class_pad"), &[k], &vec![0; k as usize]);
    let classes = g.node("Concat", &format!("{p}/classes_padded"), &[&class, &zero_cls], vec![("axis", Attr::Int(0))]);
    let det_classes = g.node("Gather", &format!("{p}/det_classes_all"), &[&classes, &top[1]], vec![("axis", Attr::Int(0))]);
    let zero_i = g.init_i32(&format!("{p}.zero_i32"), &[], &[0]);
    g.node_named("Where", "", &format!("{p}/det_classes"), &[&valid, &det_classes, &zero_i], vec![outputs[3].clone()], vec![]);
    Ok(())
}
