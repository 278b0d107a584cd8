//! The task-aligned assigner of upstream YOLOv9 (`utils/tal/assigner.py`
//! `TaskAlignedAssigner`; Feng et al., "TOOD", ICCV 2021): which anchors learn from
//! which label, and with what soft class target.
//!
//! For every label and every anchor whose centre lies inside the label's box, the
//! alignment metric is `score^alpha · CIoU^beta` (score: the predicted probability
//! of the label's class); each label takes its `topk` best anchors; an anchor taken
//! by several labels keeps the one it overlaps most. The class target of an anchor
//! is its metric normalized so that each label's best anchor gets that label's best
//! IoU.
//!
//! Written without data-dependent shapes or host reads (upstream's `if` on the
//! multi-assignment case is applied unconditionally, its `one_hot`s are comparisons
//! and a scatter), so the whole step can be recorded as a CUDA graph.

use super::box_iou::ciou;
use tch::{Kind, Tensor};

/// Upstream's defaults for YOLOv9 (`utils/loss_tal.py`: topk 10, alpha 0.5, beta 6).
#[derive(Debug, Clone, Copy)]
pub struct Assigner {
    pub topk: i64,
    pub alpha: f64,
    pub beta: f64,
    pub eps: f64,
}

impl Default for Assigner {
    fn default() -> Self {
        Assigner { topk: 10, alpha: 0.5, beta: 6.0, eps: 1e-9 }
    }
}

/// Labels of a batch, padded to the same count `M` per image.
pub struct GtBoxes {
    /// (B, M, 1) class index as float.
    pub labels: Tensor,
    /// (B, M, 4) `x1 y1 x2 y2` in input pixels.
    pub boxes: Tensor,
    /// (B, M, 1) 1 for a real label, 0 for padding.
    pub mask: Tensor,
    /// Segmentation: (B, M, Hm, Wm) each label's 0/1 mask at the prototypes' size.
    pub masks: Option<Tensor>,
}

/// What the assigner decided, per anchor.
pub struct Assignment {
    /// (B, A, 4) the assigned label's box (input pixels); label 0's box where not foreground.
    pub boxes: Tensor,
    /// (B, A, C) soft class targets, zero off the foreground.
    pub scores: Tensor,
    /// (B, A) bool: anchors that learn a box.
    pub fg: Tensor,
    /// (B, A) int64: the label slot each anchor is assigned to (within its image; 0 off the foreground).
    pub gt_index: Tensor,
}

impl Assigner {
    /// `scores` (B, A, C) probabilities, `boxes` (B, A, 4) predicted corner boxes in
    /// pixels, `points` (A, 2) anchor centres in pixels. No gradient flows.
    pub fn assign(&self, scores: &Tensor, boxes: &Tensor, points: &Tensor, gt: &GtBoxes) -> Assignment {
        tch::no_grad(|| self.assign_inner(scores, boxes, points, gt))
    }

