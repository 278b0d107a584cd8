//! val.py's metrics: `ap_per_class` (COCO 101-point AP, P/R at the best smoothed
//! mean F1) and the printed results table.

use std::fmt;

use crate::data::labels::Label;
use crate::eval::matching::NUM_IOU;
use crate::eval::nms::Detection;

/// Per-detection statistics gathered over the whole set, in image order.
#[derive(Clone, Debug, Default)]
pub struct EvalStats {
    pub correct: Vec<[bool; NUM_IOU]>,
    pub conf: Vec<f32>,
    pub pred_cls: Vec<usize>,
    pub target_cls: Vec<usize>,
    /// Images evaluated, with or without labels or predictions.
    pub seen: usize,
}

impl EvalStats {
    /// Adds one image: its detections, their correct matrix and its labels.
    pub fn add_image(&mut self, dets: &[Detection], correct: &[[bool; NUM_IOU]], labels: &[Label]) {
        assert_eq!(dets.len(), correct.len(), "one correct row per detection");
        self.seen += 1;
        self.correct.extend_from_slice(correct);
        self.conf.extend(dets.iter().map(|d| d.conf));
        self.pred_cls.extend(dets.iter().map(|d| d.class));
        self.target_cls.extend(labels.iter().map(|l| l.class));
    }

    /// Appends `other` (the images that follow this one's).
    pub fn extend(&mut self, other: EvalStats) {
        self.correct.extend(other.correct);
        self.conf.extend(other.conf);
        self.pred_cls.extend(other.pred_cls);
        self.target_cls.extend(other.target_cls);
        self.seen += other.seen;
    }

    /// val.py's results; `names` gives nc and the row labels.
    pub fn finish(&self, names: &[String]) -> ValMetrics {
        let mut nt = vec![0usize; names.len()];
        for &c in &self.target_cls {
            if c < nt.len() {
                nt[c] += 1;
            }
        }
        let mut m = ValMetrics { names_count: names.len(), images: self.seen, instances: nt.iter().sum(), ..Default::default() };
        if !self.correct.iter().any(|r| r.iter().any(|&b| b)) {
            return m; // upstream skips the metrics when nothing is correct
        }
        let a = ap_per_class(&self.correct, &self.conf, &self.pred_cls, &self.target_cls);
        let n = a.classes.len() as f64;
        m.precision = a.p.iter().sum::<f64>() / n;
        m.recall = a.r.iter().sum::<f64>() / n;
        m.map50 = a.ap.iter().map(|ap| ap[0]).sum::<f64>() / n;
        m.map = a.ap.iter().map(|ap| mean(ap)).sum::<f64>() / n;
        m.curves = Curves { names: a.classes.iter().map(|&c| names.get(c).cloned().unwrap_or_else(|| c.to_string())).collect(), ..a.curves.clone() };
        m.per_class = a
            .classes
            .iter()
            .enumerate()
            .map(|(i, &c)| ClassMetrics {
                class: c,
                name: names.get(c).cloned().unwrap_or_else(|| c.to_string()),
                images: self.seen,
                instances: nt.get(c).copied().unwrap_or(0),
                precision: a.p[i],
                recall: a.r[i],
                map50: a.ap[i][0],
                map: mean(&a.ap[i]),
            })
            .collect();
        m
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClassMetrics {
    pub class: usize,
    pub name: String,
    /// Images seen in the whole set (upstream prints the same count on every row).
    pub images: usize,
    pub instances: usize,
    pub precision: f64,
    pub recall: f64,
    pub map50: f64,
    pub map: f64,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ValMetrics {
    pub images: usize,
    pub instances: usize,
    pub precision: f64,
    pub recall: f64,
    pub map50: f64,
    /// mAP50-95
    pub map: f64,
    /// Classes that have labels, ascending.
    pub per_class: Vec<ClassMetrics>,
    /// What val.py plots (empty when nothing was correct, as upstream skips the metrics).
    pub curves: Curves,
    names_count: usize,
}

/// The curves of upstream `ap_per_class(plot=True)`, one row per labelled class (ascending):
/// what `PR_curve.png`, `F1_curve.png`, `P_curve.png` and `R_curve.png` draw.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Curves {
    /// 1000 points from 0 to 1: confidence for `p`, `r`, `f1`.
    pub px: Vec<f64>,
    pub classes: Vec<usize>,
    /// Class names of `classes` (filled in by `EvalStats::finish`).
    pub names: Vec<String>,
    /// Precision envelope at IoU 0.5 as (recall, precision) vertices, the `mrec`, `mpre` that
    /// `compute_ap` integrates (upstream samples it at 1000 recalls for its `py`; the
    /// vertices draw the same line without the resampling).
    pub pr: Vec<Vec<(f64, f64)>>,
    /// AP at IoU 0.5 per class, the number the PR legend prints.
    pub ap50: Vec<f64>,
    /// Precision, recall and F1 against confidence.
    pub p: Vec<Vec<f64>>,
    pub r: Vec<Vec<f64>>,
    pub f1: Vec<Vec<f64>>,
}

impl fmt::Display for ValMetrics {
    /// val.py's table: header, `all`, then one row per labelled class when nc > 1.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{:>22}{:>11}{:>11}{:>11}{:>11}{:>11}{:>11}", "Class", "Images", "Instances", "P", "R", "mAP50", "mAP50-95")?;
        let row = |f: &mut fmt::Formatter<'_>, name: &str, n: usize, i: usize, v: [f64; 4]| {
            writeln!(f, "{name:>22}{n:>11}{i:>11}{:>11}{:>11}{:>11}{:>11}", fmt_g3(v[0]), fmt_g3(v[1]), fmt_g3(v[2]), fmt_g3(v[3]))
        };
        row(f, "all", self.images, self.instances, [self.precision, self.recall, self.map50, self.map])?;
        if self.names_count > 1 {
            for c in &self.per_class {
                row(f, &c.name, c.images, c.instances, [c.precision, c.recall, c.map50, c.map])?;
            }
        }
        Ok(())
    }
}

