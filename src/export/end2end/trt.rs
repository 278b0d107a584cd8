//! TensorRT's NMS plugins: `EfficientNMS_TRT` for detection, `EfficientNMSX_TRT` (the same
//! attributes plus a fifth output, the kept anchors' indices) for segmentation, as the
//! reference patch's `models/experimental_trt.py` writes them.

use super::{boxes_scores, Kept};
use crate::export::end2end::End2End;
use crate::export::onnx_builder::{Attr, OnnxBuilder};
use anyhow::Result;

/// Appends the plugin; returns the kept anchors for the masks when `nm > 0`.
pub(super) fn nms(g: &mut OnnxBuilder, e: &End2End, output0: &str, nc: i64, nm: i64, mut outputs: Vec<String>) -> Result<Option<Kept>> {
    let (boxes, scores) = boxes_scores(g, output0, nc, nm);
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
    if nm == 0 {
        g.node_named("EfficientNMS_TRT", "TRT", "end2end/EfficientNMS_TRT", &[&boxes, &scores], outputs, attrs);
        return Ok(None);
    }
    let indices = g.fresh("end2end/det_indices");
    outputs.push(indices.clone());
    let outputs = g.node_named("EfficientNMSX_TRT", "TRT", "end2end/EfficientNMSX_TRT", &[&boxes, &scores], outputs, attrs);
    Ok(Some(kept(g, e, &outputs[0], &indices)))
}

/// Padding rows of the plugin's index output are not specified (-1 in practice): they are
/// clamped to 0 so the gathers stay in range, and `valid` (row < num_dets) masks them out.
fn kept(g: &mut OnnxBuilder, e: &End2End, num_dets: &str, indices: &str) -> Kept {
    let p = "end2end";
    let i64_code = Attr::Int(crate::export::onnx_builder::Elem::I64.code() as i64);
    let idx = g.node("Cast", &format!("{p}/det_indices_i64"), &[indices], vec![("to", i64_code.clone())]);
    let zero = g.scalar_i64(0);
    let anchors = g.node("Max", &format!("{p}/det_anchors"), &[&idx, &zero], vec![]);
    let (one, k) = (g.scalar_i64(1), g.scalar_i64(e.topk_all));
    let rows = g.node("Range", &format!("{p}/rows"), &[&zero, &k, &one], vec![]);
    let n = g.node("Cast", &format!("{p}/num_dets_i64"), &[num_dets], vec![("to", i64_code)]);
    let valid = g.node("Less", &format!("{p}/valid"), &[&rows, &n], vec![]);
    Kept { anchors, valid }
}
