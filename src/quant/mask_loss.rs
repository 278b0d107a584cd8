//! The mask term of upstream's segmentation loss (`utils/segment/loss_tal.py`
//! `ComputeLoss.__call__` and `single_mask_loss`): every foreground anchor predicts its
//! assigned label's mask as sigmoid(coefficients · prototypes); the loss is the BCE with
//! logits against the label's mask, kept inside the label's box (`crop_mask`, half-open,
//! in prototype pixels), averaged over all prototype pixels and divided by the box's
//! normalized area (≈ the mean inside the box), then averaged over the image's foreground
//! anchors; images add up, times the gain 2.5 / batch.
//!
//! Upstream selects the foreground anchors per image (shapes that depend on the data); here
//! each image takes a fixed `K = topk × label slots` anchors, the foreground first (no label
//! has more than `topk` positive anchors, so all of them fit), so a CUDA graph can record it.

use super::assigner::Assignment;
use tch::{Kind, Tensor};

/// Upstream's mask gain (hard-coded in `loss_tal.py`, applied with a division by the batch size).
pub const MASK_GAIN: f64 = 2.5;

/// Each label's mask (`masks`: one `size x size` 0/1 mask per entry of `labels`, in order)
/// at the slot `gt_boxes` gives the label: (B, M, size, size) float.
pub fn gt_masks(labels: &[(usize, usize, [f32; 4])], masks: &[u8], size: usize, batch: usize, m: usize, device: tch::Device) -> Tensor {
    let plane = size * size;
    let mut out = vec![0u8; batch * m * plane];
    let mut next = vec![0usize; batch];
    for (k, &(i, ..)) in labels.iter().enumerate() {
        if i >= batch || next[i] >= m || (k + 1) * plane > masks.len() {
            continue;
        }
        let slot = i * m + next[i];
        next[i] += 1;
        out[slot * plane..(slot + 1) * plane].iter_mut().zip(&masks[k * plane..(k + 1) * plane]).for_each(|(o, &v)| *o = v);
    }
    // Uploaded as bytes (a quarter of the floats' size), converted on the device.
    crate::cuda::upload::bytes(&out, device).view([batch as i64, m as i64, size as i64, size as i64]).to_kind(tch::Kind::Float)
}

/// The mask loss before its gain: Σ over images of the mean over their foreground anchors.
/// `coeffs`: per level (B, nm, H, W); `proto` (B, nm, Hm, Wm); `gt` (B, M, Hm, Wm);
/// `assignment` from the same step's assigner; `imgsz` (h, w) of the input; `topk` the
/// assigner's candidates per label.
pub fn mask_loss(coeffs: &[Tensor], proto: &Tensor, assignment: &Assignment, gt: &Tensor, imgsz: (i64, i64), topk: i64) -> Tensor {
    let (b, nm, mh, mw) = proto.size4().expect("proto (B, nm, Hm, Wm)");
    let m = gt.size()[1];
    let flat: Vec<Tensor> = coeffs.iter().map(|c| c.to_kind(Kind::Float).reshape([b, nm, -1])).collect();
    let coeffs = Tensor::cat(&flat, 2).permute([0, 2, 1]); // (B, A, nm)
    let a = coeffs.size()[1];
    let k = (topk * m).min(a);
    // The foreground anchors first (their order does not matter), then padding.
    let (_, idx) = assignment.fg.to_kind(Kind::Float).topk(k, 1, true, false);
    let valid = assignment.fg.gather(1, &idx, false).to_kind(Kind::Float); // (B, K)
    let pick = |t: &Tensor| t.gather(1, &idx.unsqueeze(-1).expand([b, k, t.size()[2]], false), false);
    let c = pick(&coeffs); // (B, K, nm)
    let boxes = pick(&assignment.boxes); // (B, K, 4) input pixels
    let slot = assignment.gt_index.gather(1, &idx, false) + Tensor::arange(b, (Kind::Int64, idx.device())).unsqueeze(1) * m;
    let target = gt.reshape([b * m, mh * mw]).index_select(0, &slot.reshape([-1])).view([b, k, mh * mw]);
    let logits = c.bmm(&proto.to_kind(Kind::Float).reshape([b, nm, mh * mw])); // (B, K, Hm·Wm)
    let bce = logits.binary_cross_entropy_with_logits::<Tensor>(&target, None, None, tch::Reduction::None).view([b, k, mh, mw]);
    let (h, w) = (imgsz.0 as f64, imgsz.1 as f64);
    let n = boxes.unbind(-1);
    let (x1, y1, x2, y2) = (&n[0] / w, &n[1] / h, &n[2] / w, &n[3] / h);
    let area = (&x2 - &x1) * (&y2 - &y1);
    let inside = |lo: &Tensor, hi: &Tensor, len: i64, scale: f64| {
        let r = Tensor::arange(len, (Kind::Float, idx.device())).view([1, 1, len]);
        r.ge_tensor(&(lo * scale).unsqueeze(-1)).logical_and(&r.lt_tensor(&(hi * scale).unsqueeze(-1))).to_kind(Kind::Float)
    };
    let crop = inside(&y1, &y2, mh, mh as f64).unsqueeze(-1) * inside(&x1, &x2, mw, mw as f64).unsqueeze(-2); // (B, K, Hm, Wm)
    let per_anchor = (bce * crop).mean_dim([2i64, 3].as_slice(), false, Kind::Float) / area.clamp_min(1e-9);
    let count = valid.sum_dim_intlist([1i64].as_slice(), false, Kind::Float);
    let per_image = (per_anchor * &valid).sum_dim_intlist([1i64].as_slice(), false, Kind::Float) / count.clamp_min(1.0);
    per_image.sum(Kind::Float)
}