/// printf's `%.3g`.
pub fn fmt_g3(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return if v == 0.0 { "0".into() } else { v.to_string() };
    }
    let sci = format!("{v:.2e}"); // rounds to 3 significant digits
    let (mant, exp) = sci.split_once('e').unwrap();
    let exp: i32 = exp.parse().unwrap();
    if (-4..3).contains(&exp) {
        let s = format!("{:.*}", (2 - exp) as usize, v);
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    } else {
        let m = if mant.contains('.') { mant.trim_end_matches('0').trim_end_matches('.') } else { mant };
        format!("{m}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
    }
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// ap_per_class's outputs for the classes that have labels.
#[derive(Clone, Debug, PartialEq)]
pub struct ApPerClass {
    pub classes: Vec<usize>,
    pub p: Vec<f64>,
    pub r: Vec<f64>,
    pub f1: Vec<f64>,
    pub ap: Vec<[f64; NUM_IOU]>,
    pub curves: Curves,
}

/// numpy's linspace(0, 1, n): i * (1 / (n - 1)), last point exactly 1.
pub fn unit_linspace(n: usize) -> Vec<f64> {
    let step = 1.0 / (n - 1) as f64;
    (0..n).map(|i| if i == n - 1 { 1.0 } else { i as f64 * step }).collect()
}

/// Upstream `ap_per_class` (eps 1e-16). Detections are ordered by descending
/// confidence with a stable sort (numpy's quicksort may order exact ties differently).
pub fn ap_per_class(tp: &[[bool; NUM_IOU]], conf: &[f32], pred_cls: &[usize], target_cls: &[usize]) -> ApPerClass {
    let mut order: Vec<usize> = (0..conf.len()).collect();
    order.sort_by(|&a, &b| conf[b].total_cmp(&conf[a]));
    let mut classes = target_cls.to_vec();
    classes.sort_unstable();
    classes.dedup();
    let px = unit_linspace(1000);
    let neg_px: Vec<f64> = px.iter().map(|v| -v).collect();
    let (mut p_curves, mut r_curves, mut aps, mut pr) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for &c in &classes {
        let n_l = target_cls.iter().filter(|&&t| t == c).count();
        let idx: Vec<usize> = order.iter().copied().filter(|&i| pred_cls[i] == c).collect();
        if idx.is_empty() {
            p_curves.push(vec![0.0; px.len()]);
            r_curves.push(vec![0.0; px.len()]);
            aps.push([0.0; NUM_IOU]);
            // Upstream skips such a class in `py`, which shifts the legend's names by one;
            // a zero curve keeps the rows aligned with `classes`.
            pr.push(vec![(0.0, 0.0), (1.0, 0.0)]);
            continue;
        }
        let neg_conf: Vec<f64> = idx.iter().map(|&i| -conf[i] as f64).collect();
        let (recall, precision) = pr_curves(tp, &idx, n_l);
        r_curves.push(interp(&neg_px, &neg_conf, &recall[0], 0.0));
        p_curves.push(interp(&neg_px, &neg_conf, &precision[0], 1.0));
        aps.push(std::array::from_fn(|j| compute_ap(&recall[j], &precision[j])));
        let (mrec, mpre) = envelope(&recall[0], &precision[0]);
        pr.push(mrec.into_iter().zip(mpre).collect());
    }
    let f1_curves: Vec<Vec<f64>> = p_curves.iter().zip(&r_curves).map(|(p, r)| p.iter().zip(r).map(|(p, r)| 2.0 * p * r / (p + r + 1e-16)).collect()).collect();
    let mean_f1: Vec<f64> = (0..px.len()).map(|k| f1_curves.iter().map(|f| f[k]).sum::<f64>() / classes.len() as f64).collect();
    let best = argmax(&smooth(&mean_f1, 0.1));
    let curves =
        Curves { ap50: aps.iter().map(|a| a[0]).collect(), classes: classes.clone(), names: Vec::new(), pr, px, p: p_curves, r: r_curves, f1: f1_curves };
    ApPerClass {
        p: curves.p.iter().map(|c| c[best]).collect(),
        r: curves.r.iter().map(|c| c[best]).collect(),
        f1: curves.f1.iter().map(|c| c[best]).collect(),
        ap: aps,
        classes,
        curves,
    }
}

/// Recall and precision after each detection (in `idx` order), per IoU threshold.
fn pr_curves(tp: &[[bool; NUM_IOU]], idx: &[usize], n_l: usize) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
    let n_l = n_l as f64 + 1e-16;
    let mut recall: Vec<Vec<f64>> = (0..NUM_IOU).map(|_| Vec::with_capacity(idx.len())).collect();
    let mut precision: Vec<Vec<f64>> = (0..NUM_IOU).map(|_| Vec::with_capacity(idx.len())).collect();
    for j in 0..NUM_IOU {
        let mut tpc = 0u64;
        for (k, &i) in idx.iter().enumerate() {
            tpc += tp[i][j] as u64;
            let fpc = (k as u64 + 1) - tpc;
            recall[j].push(tpc as f64 / n_l);
            precision[j].push(tpc as f64 / (tpc + fpc) as f64);
        }
    }
    (recall, precision)
}

