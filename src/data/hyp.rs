//! Training hyperparameters, read from an upstream-style `hyp.*.yaml`
//! (e.g. upstream YOLOv9 `data/hyps/hyp.scratch-high.yaml`, copied to
//! `configs/hyp.scratch-high.yaml`).
//!
//! * Keys are upstream's. Unknown keys are ignored.
//! * The augmentation keys that the training loader reads (`hsv_h hsv_s hsv_v
//!   degrees translate scale shear perspective flipud fliplr mosaic mixup
//!   copy_paste`) are required; a file missing any of them is an error that
//!   names every missing key.
//! * The optimizer / loss keys (`lr0 lrf momentum weight_decay warmup_epochs
//!   warmup_momentum warmup_bias_lr box cls cls_pw obj obj_pw dfl iou_t
//!   anchor_t fl_gamma`) are kept when present (`None` when absent): QAT uses
//!   its own fixed schedule and no detection loss, so they are informational.
//! * A key that appears twice takes its last value, as PyYAML does (an early
//!   upstream revision of `hyp.scratch-high.yaml` repeats `dfl`).

use std::fmt;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};

/// Upstream hyperparameters. All values are `f64`, as PyYAML would give.
#[derive(Debug, Clone, PartialEq)]
pub struct Hyp {
    // ---- optimizer / loss (optional, not used by the loader) ----
    pub lr0: Option<f64>,
    pub lrf: Option<f64>,
    pub momentum: Option<f64>,
    pub weight_decay: Option<f64>,
    pub warmup_epochs: Option<f64>,
    pub warmup_momentum: Option<f64>,
    pub warmup_bias_lr: Option<f64>,
    /// key `box`
    pub box_gain: Option<f64>,
    pub cls: Option<f64>,
    pub cls_pw: Option<f64>,
    pub obj: Option<f64>,
    pub obj_pw: Option<f64>,
    pub dfl: Option<f64>,
    pub iou_t: Option<f64>,
    pub anchor_t: Option<f64>,
    pub fl_gamma: Option<f64>,
    // ---- augmentation (required) ----
    /// HSV hue gain (fraction).
    pub hsv_h: f64,
    /// HSV saturation gain (fraction).
    pub hsv_s: f64,
    /// HSV value gain (fraction).
    pub hsv_v: f64,
    /// Rotation, +/- degrees.
    pub degrees: f64,
    /// Translation, +/- fraction of the output size.
    pub translate: f64,
    /// Scale gain: the scale factor is drawn from `[1 - scale, 1 + scale]`.
    pub scale: f64,
    /// Shear, +/- degrees.
    pub shear: f64,
    /// Perspective, +/- fraction (upstream range 0 - 0.001).
    pub perspective: f64,
    /// Probability of an up-down flip.
    pub flipud: f64,
    /// Probability of a left-right flip.
    pub fliplr: f64,
    /// Probability of a 4-image mosaic.
    pub mosaic: f64,
    /// Probability of mixup (only applied to mosaic samples, as upstream).
    pub mixup: f64,
    /// Segment copy-paste probability. Parsed but has no effect: with
    /// box-only labels upstream's copy-paste is a no-op too.
    pub copy_paste: f64,
}

/// The augmentation keys the loader needs, in upstream's file order.
pub const REQUIRED_KEYS: [&str; 13] =
    ["hsv_h", "hsv_s", "hsv_v", "degrees", "translate", "scale", "shear", "perspective", "flipud", "fliplr", "mosaic", "mixup", "copy_paste"];

/// The optional (optimizer / loss) keys that are recognised.
pub const OPTIONAL_KEYS: [&str; 16] = [
    "lr0",
    "lrf",
    "momentum",
    "weight_decay",
    "warmup_epochs",
    "warmup_momentum",
    "warmup_bias_lr",
    "box",
    "cls",
    "cls_pw",
    "obj",
    "obj_pw",
    "dfl",
    "iou_t",
    "anchor_t",
    "fl_gamma",
];

