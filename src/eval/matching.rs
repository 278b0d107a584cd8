//! val.py's `process_batch`: which detections are true positives at each IoU
//! threshold, with upstream's greedy one-to-one matching.

use crate::data::labels::Label;
use crate::data::letterbox::scale_box_to_original;
use crate::data::val_set::ValItem;
use crate::eval::nms::Detection;

pub const NUM_IOU: usize = 10;

/// torch.linspace(0.5, 0.95, 10) in f32 (each equals the nearest f32 of its decimal).
pub const IOU_THRESHOLDS: [f32; NUM_IOU] = [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95];

/// Detections mapped from letterboxed to original pixels (scale_boxes + clip).
pub fn to_original_space(dets: &[Detection], item: &ValItem) -> Vec<Detection> {
    dets.iter().map(|d| Detection { xyxy: scale_box_to_original(d.xyxy, item.ratio.0, item.pad, item.orig_hw), ..*d }).collect()
}

/// Upstream `box_iou` (eps 1e-7 in the union), in f32.
pub fn box_iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    let area_a = (a[2] - a[0]) * (a[3] - a[1]);
    let area_b = (b[2] - b[0]) * (b[3] - b[1]);
    inter / (area_a + area_b - inter + 1e-7)
}

/// The correct matrix (one row per detection, one column per IoU threshold);
/// detections and labels must be in the same (original) pixel space.
pub fn process_batch(dets: &[Detection], labels: &[Label]) -> Vec<[bool; NUM_IOU]> {
    let iou: Vec<Vec<f32>> = labels.iter().map(|l| dets.iter().map(|d| box_iou(&l.xyxy, &d.xyxy)).collect()).collect();
    correct_from_iou(dets, labels, &iou)
}

/// The correct matrix from a (label × detection) IoU matrix: boxes, or masks
/// (segment/val.py's `process_batch(..., masks=True)` matches the same way).
pub fn correct_from_iou(dets: &[Detection], labels: &[Label], iou: &[Vec<f32>]) -> Vec<[bool; NUM_IOU]> {
    let mut correct = vec![[false; NUM_IOU]; dets.len()];
    if dets.is_empty() || labels.is_empty() {
        return correct;
    }
    for (t, &thr) in IOU_THRESHOLDS.iter().enumerate() {
        // (label, detection, iou) in torch.where's row-major order
        let mut matches: Vec<(usize, usize, f32)> = Vec::new();
        for (li, l) in labels.iter().enumerate() {
            for (di, d) in dets.iter().enumerate() {
                if iou[li][di] >= thr && l.class == d.class {
                    matches.push((li, di, iou[li][di]));
                }
            }
        }
        if matches.len() > 1 {
            matches = unique_matches(matches);
        }
        for &(_, di, _) in &matches {
            correct[di][t] = true;
        }
    }
    correct
}

/// argsort(iou)[::-1], then np.unique(first occurrence) by detection, then by
/// label. The second pass keeps each label's lowest detection index, not its
/// best IoU: upstream left the re-sort between the passes commented out.
fn unique_matches(mut m: Vec<(usize, usize, f32)>) -> Vec<(usize, usize, f32)> {
    m.sort_by(|a, b| a.2.total_cmp(&b.2)); // stable, like numpy's small-array sort
    m.reverse();
    let m = first_by_key(m, |x| x.1);
    first_by_key(m, |x| x.0)
}

