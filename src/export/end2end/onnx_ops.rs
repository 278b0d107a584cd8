//! The end-to-end NMS from standard ONNX operators, for ONNX Runtime: NonMaxSuppression
//! (centre-size boxes, per class unless class-agnostic, at most K per class), then the top K
//! per image by score through a dense (B, N+K) score matrix and TopK, then Gather; boxes
//! converted to corners.

use super::{batch_column, BatchColumn, End2End, Kept};
use crate::export::onnx_builder::{Attr, Elem, OnnxBuilder};
use anyhow::Result;

const P: &str = "end2end";

/// What NonMaxSuppression kept, one row per kept (image, class, anchor): (N,) score,
/// (N, 4) corners, (N,) int32 class, (N,) image, and (segmentation) (N,) anchor.
struct Selected {
    score: String,
    corners: String,
    class: String,
    image: String,
    anchor: Option<String>,
}

/// The K best rows of each image: TopK over the dense score matrix.
struct TopRows {
    /// (B, K) scores, -1 on the sentinel columns.
    scores: String,
    /// (B, K) row index into the selection (≥ N: a sentinel).
    index: String,
    /// (B, K) bool: a real detection.
    valid: String,
}

/// Appends the NMS; returns the kept anchors for the masks when `nm > 0`.
#[allow(clippy::too_many_arguments)]
pub(super) fn nms(g: &mut OnnxBuilder, e: &End2End, output0: &str, images: &str, nc: i64, nm: i64, opset: i64, outputs: Vec<String>) -> Result<Option<Kept>> {
    let sel = select(g, e, output0, nc, nm, opset);
    let top = top_rows(g, e, images, &sel);
    write_outputs(g, e, &sel, &top, &outputs);
    let Some(anchor) = &sel.anchor else { return Ok(None) };
    // The anchor of each output row, 0 on the sentinel columns.
    let zero_anchor = g.const_i64(&vec![0; e.topk_all as usize]);
    let anchor = g.node("Concat", &format!("{P}/anchors_padded"), &[anchor, &zero_anchor], vec![("axis", Attr::Int(0))]);
    let anchors = g.node("Gather", &format!("{P}/det_anchors"), &[&anchor, &top.index], vec![("axis", Attr::Int(0))]);
    Ok(Some(Kept { anchors, valid: top.valid }))
}

/// NonMaxSuppression over output0 (B, 4+nc[+nm], A) and the kept rows' values.
fn select(g: &mut OnnxBuilder, e: &End2End, output0: &str, nc: i64, nm: i64, opset: i64) -> Selected {
    let sizes: Vec<i64> = if nm > 0 { vec![4, nc, nm] } else { vec![4, nc] };
    let split = g.const_i64(&sizes);
    let parts = g.node_n("Split", &format!("{P}/split"), &[output0, &split], sizes.len(), vec![("axis", Attr::Int(1))]);
    let boxes = g.node("Transpose", &format!("{P}/boxes"), &[&parts[0]], vec![("perm", Attr::Ints(vec![0, 2, 1]))]);
    let (nms_scores, anchor_class) = nms_scores(g, e, &parts[1], opset);
    let max_per_class = g.const_i64(&[e.topk_all]);
    let iou = g.init_f32(&format!("{P}.iou_threshold"), &[1], &[e.iou_thres as f32]);
    let conf = g.init_f32(&format!("{P}.score_threshold"), &[1], &[e.conf_thres as f32]);
    let sel = g.node("NonMaxSuppression", &format!("{P}/nms"), &[&boxes, &nms_scores, &max_per_class, &iou, &conf], vec![("center_point_box", Attr::Int(1))]);
    // sel (N, 3) = (batch, class, anchor).
    let ones = g.const_i64(&[1, 1, 1]);
    let cols = g.node_n("Split", &format!("{P}/sel_split"), &[&sel, &ones], 3, vec![("axis", Attr::Int(1))]);
    let ba = g.node("Concat", &format!("{P}/batch_anchor"), &[&cols[0], &cols[2]], vec![("axis", Attr::Int(1))]);
    let score = g.node("GatherND", &format!("{P}/sel_score"), &[&nms_scores, &sel], vec![]);
    let bx = g.node("GatherND", &format!("{P}/sel_box"), &[&boxes, &ba], vec![]);
    let ax1 = g.const_i64(&[1]);
    let class = match &anchor_class {
        Some(c) => g.node("GatherND", &format!("{P}/sel_class"), &[c, &ba], vec![]),
        None => g.node("Squeeze", &format!("{P}/sel_class"), &[&cols[1], &ax1], vec![]),
    };
    let class = g.node("Cast", &format!("{P}/sel_class_i32"), &[&class], vec![("to", Attr::Int(Elem::I32.code() as i64))]);
    let image = g.node("Squeeze", &format!("{P}/sel_batch"), &[&cols[0], &ax1], vec![]);
    let anchor = (nm > 0).then(|| g.node("Squeeze", &format!("{P}/sel_anchor"), &[&cols[2], &ax1], vec![]));
    Selected { score, corners: corners(g, &bx), class, image, anchor }
}

/// The scores NonMaxSuppression ranks (B, C, A) — per class, or the best class when
/// class-agnostic (then also each anchor's best class).
fn nms_scores(g: &mut OnnxBuilder, e: &End2End, scores: &str, opset: i64) -> (String, Option<String>) {
    if !e.class_agnostic {
        return (scores.to_string(), None);
    }
    // ReduceMax takes its axes as an input from opset 18 on.
    let best = if opset >= 18 {
        let axes = g.const_i64(&[1]);
        g.node("ReduceMax", &format!("{P}/best_score"), &[scores, &axes], vec![("keepdims", Attr::Int(1))])
    } else {
        g.node("ReduceMax", &format!("{P}/best_score"), &[scores], vec![("axes", Attr::Ints(vec![1])), ("keepdims", Attr::Int(1))])
    };
    let cls = g.node("ArgMax", &format!("{P}/best_class"), &[scores], vec![("axis", Attr::Int(1)), ("keepdims", Attr::Int(0))]);
    (best, Some(cls))
}