impl Hyp {
    /// Upstream `hyp.scratch-high.yaml` values (the reference QAT default).
    pub fn scratch_high() -> Self {
        Hyp {
            lr0: Some(0.01),
            lrf: Some(0.01),
            momentum: Some(0.937),
            weight_decay: Some(0.0005),
            warmup_epochs: Some(3.0),
            warmup_momentum: Some(0.8),
            warmup_bias_lr: Some(0.1),
            box_gain: Some(7.5),
            cls: Some(0.5),
            cls_pw: Some(1.0),
            obj: Some(0.7),
            obj_pw: Some(1.0),
            dfl: Some(1.5),
            iou_t: Some(0.20),
            anchor_t: Some(5.0),
            fl_gamma: Some(0.0),
            hsv_h: 0.015,
            hsv_s: 0.7,
            hsv_v: 0.4,
            degrees: 0.0,
            translate: 0.1,
            scale: 0.9,
            shear: 0.0,
            perspective: 0.0,
            flipud: 0.0,
            fliplr: 0.5,
            mosaic: 1.0,
            mixup: 0.15,
            copy_paste: 0.3,
        }
    }

    /// Every augmentation switched off: the loader then only resizes and
    /// letterboxes (random draws still happen, but change nothing).
    pub fn no_augment() -> Self {
        Hyp {
            hsv_h: 0.0,
            hsv_s: 0.0,
            hsv_v: 0.0,
            degrees: 0.0,
            translate: 0.0,
            scale: 0.0,
            shear: 0.0,
            perspective: 0.0,
            flipud: 0.0,
            fliplr: 0.0,
            mosaic: 0.0,
            mixup: 0.0,
            copy_paste: 0.0,
            ..Hyp::scratch_high()
        }
    }

    /// Read a hyp yaml file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading hyperparameter file {}", path.display()))?;
        Self::from_yaml_str(&text).with_context(|| format!("in hyperparameter file {}", path.display()))
    }

    /// Parse hyp yaml text (a flat mapping of names to numbers).
    pub fn from_yaml_str(text: &str) -> Result<Self> {
        if text.trim().is_empty() {
            bail!("hyperparameter yaml is empty");
        }
        let Entries(entries) = serde_yaml::from_str(text).context("hyperparameter yaml is not a flat mapping")?;
        let mut values: Vec<(String, f64)> = Vec::new();
        for (key, value) in entries {
            let known = REQUIRED_KEYS.contains(&key.as_str()) || OPTIONAL_KEYS.contains(&key.as_str());
            if !known {
                continue; // unknown keys are ignored, as upstream ignores unused ones
            }
            let v = yaml_number(&value).with_context(|| format!("hyperparameter `{key}` must be a number, got {value:?}"))?;
            if !v.is_finite() {
                bail!("hyperparameter `{key}` must be finite, got {v}");
            }
            values.retain(|(k, _)| *k != key); // last duplicate wins, as in PyYAML
            values.push((key, v));
        }
        let get = |k: &str| values.iter().find(|(key, _)| key == k).map(|(_, v)| *v);
        let missing: Vec<&str> = REQUIRED_KEYS.iter().copied().filter(|k| get(k).is_none()).collect();
        if !missing.is_empty() {
            bail!("hyperparameter yaml is missing required key(s): {} (upstream hyp.scratch-high.yaml has them all)", missing.join(", "));
        }
        let req = |k: &str| get(k).expect("checked above");
        Ok(Hyp {
            lr0: get("lr0"),
            lrf: get("lrf"),
            momentum: get("momentum"),
            weight_decay: get("weight_decay"),
            warmup_epochs: get("warmup_epochs"),
            warmup_momentum: get("warmup_momentum"),
            warmup_bias_lr: get("warmup_bias_lr"),
            box_gain: get("box"),
            cls: get("cls"),
            cls_pw: get("cls_pw"),
            obj: get("obj"),
            obj_pw: get("obj_pw"),
            dfl: get("dfl"),
            iou_t: get("iou_t"),
            anchor_t: get("anchor_t"),
            fl_gamma: get("fl_gamma"),
            hsv_h: req("hsv_h"),
            hsv_s: req("hsv_s"),
            hsv_v: req("hsv_v"),
            degrees: req("degrees"),
            translate: req("translate"),
            scale: req("scale"),
            shear: req("shear"),
            perspective: req("perspective"),
            flipud: req("flipud"),
            fliplr: req("fliplr"),
            mosaic: req("mosaic"),
            mixup: req("mixup"),
            copy_paste: req("copy_paste"),
        })
    }
}

