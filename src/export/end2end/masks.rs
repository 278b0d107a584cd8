//! Per-detection masks of a segmentation end-to-end export: the kept anchors' mask
//! coefficients (B, K, nm) times the prototypes pooled inside each detection's box
//! (RoIAlign, average of bilinear samples, half-pixel coordinates), through a sigmoid:
//! `det_masks` (B, K, R·R). Upstream's `process_mask` computes sigmoid(coefficients ·
//! prototypes) over the whole prototype grid and crops to the box; pooling first is the same
//! product sampled inside the box at R×R (the product is linear in the prototypes), so
//! padding rows aside the two differ only by where the samples fall.

use super::{batch_column, BatchColumn, End2End, Kept, Nms, SegOutputs};
use crate::export::onnx_builder::{Attr, OnnxBuilder};

/// Appends the mask branch; `boxes` are the (B, K, 4) corner boxes, `output` the name to give `det_masks`.
#[allow(clippy::too_many_arguments)]
pub(super) fn append(g: &mut OnnxBuilder, e: &End2End, output0: &str, nc: i64, seg: &SegOutputs, kept: &Kept, boxes: &str, output: String) {
    let p = "end2end/masks";
    let (nm, r, k) = (seg.nm, e.masks.resolution, e.topk_all);
    let coeffs = kept_coefficients(g, output0, nc, nm, &kept.anchors);
    let rois_shape = g.const_i64(&[-1, 4]);
    let rois = g.node("Reshape", &format!("{p}/rois"), &[boxes, &rois_shape], vec![]);
    let batch_indices = row_batch_indices(g, &kept.anchors);
    let pooled = roi_align(g, e, seg.proto, &rois, &batch_indices);
    let pooled_shape = g.const_i64(&[-1, nm, r * r]);
    let pooled = g.node("Reshape", &format!("{p}/pooled_flat"), &[&pooled, &pooled_shape], vec![]);
    let row_shape = g.const_i64(&[-1, 1, nm]);
    let coeffs = g.node("Reshape", &format!("{p}/coefficients_rows"), &[&coeffs, &row_shape], vec![]);
    let logits = g.node("MatMul", &format!("{p}/logits"), &[&coeffs, &pooled], vec![]);
    let masks = g.node("Sigmoid", &format!("{p}/sigmoid"), &[&logits], vec![]);
    let out_shape = g.const_i64(&[-1, k, r * r]);
    let masks = g.node("Reshape", &format!("{p}/per_image"), &[&masks, &out_shape], vec![]);
    let ax2 = g.const_i64(&[2]);
    let valid = g.node("Unsqueeze", &format!("{p}/valid"), &[&kept.valid, &ax2], vec![]);
    let zero = g.const_f32(&[], 0.0);
    g.node_named("Where", "", &format!("{p}/det_masks"), &[&valid, &masks, &zero], vec![output], vec![]);
}

/// (B, K, nm): the coefficients output0 carries in its last nm rows, at the kept anchors.
fn kept_coefficients(g: &mut OnnxBuilder, output0: &str, nc: i64, nm: i64, anchors: &str) -> String {
    let p = "end2end/masks";
    let (start, end, axis) = (g.const_i64(&[4 + nc]), g.const_i64(&[4 + nc + nm]), g.const_i64(&[1]));
    let all = g.node("Slice", &format!("{p}/coefficients"), &[output0, &start, &end, &axis], vec![]);
    let all = g.node("Transpose", &format!("{p}/coefficients_t"), &[&all], vec![("perm", Attr::Ints(vec![0, 2, 1]))]);
    let ax2 = g.const_i64(&[2]);
    let idx = g.node("Unsqueeze", &format!("{p}/anchor_index"), &[anchors, &ax2], vec![]);
    g.node("GatherND", &format!("{p}/kept_coefficients"), &[&all, &idx], vec![("batch_dims", Attr::Int(1))])
}

/// (B·K,) int64: the image of each output row.
fn row_batch_indices(g: &mut OnnxBuilder, anchors: &str) -> String {
    let p = "end2end/masks";
    let BatchColumn { shape, column: col, .. } = batch_column(g, p, anchors);
    let grid = g.node("Expand", &format!("{p}/row_images"), &[&col, &shape], vec![]);
    let flat = g.const_i64(&[-1]);
    g.node("Reshape", &format!("{p}/batch_indices"), &[&grid, &flat], vec![])
}

/// (B·K, nm, R, R): the prototypes pooled inside each box.
fn roi_align(g: &mut OnnxBuilder, e: &End2End, proto: &str, rois: &str, batch_indices: &str) -> String {
    let m = &e.masks;
    let inputs = [proto, rois, batch_indices];
    let size = [("output_height", Attr::Int(m.resolution)), ("output_width", Attr::Int(m.resolution))];
    let common = [("sampling_ratio", Attr::Int(m.sampling_ratio)), ("spatial_scale", Attr::Float(m.pooler_scale as f32))];
    match e.nms {
        // TensorRT's plugin: coordinate_transformation_mode 1 = half_pixel, mode 1 = average.
        Nms::Trt => {
            let mut attrs = vec![("coordinate_transformation_mode", Attr::Int(1)), ("mode", Attr::Int(1))];
            attrs.extend(size);
            attrs.extend(common);
            let out = g.fresh("end2end/masks/ROIAlign_TRT_output_0");
            g.node_named("ROIAlign_TRT", "TRT", "end2end/masks/ROIAlign_TRT", &inputs, vec![out], attrs).remove(0)
        }
        Nms::Onnx => {
            let mut attrs = vec![("coordinate_transformation_mode", Attr::Str("half_pixel".into())), ("mode", Attr::Str("avg".into()))];
            attrs.extend(size);
            attrs.extend(common);
            g.node("RoiAlign", "end2end/masks/RoiAlign", &inputs, attrs)
        }
    }
}