    fn assign_inner(&self, scores: &Tensor, boxes: &Tensor, points: &Tensor, gt: &GtBoxes) -> Assignment {
        let (b, a, c) = scores.size3().expect("scores (B, A, C)");
        let m = gt.boxes.size()[1];
        let (kind, device) = (scores.kind(), scores.device());
        if m == 0 {
            let fg = Tensor::zeros([b, a], (Kind::Bool, device));
            return Assignment { boxes: boxes.zeros_like(), scores: scores.zeros_like(), fg, gt_index: Tensor::zeros([b, a], (Kind::Int64, device)) };
        }
        let (metric, overlaps) = self.box_metrics(scores, boxes, gt);
        let inside = centres_inside(points, &gt.boxes);
        let topk = self.top_candidates(&(&metric * &inside), &gt.mask);
        let pos = topk * inside * &gt.mask;
        let (gt_index, fg, pos) = highest_overlaps(pos, &overlaps);
        // The assigned label of each anchor, and its box.
        let flat_index = &gt_index + Tensor::arange(b, (Kind::Int64, device)).unsqueeze(1) * m;
        let labels = gt.labels.to_kind(Kind::Int64).reshape([-1]).index_select(0, &flat_index.reshape([-1])).view([b, a]);
        let target_boxes = gt.boxes.reshape([-1, 4]).index_select(0, &flat_index.reshape([-1])).view([b, a, 4]);
        let classes = Tensor::arange(c, (Kind::Int64, device));
        let one_hot = labels.unsqueeze(-1).eq_tensor(&classes).logical_and(&fg.gt(0.0).unsqueeze(-1)).to_kind(kind);
        // Normalize: each label's best metric maps to its best IoU among its anchors.
        let metric = metric * &pos;
        let best_metric = metric.amax([-1].as_slice(), true);
        let best_overlap = (&overlaps * &pos).amax([-1].as_slice(), true);
        let norm = (metric * best_overlap / (best_metric + self.eps)).amax([-2].as_slice(), false).unsqueeze(-1);
        Assignment { boxes: target_boxes, scores: one_hot * norm, fg: fg.gt(0.0), gt_index }
    }

    /// Alignment metric and CIoU (clamped at 0), both (B, M, A).
    fn box_metrics(&self, scores: &Tensor, boxes: &Tensor, gt: &GtBoxes) -> (Tensor, Tensor) {
        let (_, a, _) = scores.size3().expect("scores (B, A, C)");
        let m = gt.boxes.size()[1];
        let b = scores.size()[0];
        let class = gt.labels.to_kind(Kind::Int64).expand([b, m, a], false);
        let class_scores = scores.transpose(1, 2).gather(1, &class, false);
        let overlaps = ciou(&gt.boxes.unsqueeze(2), &boxes.unsqueeze(1)).squeeze_dim(3).clamp_min(0.0);
        let metric = class_scores.pow_tensor_scalar(self.alpha) * overlaps.pow_tensor_scalar(self.beta);
        (metric, overlaps)
    }

    /// (B, M, A) 1 on each real label's `topk` best anchors by `metrics`. Padding
    /// labels point all their picks at anchor 0, which the count > 1 rule then drops
    /// (as upstream's one-hot sum does).
    fn top_candidates(&self, metrics: &Tensor, mask: &Tensor) -> Tensor {
        let (_, idx) = metrics.topk(self.topk, -1, true, true);
        let idx = idx.where_self(&mask.gt(0.0), &idx.zeros_like());
        let count = metrics.zeros_like().scatter_add(-1, &idx, &idx.ones_like().to_kind(metrics.kind()));
        count.where_self(&count.le(1.0), &count.zeros_like())
    }
}

/// (B, M, A) 1 where anchor centre lies strictly inside the box (margin 1e-9).
fn centres_inside(points: &Tensor, boxes: &Tensor) -> Tensor {
    let corners = boxes.unsqueeze(2).chunk(2, -1);
    let p = points.unsqueeze(0).unsqueeze(0);
    let deltas = Tensor::cat(&[&p - &corners[0], &corners[1] - &p], -1);
    deltas.amin([-1].as_slice(), false).gt(1e-9).to_kind(boxes.kind())
}

/// An anchor picked by several labels keeps the one with the highest CIoU.
/// Returns each anchor's label index, its pick count (0 or 1) and the final picks.
fn highest_overlaps(pos: Tensor, overlaps: &Tensor) -> (Tensor, Tensor, Tensor) {
    let m = pos.size()[1];
    let multi = pos.sum_dim_intlist([-2].as_slice(), true, pos.kind()).gt(1.0).expand_as(&pos);
    let best = overlaps.argmax(1, true);
    let is_best = Tensor::arange(m, (Kind::Int64, pos.device())).view([1, m, 1]).eq_tensor(&best).to_kind(pos.kind());
    let pos = is_best.where_self(&multi, &pos);
    let fg = pos.sum_dim_intlist([-2].as_slice(), false, pos.kind());
    (pos.argmax(-2, false), fg, pos)
}