impl Default for Hyp {
    /// Same as [`Hyp::scratch_high`].
    fn default() -> Self {
        Hyp::scratch_high()
    }
}

fn yaml_number(v: &serde_yaml::Value) -> Option<f64> {
    match v {
        serde_yaml::Value::Number(n) => n.as_f64(),
        serde_yaml::Value::Tagged(t) => yaml_number(&t.value),
        _ => None,
    }
}

/// A mapping read entry by entry, so that repeated keys are not an error
/// (serde_yaml's own `Mapping` rejects them; PyYAML keeps the last).
struct Entries(Vec<(String, serde_yaml::Value)>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Entries;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping of hyperparameter names to numbers")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> std::result::Result<Entries, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry::<serde_yaml::Value, serde_yaml::Value>()? {
                    let key = match k {
                        serde_yaml::Value::String(s) => s,
                        other => serde_yaml::to_string(&other).map(|s| s.trim().to_string()).unwrap_or_default(),
                    };
                    out.push((key, v));
                }
                Ok(Entries(out))
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UPSTREAM: &str = "lr0: 0.01  # initial learning rate (SGD=1E-2, Adam=1E-3)
lrf: 0.01
momentum: 0.937
weight_decay: 0.0005
warmup_epochs: 3.0
warmup_momentum: 0.8
warmup_bias_lr: 0.1
box: 7.5
cls: 0.5
cls_pw: 1.0
obj: 0.7
obj_pw: 1.0
dfl: 1.5
iou_t: 0.20
anchor_t: 5.0
# anchors: 3
fl_gamma: 0.0
hsv_h: 0.015
hsv_s: 0.7
hsv_v: 0.4
degrees: 0.0
translate: 0.1
scale: 0.9
shear: 0.0
perspective: 0.0
flipud: 0.0
fliplr: 0.5
mosaic: 1.0
mixup: 0.15
copy_paste: 0.3
";

    #[test]
    fn parses_upstream_scratch_high() {
        let h = Hyp::from_yaml_str(UPSTREAM).unwrap();
        assert_eq!(h, Hyp::scratch_high());
    }

    #[test]
    fn config_file_matches_builtin() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/hyp.scratch-high.yaml");
        if p.exists() {
            assert_eq!(Hyp::load(&p).unwrap(), Hyp::scratch_high());
        }
    }

    #[test]
    fn duplicate_key_last_wins_and_unknown_ignored() {
        let text = format!("{UPSTREAM}dfl: 0.7\nsomething_new: [1, 2]\nlabel_smoothing: 0.1\n");
        let h = Hyp::from_yaml_str(&text).unwrap();
        assert_eq!(h.dfl, Some(0.7));
    }

    #[test]
    fn integers_are_numbers_and_optional_keys_may_be_absent() {
        let text = "hsv_h: 0\nhsv_s: 0\nhsv_v: 0\ndegrees: 10\ntranslate: 0\nscale: 0\nshear: 0\n\
                    perspective: 0\nflipud: 0\nfliplr: 1\nmosaic: 1\nmixup: 0\ncopy_paste: 0\n";
        let h = Hyp::from_yaml_str(text).unwrap();
        assert_eq!(h.degrees, 10.0);
        assert_eq!(h.fliplr, 1.0);
        assert_eq!(h.lr0, None);
    }

    #[test]
    fn missing_keys_are_named() {
        let text = UPSTREAM.replace("mixup: 0.15\n", "").replace("hsv_v: 0.4\n", "");
        let err = format!("{:#}", Hyp::from_yaml_str(&text).unwrap_err());
        assert!(err.contains("hsv_v") && err.contains("mixup"), "{err}");
    }

    #[test]
    fn non_numbers_and_non_maps_are_errors() {
        let text = UPSTREAM.replace("scale: 0.9", "scale: big");
        let err = format!("{:#}", Hyp::from_yaml_str(&text).unwrap_err());
        assert!(err.contains("scale"), "{err}");
        assert!(Hyp::from_yaml_str("- 1\n- 2\n").is_err());
        assert!(Hyp::from_yaml_str("").is_err());
    }
}