/// Upstream `compute_ap`: precision envelope, 101-point interpolation, trapezoid rule.
pub fn compute_ap(recall: &[f64], precision: &[f64]) -> f64 {
    let (mrec, mpre) = envelope(recall, precision);
    let x = unit_linspace(101);
    let last = *mpre.last().unwrap();
    let y: Vec<f64> = x.iter().map(|&v| interp_one(v, &mrec, &mpre, mpre[0], last)).collect();
    trapz(&y, &x)
}

/// compute_ap's (mrec, mpre): sentinels added, precision made non-increasing.
fn envelope(recall: &[f64], precision: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let mrec: Vec<f64> = std::iter::once(0.0).chain(recall.iter().copied()).chain(std::iter::once(1.0)).collect();
    let mut mpre: Vec<f64> = std::iter::once(1.0).chain(precision.iter().copied()).chain(std::iter::once(0.0)).collect();
    for i in (0..mpre.len() - 1).rev() {
        mpre[i] = mpre[i].max(mpre[i + 1]);
    }
    (mrec, mpre)
}

/// np.trapz: sum of (x[i+1] - x[i]) * (y[i+1] + y[i]) / 2.
pub fn trapz(y: &[f64], x: &[f64]) -> f64 {
    (1..y.len()).map(|i| (x[i] - x[i - 1]) * (y[i] + y[i - 1]) / 2.0).sum()
}