/// (N, 4) centre-size → corners.
fn corners(g: &mut OnnxBuilder, bx: &str) -> String {
    let halves = g.const_i64(&[2, 2]);
    let xy_wh = g.node_n("Split", &format!("{P}/xy_wh"), &[bx, &halves], 2, vec![("axis", Attr::Int(1))]);
    let half = g.const_f32(&[], 0.5);
    let half_wh = g.node("Mul", &format!("{P}/half_wh"), &[&xy_wh[1], &half], vec![]);
    let x1y1 = g.node("Sub", &format!("{P}/x1y1"), &[&xy_wh[0], &half_wh], vec![]);
    let x2y2 = g.node("Add", &format!("{P}/x2y2"), &[&xy_wh[0], &half_wh], vec![]);
    g.node("Concat", &format!("{P}/corners"), &[&x1y1, &x2y2], vec![("axis", Attr::Int(1))])
}

/// Dense (B, N) scores, -1 where the row is another image's; K sentinel columns so TopK
/// always has K; the K best per image.
fn top_rows(g: &mut OnnxBuilder, e: &End2End, images: &str, sel: &Selected) -> TopRows {
    let BatchColumn { batch: b1, column: images_col, .. } = batch_column(g, P, images);
    let z1 = g.const_i64(&[0]);
    let batch_row = g.node("Unsqueeze", &format!("{P}/sel_batch_row"), &[&sel.image, &z1], vec![]);
    let mine = g.node("Equal", &format!("{P}/mine"), &[&images_col, &batch_row], vec![]);
    let score_row = g.node("Unsqueeze", &format!("{P}/score_row"), &[&sel.score, &z1], vec![]);
    let minus1 = g.const_f32(&[], -1.0);
    let dense = g.node("Where", &format!("{P}/dense"), &[&mine, &score_row, &minus1], vec![]);
    let kk = g.const_i64(&[e.topk_all]);
    let pad_shape = g.node("Concat", &format!("{P}/pad_shape"), &[&b1, &kk], vec![("axis", Attr::Int(0))]);
    let minus1_11 = g.const_f32(&[1, 1], -1.0);
    let pad = g.node("Expand", &format!("{P}/pad"), &[&minus1_11, &pad_shape], vec![]);
    let dense = g.node("Concat", &format!("{P}/dense_padded"), &[&dense, &pad], vec![("axis", Attr::Int(1))]);
    let mut top = g.node_n("TopK", &format!("{P}/topk"), &[&dense, &kk], 2, vec![("axis", Attr::Int(1)), ("largest", Attr::Int(1)), ("sorted", Attr::Int(1))]);
    let thr = g.const_f32(&[], -0.5);
    let valid = g.node("Greater", &format!("{P}/valid"), &[&top[0], &thr], vec![]);
    let index = top.pop().expect("two outputs");
    TopRows { scores: top.pop().expect("two outputs"), index, valid }
}

/// num_dets, det_boxes, det_scores, det_classes: the top rows gathered (K zero rows appended
/// for the sentinel columns), invalid rows zeroed.
fn write_outputs(g: &mut OnnxBuilder, e: &End2End, sel: &Selected, top: &TopRows, outputs: &[String]) {
    let k = e.topk_all;
    let ax1 = g.const_i64(&[1]);
    let valid_i = g.node("Cast", &format!("{P}/valid_i32"), &[&top.valid], vec![("to", Attr::Int(Elem::I32.code() as i64))]);
    g.node_named("ReduceSum", "", &format!("{P}/num_dets"), &[&valid_i, &ax1], vec![outputs[0].clone()], vec![("keepdims", Attr::Int(1))]);
    let zero_f = g.const_f32(&[], 0.0);
    let zero_boxes = g.const_f32(&[k, 4], 0.0);
    let corners = g.node("Concat", &format!("{P}/corners_padded"), &[&sel.corners, &zero_boxes], vec![("axis", Attr::Int(0))]);
    let det_boxes = g.node("Gather", &format!("{P}/det_boxes_all"), &[&corners, &top.index], vec![("axis", Attr::Int(0))]);
    let ax2 = g.const_i64(&[2]);
    let valid3 = g.node("Unsqueeze", &format!("{P}/valid3"), &[&top.valid, &ax2], vec![]);
    g.node_named("Where", "", &format!("{P}/det_boxes"), &[&valid3, &det_boxes, &zero_f], vec![outputs[1].clone()], vec![]);
    g.node_named("Where", "", &format!("{P}/det_scores"), &[&top.valid, &top.scores, &zero_f], vec![outputs[2].clone()], vec![]);
    let zero_cls = g.init_i32(&format!("{P}.class_pad"), &[k], &vec![0; k as usize]);
    let classes = g.node("Concat", &format!("{P}/classes_padded"), &[&sel.class, &zero_cls], vec![("axis", Attr::Int(0))]);
    let det_classes = g.node("Gather", &format!("{P}/det_classes_all"), &[&classes, &top.index], vec![("axis", Attr::Int(0))]);
    let zero_i = g.init_i32(&format!("{P}.zero_i32"), &[], &[0]);
    g.node_named("Where", "", &format!("{P}/det_classes"), &[&top.valid, &det_classes, &zero_i], vec![outputs[3].clone()], vec![]);
}
