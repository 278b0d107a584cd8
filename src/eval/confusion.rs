//! Upstream `ConfusionMatrix` (utils/metrics.py, as val.py feeds it): detections above
//! conf 0.25 matched class-agnostically to labels at IoU > 0.45; rows are predicted
//! classes, columns true classes, index `nc` the background row and column.

use crate::data::labels::Label;
use crate::eval::matching::{box_iou, first_by_key};
use crate::eval::nms::Detection;

#[derive(Clone, Debug, PartialEq)]
pub struct ConfusionMatrix {
    pub nc: usize,
    pub conf: f32,
    pub iou_thres: f32,
    /// (nc + 1) x (nc + 1) counts, `matrix[predicted][true]`.
    pub matrix: Vec<Vec<u64>>,
}

impl ConfusionMatrix {
    /// val.py's thresholds: conf 0.25, IoU 0.45.
    pub fn new(nc: usize) -> ConfusionMatrix {
        ConfusionMatrix { nc, conf: 0.25, iou_thres: 0.45, matrix: vec![vec![0; nc + 1]; nc + 1] }
    }

    /// One image, detections and labels in the same pixel space. As in val.py, an image
    /// without labels is not counted (its detections are not background false positives).
    pub fn add_image(&mut self, dets: &[Detection], labels: &[Label]) {
        if labels.is_empty() {
            return;
        }
        let dets: Vec<&Detection> = dets.iter().filter(|d| d.conf > self.conf).collect();
        let matches = self.matches(&dets, labels);
        for (li, l) in labels.iter().enumerate() {
            match matches.iter().find(|m| m.0 == li) {
                Some(&(_, di)) => self.matrix[dets[di].class][l.class] += 1,
                None => self.matrix[self.nc][l.class] += 1, // missed: background
            }
        }
        // Upstream counts unmatched detections only when something matched (`if n:`).
        if !matches.is_empty() {
            for (di, d) in dets.iter().enumerate() {
                if !matches.iter().any(|m| m.1 == di) {
                    self.matrix[d.class][self.nc] += 1;
                }
            }
        }
    }

    /// (label, detection) pairs: IoU > threshold, best IoU first, one per detection,
    /// then one per label (upstream's argsort / np.unique passes).
    fn matches(&self, dets: &[&Detection], labels: &[Label]) -> Vec<(usize, usize)> {
        let mut m: Vec<(usize, usize, f32)> = Vec::new();
        for (li, l) in labels.iter().enumerate() {
            for (di, d) in dets.iter().enumerate() {
                let iou = box_iou(&l.xyxy, &d.xyxy);
                if iou > self.iou_thres {
                    m.push((li, di, iou));
                }
            }
        }
        let m = first_by_key(by_iou_desc(m), |x| x.1);
        first_by_key(by_iou_desc(m), |x| x.0).into_iter().map(|(l, d, _)| (l, d)).collect()
    }

    /// Correct detections per class (the diagonal without the background cell).
    pub fn true_positives(&self) -> Vec<u64> {
        (0..self.nc).map(|c| self.matrix[c][c]).collect()
    }

    /// Column-normalized matrix (each true class sums to 1), as upstream plots it.
    pub fn normalized(&self) -> Vec<Vec<f64>> {
        let n = self.nc + 1;
        let col: Vec<f64> = (0..n).map(|j| self.matrix.iter().map(|r| r[j] as f64).sum::<f64>() + 1e-9).collect();
        self.matrix.iter().map(|r| (0..n).map(|j| r[j] as f64 / col[j]).collect()).collect()
    }
}

fn by_iou_desc(mut m: Vec<(usize, usize, f32)>) -> Vec<(usize, usize, f32)> {
    m.sort_by(|a, b| a.2.total_cmp(&b.2)); // stable ascending, then reversed as argsort()[::-1]
    m.reverse();
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(xyxy: [f32; 4], conf: f32, class: usize) -> Detection {
        Detection { xyxy, conf, class }
    }

    #[test]
    fn counts_by_hand() {
        let labels = [
            Label { class: 0, xyxy: [0.0, 0.0, 10.0, 10.0] },
            Label { class: 1, xyxy: [20.0, 0.0, 30.0, 10.0] },
            Label { class: 2, xyxy: [40.0, 0.0, 50.0, 10.0] },
        ];
        let dets = [
            det([0.0, 0.0, 10.0, 9.0], 0.9, 0),   // IoU 0.9 with label 0, right class
            det([20.0, 0.0, 30.0, 8.0], 0.8, 0),  // IoU 0.8 with label 1, wrong class
            det([60.0, 0.0, 70.0, 10.0], 0.7, 2), // no label: background false positive
            det([40.0, 0.0, 50.0, 10.0], 0.2, 2), // below conf 0.25: ignored, label 2 missed
            det([0.0, 0.0, 10.0, 4.0], 0.95, 1),  // IoU 0.4 <= 0.45: unmatched, background
        ];
        let mut cm = ConfusionMatrix::new(3);
        cm.add_image(&dets, &labels);
        let mut want = vec![vec![0u64; 4]; 4];
        want[0][0] = 1; // label 0 found as class 0
        want[0][1] = 1; // label 1 found as class 0
        want[3][2] = 1; // label 2 missed
        want[2][3] = 1; // detection 2 on background
        want[1][3] = 1; // detection 4 on background
        assert_eq!(cm.matrix, want);
        assert_eq!(cm.true_positives(), vec![1, 0, 0]);
        // each column of the normalized matrix sums to 1 where it has counts
        let n = cm.normalized();
        assert!((n[0][1] - 1.0).abs() < 1e-6 && (n[3][2] - 1.0).abs() < 1e-6);
    }

    #[test]
    fn val_py_quirks() {
        let label = [Label { class: 0, xyxy: [0.0, 0.0, 10.0, 10.0] }];
        let far = det([50.0, 50.0, 60.0, 60.0], 0.9, 0);
        let mut cm = ConfusionMatrix::new(1);
        // no labels: not counted at all
        cm.add_image(&[far], &[]);
        assert_eq!(cm.matrix, vec![vec![0, 0], vec![0, 0]]);
        // nothing matched: the label is background, the stray detection is not counted
        cm.add_image(&[far], &label);
        assert_eq!(cm.matrix, vec![vec![0, 0], vec![1, 0]]);
    }
}