/// np.interp with `left` given and `right` = last fp; `xp` must be non-decreasing.
fn interp(x: &[f64], xp: &[f64], fp: &[f64], left: f64) -> Vec<f64> {
    let right = *fp.last().unwrap();
    x.iter().map(|&v| interp_one(v, xp, fp, left, right)).collect()
}

/// One np.interp point: j is the last index with xp[j] <= v (numpy's binary search).
fn interp_one(v: f64, xp: &[f64], fp: &[f64], left: f64, right: f64) -> f64 {
    let n = xp.len();
    if v > xp[n - 1] {
        return right;
    }
    if v < xp[0] {
        return left;
    }
    let j = xp.partition_point(|&a| a <= v) - 1;
    if j == n - 1 || xp[j] == v {
        return fp[j];
    }
    let slope = (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j]);
    slope * (v - xp[j]) + fp[j]
}

/// Upstream `smooth`: box filter of fraction `f`, edges padded with the end values.
pub fn smooth(y: &[f64], f: f64) -> Vec<f64> {
    let nf = (y.len() as f64 * f * 2.0).round_ties_even() as usize / 2 + 1;
    let half = nf / 2;
    let mut yp = vec![y[0]; half];
    yp.extend_from_slice(y);
    yp.extend(std::iter::repeat_n(y[y.len() - 1], half));
    let k = 1.0 / nf as f64;
    yp.windows(nf).map(|w| w.iter().map(|v| v * k).sum()).collect()
}

