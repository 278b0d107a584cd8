//! Upstream `non_max_suppression` for one image: confidence filter (multi-label),
//! top `max_nms` by confidence, class-offset batched NMS with torchvision's
//! arithmetic, `max_det` kept.

/// A kept box: xyxy in network-input pixels, confidence and class.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Detection {
    pub xyxy: [f32; 4],
    pub conf: f32,
    pub class: usize,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NmsConfig {
    pub conf_thres: f32,
    /// torchvision compares the f32 IoU with this in f64.
    pub iou_thres: f64,
    pub max_det: usize,
    pub max_nms: usize,
    /// Per-class box offset that keeps classes apart in one NMS pass.
    pub max_wh: f32,
    /// One candidate per class over the threshold (val.py), else best class only.
    pub multi_label: bool,
    pub agnostic: bool,
}

impl Default for NmsConfig {
    /// val.py's settings.
    fn default() -> Self {
        NmsConfig { conf_thres: 0.001, iou_thres: 0.7, max_det: 300, max_nms: 30000, max_wh: 7680.0, multi_label: true, agnostic: false }
    }
}

/// NMS over a dense prediction, row-major (4 + nc, anchors): cx, cy, w, h, then class scores.
pub fn non_max_suppression(pred: &[f32], nc: usize, cfg: &NmsConfig) -> Vec<Detection> {
    assert!(nc > 0 && pred.len().is_multiple_of(4 + nc), "prediction is not (4 + nc) x anchors");
    let anchors = pred.len() / (4 + nc);
    let at = |row: usize, a: usize| pred[row * anchors + a];
    let mut cands = Vec::new();
    let mut scores = vec![0f32; nc];
    for a in 0..anchors {
        scores.iter_mut().enumerate().for_each(|(c, s)| *s = at(4 + c, a));
        push_candidates(&mut cands, a, [at(0, a), at(1, a), at(2, a), at(3, a)], &scores, cfg);
    }
    suppress(cands, cfg).into_iter().map(|(d, _)| d).collect()
}

/// NMS over anchor rows, row-major (k, 4 + nc), in anchor order; rows may be
/// pre-filtered to those whose best score exceeds the threshold.
pub fn non_max_suppression_rows(rows: &[f32], nc: usize, cfg: &NmsConfig) -> Vec<Detection> {
    non_max_suppression_indexed(rows, 4 + nc, nc, cfg).into_iter().map(|(d, _)| d).collect()
}

/// As [`non_max_suppression_rows`] for rows of `width` ≥ 4 + nc values (a segmentation
/// head appends its mask coefficients, upstream's `nm`); each kept detection comes
/// with the index of its row.
pub fn non_max_suppression_indexed(rows: &[f32], width: usize, nc: usize, cfg: &NmsConfig) -> Vec<(Detection, usize)> {
    assert!(nc > 0 && width >= 4 + nc && rows.len().is_multiple_of(width), "rows are not k x width");
    let mut cands = Vec::new();
    for (i, r) in rows.chunks_exact(width).enumerate() {
        push_candidates(&mut cands, i, [r[0], r[1], r[2], r[3]], &r[4..4 + nc], cfg);
    }
    suppress(cands, cfg)
}

fn push_candidates(out: &mut Vec<(Detection, usize)>, row: usize, [cx, cy, w, h]: [f32; 4], scores: &[f32], cfg: &NmsConfig) {
    let xyxy = [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0];
    if cfg.multi_label && scores.len() > 1 {
        for (class, &conf) in scores.iter().enumerate() {
            if conf > cfg.conf_thres {
                out.push((Detection { xyxy, conf, class }, row));
            }
        }
    } else {
        // first maximum, like torch.max
        let (class, conf) = scores.iter().copied().enumerate().fold((0, f32::NEG_INFINITY), |b, (i, s)| if s > b.1 { (i, s) } else { b });
        if conf > cfg.conf_thres {
            out.push((Detection { xyxy, conf, class }, row));
        }
    }
}

/// Greedy NMS in descending confidence (stable for ties), suppressing IoU > threshold.
fn suppress(mut cands: Vec<(Detection, usize)>, cfg: &NmsConfig) -> Vec<(Detection, usize)> {
    cands.sort_by(|a, b| b.0.conf.total_cmp(&a.0.conf));
    cands.truncate(cfg.max_nms);
    let boxes: Vec<[f32; 4]> = cands
        .iter()
        .map(|(d, _)| {
            let off = if cfg.agnostic { 0.0 } else { d.class as f32 * cfg.max_wh };
            d.xyxy.map(|v| v + off)
        })
        .collect();
    let areas: Vec<f32> = boxes.iter().map(|b| (b[2] - b[0]) * (b[3] - b[1])).collect();
    let mut suppressed = vec![false; cands.len()];
    let mut keep = Vec::new();
    for i in 0..cands.len() {
        if suppressed[i] {
            continue;
        }
        keep.push(cands[i]);
        if keep.len() == cfg.max_det {
            break; // later boxes cannot change the first max_det kept
        }
        for j in i + 1..cands.len() {
            if !suppressed[j] && iou(&boxes[i], areas[i], &boxes[j], areas[j]) as f64 > cfg.iou_thres {
                suppressed[j] = true;
            }
        }
    }
    keep
}

