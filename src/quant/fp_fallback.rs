//! Meeting an accuracy target by keeping layers in floating point
//! (`quantize --max-ap-drop`): after QAT, while the INT8 model's AP is below
//! `Origin − drop`, the most sensitive layer still in INT8 joins the FP set (ranked
//! by the AP its own quantizers cost, measured on the finetuned model), and QAT
//! resumes briefly. The cost is reported as the FP layers' share of the model's
//! convolution FLOPs: what TensorRT then runs in FP16 instead of INT8.

use super::sensitivity::LayerSensitivity;
use serde::Serialize;

/// What the fallback decided, for the report.
#[derive(Debug, Clone, Serialize)]
pub struct FallbackReport {
    pub target_ap: f64,
    /// Layers kept in floating point, in the order they were added.
    pub fp_layers: Vec<String>,
    /// Their share of the model's convolution FLOPs (0..1).
    pub fp_flop_share: f64,
    pub met: bool,
    /// AP after each round (one more layer in FP per round).
    pub rounds: Vec<FallbackRound>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FallbackRound {
    pub added: String,
    pub best_ap: f64,
}

/// The most sensitive layer not yet in floating point (largest AP gain first; ties by
/// name for a stable order). `None` when every ranked layer is FP already.
pub fn next_layer<'a>(ranked: &'a [LayerSensitivity], fp: &[String]) -> Option<&'a LayerSensitivity> {
    let mut v: Vec<&LayerSensitivity> = ranked.iter().filter(|l| !fp.contains(&l.layer)).collect();
    v.sort_by(|a, b| b.gain.total_cmp(&a.gain).then(a.layer.cmp(&b.layer)));
    v.first().copied()
}

/// Share of `flops` (per top-level layer) spent in `layers`.
pub fn flop_share(flops: &[f64], layers: &[usize]) -> f64 {
    let total: f64 = flops.iter().sum();
    if total <= 0.0 {
        return 0.0;
    }
    layers.iter().filter_map(|&l| flops.get(l)).fold(0.0, |a, f| a + f) / total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(layer: &str, gain: f64) -> LayerSensitivity {
        LayerSensitivity { layer: layer.into(), map: 0.5 + gain, map50: 0.0, gain }
    }

    #[test]
    fn picks_the_largest_gain_not_yet_fp() {
        let ranked = vec![row("model.4", 0.001), row("model.2", 0.010), row("model.22", 0.004)];
        assert_eq!(next_layer(&ranked, &[]).unwrap().layer, "model.2");
        assert_eq!(next_layer(&ranked, &["model.2".into()]).unwrap().layer, "model.22");
        let all: Vec<String> = ranked.iter().map(|l| l.layer.clone()).collect();
        assert!(next_layer(&ranked, &all).is_none());
    }

    #[test]
    fn flop_share_is_the_fraction_of_the_total() {
        let flops = [1.0, 3.0, 4.0, 2.0];
        assert!((flop_share(&flops, &[1, 3]) - 0.5).abs() < 1e-12);
        assert_eq!(flop_share(&flops, &[]), 0.0);
    }
}
