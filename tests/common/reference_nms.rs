//! Reference NMS for the end-to-end export tests, written from upstream
//! `utils/general.py` `non_max_suppression` (multi-label, per-class greedy) without the
//! 30000-candidate cap.

use tch::Tensor;

/// Reference multi-label NMS on one image's output0 (4+nc, A): candidates with score > conf,
/// per-class greedy suppression at IoU > iou, top `k` by score. Returns (box xyxy, score, class, anchor).
pub fn reference_nms(out: &Tensor, conf: f32, iou: f32, k: usize, agnostic: bool) -> Vec<([f32; 4], f32, i64, usize)> {
    // One row per anchor: cx, cy, w, h, class scores.
    let rows = Vec::<Vec<f32>>::try_from(out.transpose(0, 1).contiguous()).unwrap();
    let mut cands = Vec::new();
    for (a, r) in rows.iter().enumerate() {
        let b = [r[0] - r[2] / 2.0, r[1] - r[3] / 2.0, r[0] + r[2] / 2.0, r[1] + r[3] / 2.0];
        let scores = r[4..].iter().enumerate().map(|(c, &s)| (c as i64, s));
        if agnostic {
            let (c, s) = scores.fold((0, f32::MIN), |m, x| if x.1 > m.1 { x } else { m });
            if s > conf {
                cands.push((b, s, c, a));
            }
        } else {
            cands.extend(scores.filter(|&(_, s)| s > conf).map(|(c, s)| (b, s, c, a)));
        }
    }
    cands.sort_by(|x, y| y.1.partial_cmp(&x.1).unwrap());
    let area = |b: &[f32; 4]| (b[2] - b[0]).max(0.0) * (b[3] - b[1]).max(0.0);
    let iou_of = |p: &[f32; 4], q: &[f32; 4]| {
        let inter = (p[2].min(q[2]) - p[0].max(q[0])).max(0.0) * (p[3].min(q[3]) - p[1].max(q[1])).max(0.0);
        inter / (area(p) + area(q) - inter)
    };
    let mut keep: Vec<([f32; 4], f32, i64, usize)> = Vec::new();
    for c in cands {
        if keep.iter().any(|kk| (agnostic || kk.2 == c.2) && iou_of(&kk.0, &c.0) > iou) {
            continue;
        }
        keep.push(c);
    }
    keep.truncate(k);
    keep
}