/// torchvision's CPU IoU: no +1, no epsilon (0/0 is NaN and never suppresses).
fn iou(a: &[f32; 4], area_a: f32, b: &[f32; 4], area_b: f32) -> f32 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    inter / (area_a + area_b - inter)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Dense (4 + nc, anchors) tensor from per-anchor rows.
    fn dense(rows: &[Vec<f32>]) -> Vec<f32> {
        let n = rows[0].len();
        (0..n).flat_map(|r| rows.iter().map(move |a| a[r])).collect()
    }

    #[test]
    fn suppresses_overlaps_within_class_only() {
        // A and B: 10x10 boxes shifted by 1 px -> IoU 90/110 = 0.818 > 0.7.
        // C: same box as A but class 1, survives thanks to the class offset.
        let rows = vec![vec![5.0, 5.0, 10.0, 10.0, 0.9, 0.0], vec![6.0, 5.0, 10.0, 10.0, 0.8, 0.0], vec![5.0, 5.0, 10.0, 10.0, 0.0, 0.7]];
        let d = non_max_suppression(&dense(&rows), 2, &NmsConfig::default());
        assert_eq!(d.len(), 2);
        assert_eq!(d[0], Detection { xyxy: [0.0, 0.0, 10.0, 10.0], conf: 0.9, class: 0 });
        assert_eq!((d[1].conf, d[1].class), (0.7, 1));
    }

    #[test]
    fn threshold_is_strict_and_compared_in_f64() {
        // B (10x5) lies inside A (10x10): IoU = 50 / 100 = 0.5 exactly, not > 0.5.
        let rows = vec![vec![5.0, 5.0, 10.0, 10.0, 0.9], vec![5.0, 2.5, 10.0, 5.0, 0.8]];
        let cfg = NmsConfig { iou_thres: 0.5, ..Default::default() };
        assert_eq!(non_max_suppression(&dense(&rows), 1, &cfg).len(), 2);
        // Shift by half a box: IoU = 50 / 150 = 0.33333334f32, which exceeds 1/3 in f64.
        let rows = vec![vec![5.0, 5.0, 10.0, 10.0, 0.9], vec![10.0, 5.0, 10.0, 10.0, 0.8]];
        let cfg = NmsConfig { iou_thres: 1.0 / 3.0, ..Default::default() };
        assert_eq!(non_max_suppression(&dense(&rows), 1, &cfg).len(), 1);
    }

    #[test]
    fn multi_label_gives_one_candidate_per_class_over_threshold() {
        let rows = vec![vec![50.0, 50.0, 20.0, 20.0, 0.5, 0.0005, 0.3]];
        let d = non_max_suppression(&dense(&rows), 3, &NmsConfig::default());
        assert_eq!(d.iter().map(|x| (x.class, x.conf)).collect::<Vec<_>>(), vec![(0, 0.5), (2, 0.3)]);
        let best = NmsConfig { multi_label: false, ..Default::default() };
        assert_eq!(non_max_suppression(&dense(&rows), 3, &best).len(), 1);
    }

    #[test]
    fn suppression_follows_confidence_order() {
        // A (0.6) overlaps B (0.9) and C (0.5); B overlaps A only. B is processed
        // first and removes A, so C (which only A would have removed) survives.
        let rows = vec![vec![10.0, 5.0, 10.0, 10.0, 0.6], vec![9.0, 5.0, 10.0, 10.0, 0.9], vec![11.5, 5.0, 10.0, 10.0, 0.5]];
        let d = non_max_suppression(&dense(&rows), 1, &NmsConfig::default());
        assert_eq!(d.iter().map(|x| x.conf).collect::<Vec<_>>(), vec![0.9, 0.5]);
    }

    #[test]
    fn max_det_and_max_nms_cap_the_output() {
        let rows: Vec<Vec<f32>> = (0..10).map(|i| vec![i as f32 * 100.0, 0.0, 10.0, 10.0, 0.5 + i as f32 / 100.0]).collect();
        let cfg = NmsConfig { max_det: 3, ..Default::default() };
        let d = non_max_suppression(&dense(&rows), 1, &cfg);
        assert_eq!(d.iter().map(|x| x.xyxy[0] as i32).collect::<Vec<_>>(), vec![895, 795, 695]);
        let cfg = NmsConfig { max_nms: 2, ..Default::default() };
        assert_eq!(non_max_suppression(&dense(&rows), 1, &cfg).len(), 2);
    }

    #[test]
    fn indexed_rows_carry_extra_columns_and_their_row() {
        // rows of 4 + nc + 2: the last two columns (mask coefficients) are not scores
        let rows = [[5.0, 5.0, 10.0, 10.0, 0.2, 0.9, 0.99], [6.0, 5.0, 10.0, 10.0, 0.95, 0.0, 0.99]];
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        let d = non_max_suppression_indexed(&flat, 7, 2, &NmsConfig::default());
        assert_eq!(d.iter().map(|(d, r)| (d.class, *r)).collect::<Vec<_>>(), vec![(0, 1), (1, 0)]);
    }

    #[test]
    fn rows_entry_point_matches_dense() {
        let rows = vec![vec![5.0, 5.0, 10.0, 10.0, 0.9, 0.2], vec![6.0, 5.0, 10.0, 10.0, 0.0, 0.8]];
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        let cfg = NmsConfig::default();
        assert_eq!(non_max_suppression_rows(&flat, 2, &cfg), non_max_suppression(&dense(&rows), 2, &cfg));
    }
}
