//! Complete IoU of corner boxes, as upstream `utils/metrics.py` `bbox_iou(xywh=False,
//! CIoU=True)` computes it (Zheng et al., "Distance-IoU Loss", AAAI 2020): IoU minus
//! the normalized centre distance and an aspect-ratio term whose weight `alpha` is
//! held constant (no gradient), with upstream's `eps = 1e-7` in the same places.

use tch::Tensor;

const EPS: f64 = 1e-7;

/// CIoU of `a` and `b`, boxes `x1 y1 x2 y2` in the last dimension (broadcasting);
/// the result keeps that dimension with size 1.
pub fn ciou(a: &Tensor, b: &Tensor) -> Tensor {
    let a = a.chunk(4, -1);
    let b = b.chunk(4, -1);
    let (a_x1, a_y1, a_x2, a_y2) = (&a[0], &a[1], &a[2], &a[3]);
    let (b_x1, b_y1, b_x2, b_y2) = (&b[0], &b[1], &b[2], &b[3]);
    let w1 = a_x2 - a_x1;
    let h1 = a_y2 - a_y1 + EPS;
    let w2 = b_x2 - b_x1;
    let h2 = b_y2 - b_y1 + EPS;
    let inter = (a_x2.minimum(b_x2) - a_x1.maximum(b_x1)).clamp_min(0.0) * (a_y2.minimum(b_y2) - a_y1.maximum(b_y1)).clamp_min(0.0);
    let union = &w1 * &h1 + &w2 * &h2 - &inter + EPS;
    let iou = inter / union;
    let cw = a_x2.maximum(b_x2) - a_x1.minimum(b_x1);
    let ch = a_y2.maximum(b_y2) - a_y1.minimum(b_y1);
    let c2 = cw.square() + ch.square() + EPS;
    let rho2 = ((b_x1 + b_x2 - a_x1 - a_x2).square() + (b_y1 + b_y2 - a_y1 - a_y2).square()) / 4.0;
    let v = (w2 / h2).atan() - (w1 / h1).atan();
    let v = v.square() * (4.0 / std::f64::consts::PI.powi(2));
    let alpha = tch::no_grad(|| &v / (&v - &iou + (1.0 + EPS)));
    iou - (rho2 / c2 + v * alpha)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: &[f32]) -> Tensor {
        Tensor::from_slice(v)
    }

    #[test]
    fn identical_boxes_score_one_and_disjoint_boxes_go_negative() {
        let a = t(&[0.0, 0.0, 2.0, 4.0]);
        assert!((ciou(&a, &a).double_value(&[0]) - 1.0).abs() < 1e-6);
        // Same shape, no overlap, centres 4 apart along x: IoU 0, rho² 16, enclosing
        // diagonal² 6² + 4² = 52, aspect term 0 → −16/52.
        let b = t(&[4.0, 0.0, 6.0, 4.0]);
        let got = ciou(&a, &b).double_value(&[0]);
        assert!((got + 16.0 / 52.0).abs() < 1e-5, "{got}");
    }

    #[test]
    fn half_overlap_of_equal_squares() {
        // Unit squares shifted by 0.5: IoU = 0.5 / 1.5, rho² = 0.25, c² = 1.5² + 1 = 3.25.
        let a = t(&[0.0, 0.0, 1.0, 1.0]);
        let b = t(&[0.5, 0.0, 1.5, 1.0]);
        let want = 1.0 / 3.0 - 0.25 / 3.25;
        assert!((ciou(&a, &b).double_value(&[0]) - want).abs() < 1e-5);
    }
}