/// Index of the first maximum (np.argmax).
fn argmax(v: &[f64]) -> usize {
    v.iter().enumerate().fold(0, |best, (i, &x)| if x > v[best] { i } else { best })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn compute_ap_by_hand() {
        // Expected values also checked with numpy running upstream's compute_ap.
        // recall [1], precision [1]: mrec [0, 1, 1], envelope [1, 1, 0]. np.interp at
        // exactly 1 takes the last equal xp, i.e. 0, so the final trapezoid is half:
        // 0.99 + 0.01 * (1 + 0) / 2 = 0.995 (YOLO's familiar maximum AP).
        assert!(close(compute_ap(&[1.0], &[1.0]), 0.995));
        // Hit then miss, two labels: envelope 1 on [0, 0.5), 0.5 at 0.5 (last equal xp),
        // then linear to 0 at 1: 0.495 - 0.0025 + (0.5*0.5/2 = 0.125) + ... = 0.6225.
        assert!(close(compute_ap(&[0.5, 0.5], &[1.0, 0.5]), 0.6224999999999999));
        // Miss then hit, one label: envelope 0.5 from recall 0 to 1, 0 at 1 -> 0.4975.
        assert!(close(compute_ap(&[0.0, 1.0], &[0.0, 0.5]), 0.4975));
    }

    #[test]
    fn smooth_box_filter() {
        // f = 0.2 on 5 points: nf = round(5 * 0.2 * 2) // 2 + 1 = 2, padding nf // 2 = 1.
        let s = smooth(&[0.0, 3.0, 6.0, 3.0, 0.0], 0.2);
        // yp = [0, 0, 3, 6, 3, 0, 0], window 2, 'valid' -> 6 values
        assert_eq!(s, vec![0.0, 1.5, 4.5, 4.5, 1.5, 0.0]);
        // 1000 points with f = 0.1: a 101-wide filter, output length 1000
        let y: Vec<f64> = (0..1000).map(|i| (i % 7) as f64).collect();
        let s = smooth(&y, 0.1);
        assert_eq!(s.len(), 1000);
        let direct: f64 = (0..101).map(|k| y[(500 + k) - 50] / 101.0).sum();
        assert!(close(s[500], direct));
    }

    #[test]
    fn interp_follows_numpy() {
        let xp = [0.0, 1.0, 1.0, 2.0];
        let fp = [0.0, 10.0, 20.0, 30.0];
        let got = interp(&[-1.0, 0.5, 1.0, 1.5, 2.0, 3.0], &xp, &fp, -5.0);
        // at a repeated xp the last one wins; beyond the end the last fp
        assert_eq!(got, vec![-5.0, 5.0, 20.0, 25.0, 30.0, 30.0]);
    }

    #[test]
    fn ap_per_class_counts_classes_without_predictions_as_zero() {
        // class 0: two labels, detections hit (0.9) and miss (0.8); class 1: one label, no detections.
        let t = [true; NUM_IOU];
        let f = [false; NUM_IOU];
        let a = ap_per_class(&[t, f], &[0.9, 0.8], &[0, 0], &[0, 0, 1]);
        assert_eq!(a.classes, vec![0, 1]);
        assert!(close(a.ap[0][0], 0.6224999999999999));
        assert_eq!(a.ap[1], [0.0; NUM_IOU]);
        // P/R where the smoothed mean F1 peaks (a point on the interpolated P curve
        // between the two confidences); numpy gives the same.
        assert!(close(a.p[0], 0.7492492787830924) && close(a.r[0], 0.5), "{a:?}");
        assert_eq!((a.p[1], a.r[1]), (0.0, 0.0));
    }

    #[test]
    fn finish_mirrors_val_py() {
        let mut s = EvalStats::default();
        let d = Detection { xyxy: [0.0, 0.0, 1.0, 1.0], conf: 0.9, class: 0 };
        let l0 = Label { class: 0, xyxy: [0.0, 0.0, 1.0, 1.0] };
        let l1 = Label { class: 1, xyxy: [0.0, 0.0, 1.0, 1.0] };
        s.add_image(&[d], &[[true; NUM_IOU]], &[l0]);
        s.add_image(&[], &[], &[l1]);
        s.add_image(&[], &[], &[]);
        let names: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let m = s.finish(&names);
        assert_eq!((m.images, m.instances), (3, 2));
        // class a: AP 0.995, class b (labels, no predictions): 0
        assert!(close(m.map50, 0.4975) && close(m.map, 0.4975));
        assert_eq!(m.per_class.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), vec!["a", "b"]);
        let table = m.to_string();
        assert_eq!(table.lines().next().unwrap(), "                 Class     Images  Instances          P          R      mAP50   mAP50-95");
        assert_eq!(table.lines().nth(2).unwrap(), "                     a          3          1          1          1      0.995      0.995");
    }

    #[test]
    fn nothing_correct_gives_zeros() {
        let mut s = EvalStats::default();
        let d = Detection { xyxy: [0.0, 0.0, 1.0, 1.0], conf: 0.9, class: 0 };
        s.add_image(&[d], &[[false; NUM_IOU]], &[Label { class: 0, xyxy: [5.0, 5.0, 6.0, 6.0] }]);
        let m = s.finish(&["a".to_string()]);
        assert_eq!((m.precision, m.recall, m.map50, m.map, m.per_class.len()), (0.0, 0.0, 0.0, 0.0, 0));
    }

    #[test]
    fn g3_formatting() {
        for (v, s) in [(0.8813, "0.881"), (0.0, "0"), (1.0, "1"), (0.5, "0.5"), (0.000123456, "0.000123"), (1.2e-5, "1.2e-05"), (0.07, "0.07"), (0.9995, "1")] {
            assert_eq!(fmt_g3(v), s, "{v}");
        }
    }
}
