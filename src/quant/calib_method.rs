//! Choosing amax from a histogram: `mse` (default), `percentile`, `entropy`, `max`
//! (pytorch-quantization's `compute_amax` methods). MSE is scored for every candidate
//! at once on the histogram's device.

use super::histogram::Histogram;
use anyhow::{bail, Result};
use tch::{Kind, Tensor};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CalibMethod {
    Mse,
    Percentile(f64),
    Entropy,
    Max,
}

impl CalibMethod {
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "mse" => CalibMethod::Mse,
            "percentile" => CalibMethod::Percentile(99.99),
            _ if s.starts_with("percentile=") => {
                let p: f64 = s["percentile=".len()..].parse().map_err(|_| anyhow::anyhow!("--calib-method {s}: the percentile is not a number"))?;
                if !(p > 0.0 && p <= 100.0) {
                    bail!("--calib-method {s}: the percentile must be in (0, 100]");
                }
                CalibMethod::Percentile(p)
            }
            "entropy" => CalibMethod::Entropy,
            "max" => CalibMethod::Max,
            _ => bail!("--calib-method {s}: expected mse, percentile (99.99), percentile=P, entropy or max"),
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            CalibMethod::Mse => "mse",
            CalibMethod::Percentile(_) => "percentile",
            CalibMethod::Entropy => "entropy",
            CalibMethod::Max => "max",
        }
    }
}

/// First candidate bin of the MSE and entropy searches.
const START_BIN: i64 = 128;

/// amax from the collected histogram; `max_seen` is the largest |x| seen.
pub fn compute_amax(h: &Histogram, max_seen: f64, method: CalibMethod) -> f64 {
    match method {
        CalibMethod::Max => max_seen,
        CalibMethod::Mse => mse(h),
        CalibMethod::Percentile(p) => percentile(h, p),
        CalibMethod::Entropy => entropy(h),
    }
}

/// For each candidate centre c_i (i ≥ 128): mean over bins of (q(c) − c)² · count,
/// q with amax = c_i and narrow range ±127; the argmin's centre.
pub fn mse(h: &Histogram) -> f64 {
    let centres = h.centres();
    let n = h.bins();
    if n <= START_BIN {
        return h.range();
    }
    let c = centres.unsqueeze(0); // (1, N)
    let counts = h.counts.unsqueeze(0);
    // Candidates in blocks so that a grown histogram never needs a huge (K, N) matrix.
    let block = ((1i64 << 24) / n).max(1);
    let mut scores = Vec::new();
    let mut start = START_BIN;
    while start < n {
        let k = block.min(n - start);
        let scale = 127.0 / centres.narrow(0, start, k).unsqueeze(1); // (K, 1)
        let q = (&c * &scale).round().clamp(-127.0, 127.0) / &scale;
        scores.push(((q - &c).square() * &counts).mean_dim(1, false, Kind::Double));
        start += k;
    }
    let best = Tensor::cat(&scores, 0).argmin(None, false).int64_value(&[]);
    centres.double_value(&[START_BIN + best])
}

/// The bin edge where the cumulative share of counts first reaches `p` percent.
pub fn percentile(h: &Histogram, p: f64) -> f64 {
    let counts = Vec::<f64>::try_from(&h.counts.to_device(tch::Device::Cpu)).unwrap_or_default();
    let total: f64 = counts.iter().sum();
    if total <= 0.0 {
        return h.range();
    }
    let mut acc = 0.0;
    for (i, c) in counts.iter().enumerate() {
        acc += c / total;
        if acc >= p / 100.0 {
            return i as f64 * h.width;
        }
    }
    h.range()
}

/// TensorRT's KL-divergence search over candidate thresholds (128 target bins).
pub fn entropy(h: &Histogram) -> f64 {
    let mut bins = Vec::<f64>::try_from(&h.counts.to_device(tch::Device::Cpu)).unwrap_or_default();
    let n = bins.len();
    if n <= START_BIN as usize || bins.iter().sum::<f64>() <= 0.0 {
        return h.range();
    }
    bins[0] = bins[1];
    let mut best = (f64::INFINITY, n);
    for i in START_BIN as usize..=n {
        let d = kl_for_threshold(&bins, i, 128);
        if d <= best.0 {
            best = (d, i); // ties go to the last candidate, as the reference does
        }
    }
    best.1 as f64 * h.width
}