/// np.unique(keys, return_index=True): the first row of each key, ordered by key.
pub(crate) fn first_by_key(m: Vec<(usize, usize, f32)>, key: impl Fn(&(usize, usize, f32)) -> usize) -> Vec<(usize, usize, f32)> {
    let mut out: Vec<(usize, usize, f32)> = Vec::with_capacity(m.len());
    let mut idx: Vec<usize> = (0..m.len()).collect();
    idx.sort_by_key(|&i| key(&m[i])); // stable: ties keep their first occurrence first
    for i in idx {
        if out.last().is_none_or(|o| key(o) != key(&m[i])) {
            out.push(m[i]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(xyxy: [f32; 4], class: usize) -> Detection {
        Detection { xyxy, conf: 0.5, class }
    }

    fn lab(xyxy: [f32; 4], class: usize) -> Label {
        Label { class, xyxy }
    }

    #[test]
    fn thresholds_match_torch_linspace_bits() {
        let bits = [1056964608u32, 1057803469, 1058642330, 1059481190, 1060320051, 1061158912, 1061997773, 1062836634, 1063675494, 1064514355];
        assert_eq!(IOU_THRESHOLDS.map(f32::to_bits), bits);
    }

    #[test]
    fn box_iou_by_hand() {
        // inter 5*10 = 50, union 100 + 100 - 50 = 150
        assert_eq!(box_iou(&[0.0, 0.0, 10.0, 10.0], &[5.0, 0.0, 15.0, 10.0]), 50.0 / (150.0 + 1e-7));
        assert_eq!(box_iou(&[0.0, 0.0, 1.0, 1.0], &[2.0, 2.0, 3.0, 3.0]), 0.0);
        // identical boxes: 100 / (100 + 1e-7) rounds to 1 in f32
        assert_eq!(box_iou(&[0.0, 0.0, 10.0, 10.0], &[0.0, 0.0, 10.0, 10.0]), 1.0);
    }

    #[test]
    fn correct_per_threshold_and_class() {
        let labels = [lab([0.0, 0.0, 10.0, 10.0], 0)];
        // IoU 80/100 = 0.8 (box [0,0,10,8]) -> correct for thresholds 0.5..=0.8 (>=)
        let dets = [det([0.0, 0.0, 10.0, 8.0], 0), det([0.0, 0.0, 10.0, 10.0], 1)];
        let c = process_batch(&dets, &labels);
        assert_eq!(c[0], [true, true, true, true, true, true, true, false, false, false]);
        assert_eq!(c[1], [false; 10], "wrong class never matches");
    }

    #[test]
    fn one_label_matches_at_most_one_detection_the_lowest_index() {
        // d0 IoU 0.6, d1 IoU 0.9 with the same label: at 0.5..0.6 upstream keeps d0
        // (lowest index after the unique-by-detection pass), above 0.6 only d1 qualifies.
        let labels = [lab([0.0, 0.0, 10.0, 10.0], 0)];
        let dets = [det([0.0, 0.0, 10.0, 6.0], 0), det([0.0, 0.0, 10.0, 9.0], 0)];
        let c = process_batch(&dets, &labels);
        assert_eq!(c[0], [true, true, true, false, false, false, false, false, false, false]);
        assert_eq!(c[1], [false, false, false, true, true, true, true, true, true, false]);
    }

    #[test]
    fn tie_between_labels_goes_to_the_later_label() {
        // d0 has IoU 0.6 with both labels (75 / 125, a tie); d1 overlaps only l1 (IoU 0.7).
        // Reversing the stable IoU sort puts (l1, d0) before (l0, d0), so d0 takes l1
        // and d1 is left without a label at 0.5 (the other tie order would match both).
        let labels = [lab([0.0, 0.0, 10.0, 10.0], 0), lab([0.0, 5.0, 10.0, 15.0], 0)];
        let dets = [det([0.0, 2.5, 10.0, 12.5], 0), det([0.0, 8.0, 10.0, 15.0], 0)];
        let c = process_batch(&dets, &labels);
        assert!(c[0][0] && !c[1][0]);
        // at 0.65 and 0.7 only d1 qualifies
        assert!(!c[0][3] && c[1][3] && c[1][4] && !c[1][5]);
    }

    #[test]
    fn tie_between_detections_goes_to_the_first() {
        let labels = [lab([0.0, 0.0, 10.0, 10.0], 0)];
        let dets = [det([0.0, 0.0, 10.0, 7.0], 0), det([0.0, 3.0, 10.0, 10.0], 0)];
        let c = process_batch(&dets, &labels);
        assert!(c[0][0] && !c[1][0]);
    }

    #[test]
    fn empty_inputs() {
        assert!(process_batch(&[], &[lab([0.0, 0.0, 1.0, 1.0], 0)]).is_empty());
        assert_eq!(process_batch(&[det([0.0, 0.0, 1.0, 1.0], 0)], &[]), vec![[false; 10]]);
    }
}
