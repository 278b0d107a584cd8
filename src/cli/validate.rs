//! Flag rules shared by the commands, each failure one line naming the flag and value.
//! The rules are the ones upstream's tools imply: `check_img_size` (utils/general.py)
//! wants a multiple of the model's largest stride; counts of batches, images and
//! iterations are at least 1; learning rates, thresholds and limits are finite.

use crate::detector::Detector;
use anyhow::{bail, Result};

/// Largest `--imgsz` accepted: 4096 px already needs ~13 GB of activations per image
/// in gelan-c's fp32 forward; beyond it every run is an allocation failure.
pub const MAX_IMGSZ: usize = 4096;

/// Largest `--workers`: more loader threads than this only cost memory.
pub const MAX_WORKERS: usize = 256;

/// The model's largest stride (32 for every upstream detect yaml).
pub fn max_stride(model: &Detector) -> usize {
    model.graph.strides.iter().copied().fold(1.0, f64::max) as usize
}

/// `--imgsz`: a positive multiple of `stride`, at most [`MAX_IMGSZ`].
pub fn imgsz(flag: &str, v: usize, stride: usize) -> Result<usize> {
    let stride = stride.max(1);
    if v == 0 || !v.is_multiple_of(stride) || v > MAX_IMGSZ {
        let near = (v.div_ceil(stride) * stride).clamp(stride, MAX_IMGSZ / stride * stride);
        bail!("{flag} {v}: must be a positive multiple of the model's largest stride {stride}, at most {MAX_IMGSZ} (e.g. {near})");
    }
    Ok(v)
}

/// A count where 0 is meaningless (batches, images, iterations, epochs).
pub fn count(flag: &str, v: usize) -> Result<usize> {
    if v == 0 {
        bail!("{flag} 0: must be at least 1");
    }
    Ok(v)
}

/// A finite number > 0 (learning rates and their scales, amax).
pub fn positive(flag: &str, v: f64) -> Result<f64> {
    if !(v.is_finite() && v > 0.0) {
        bail!("{flag} {v}: must be a finite number > 0");
    }
    Ok(v)
}

/// A threshold in [0, 1] (confidence, IoU).
pub fn unit(flag: &str, v: f64) -> Result<f64> {
    if !(0.0..=1.0).contains(&v) {
        bail!("{flag} {v}: must be between 0 and 1");
    }
    Ok(v)
}

/// `--workers`: 1 to [`MAX_WORKERS`] loader threads.
pub fn workers(v: usize) -> Result<usize> {
    if v == 0 || v > MAX_WORKERS {
        bail!("--workers {v}: must be between 1 and {MAX_WORKERS}");
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imgsz_rules() {
        for bad in [0, 1, 2, 33, 48, 100_000] {
            let e = imgsz("--imgsz", bad, 32).unwrap_err().to_string();
            assert!(e.starts_with(&format!("--imgsz {bad}: must be a positive multiple")), "{e}");
            assert_eq!(e.lines().count(), 1);
        }
        assert!(imgsz("--imgsz", 33, 32).unwrap_err().to_string().ends_with("(e.g. 64)"));
        assert!(imgsz("--imgsz", 100_000, 32).unwrap_err().to_string().ends_with("(e.g. 4096)"));
        for good in [32, 160, 640, 4096] {
            assert_eq!(imgsz("--imgsz", good, 32).unwrap(), good);
        }
        assert!(imgsz("--imgsz", 64, 64).is_ok() && imgsz("--imgsz", 96, 64).is_err());
    }

    #[test]
    fn numbers_and_counts() {
        for bad in [f64::NAN, f64::INFINITY, 0.0, -1.0] {
            assert!(positive("--lr-scale", bad).unwrap_err().to_string().starts_with("--lr-scale "));
        }
        assert_eq!(positive("--lr-scale", 10.0).unwrap(), 10.0);
        assert_eq!(count("--calib-batches", 0).unwrap_err().to_string(), "--calib-batches 0: must be at least 1");
        assert!(unit("--iou-thres", f64::NAN).is_err() && unit("--iou-thres", 1.5).is_err() && unit("--iou-thres", 0.7).is_ok());
        assert!(workers(100_000).is_err() && workers(0).is_err() && workers(8).is_ok());
    }
}