fn kl_for_threshold(bins: &[f64], i: usize, nbins: usize) -> f64 {
    // Quantize bins[..i] into `nbins` groups, spread each group's mass over its non-empty bins.
    let group = |idx: usize| ((idx as f64) * nbins as f64 / i as f64).floor().min(nbins as f64 - 1.0) as usize;
    let mut sums = vec![0.0; nbins];
    let mut nonempty = vec![0usize; nbins];
    for (idx, &b) in bins[..i].iter().enumerate() {
        if b != 0.0 {
            sums[group(idx)] += b;
            nonempty[group(idx)] += 1;
        }
    }
    let mut q: Vec<f64> = (0..i).map(|idx| if bins[idx] == 0.0 { 0.0 } else { sums[group(idx)] / nonempty[group(idx)] as f64 }).collect();
    let mut p: Vec<f64> = bins[..i].to_vec();
    p[i - 1] += bins[i..].iter().sum::<f64>();
    normalize(&mut p);
    normalize(&mut q);
    p.iter().zip(&q).filter(|(pi, _)| **pi > 0.0).map(|(pi, qi)| if *qi > 0.0 { pi * (pi / qi).ln() } else { f64::INFINITY }).sum()
}

fn normalize(v: &mut [f64]) {
    let s: f64 = v.iter().sum();
    if s != 0.0 {
        v.iter_mut().for_each(|x| *x /= s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(counts: &[f64], width: f64) -> Histogram {
        Histogram { counts: Tensor::from_slice(counts), width }
    }

    #[test]
    fn mse_matches_the_reference_formula_on_hand_made_histograms() {
        // Expected values from a direct transcription of pytorch-quantization's
        // _compute_amax_mse (one candidate at a time, numpy/torch float64).
        assert_eq!(mse(&hist(&vec![1.0; 2048], 1.0)), 2039.5);
        let ramp: Vec<f64> = (0..2048).map(|i| if i < 300 { 300.0 - i as f64 } else { 0.0 }).collect();
        assert_eq!(mse(&hist(&ramp, 0.5)), 146.25);
    }

    #[test]
    fn mse_ignores_a_far_outlier_bin() {
        // Mass in the first 200 bins and a single count at the top: amax lands near 200, not 2048.
        let mut c = vec![0.0; 2048];
        c[..200].iter_mut().for_each(|x| *x = 1e6);
        c[2047] = 1.0;
        assert_eq!(mse(&hist(&c, 1.0)), 199.5);
    }

    #[test]
    fn percentile_finds_the_edge() {
        let mut c = vec![0.0; 2048];
        c[9] = 9999.0;
        c[2000] = 1.0;
        assert_eq!(percentile(&hist(&c, 0.5), 99.99), 4.5);
        assert_eq!(percentile(&hist(&c, 0.5), 100.0), 1000.0);
    }

    #[test]
    fn entropy_prefers_covering_the_mass() {
        let mut c = vec![0.0; 2048];
        c[..300].iter_mut().enumerate().for_each(|(i, x)| *x = 300.0 - i as f64);
        let a = entropy(&hist(&c, 1.0));
        assert!((250.0..=2048.0).contains(&a), "amax {a}");
    }

    #[test]
    fn parse_names() {
        assert_eq!(CalibMethod::parse("mse").unwrap(), CalibMethod::Mse);
        assert!(CalibMethod::parse("foo").unwrap_err().to_string().contains("--calib-method foo"));
        assert_eq!(CalibMethod::parse("percentile=99.999").unwrap(), CalibMethod::Percentile(99.999));
        assert!(CalibMethod::parse("percentile=101").is_err());
        assert!(CalibMethod::parse("percentile=x").is_err());
    }
}
