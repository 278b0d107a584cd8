//! Every picture of an evaluation, as val.py writes them into its run folder.

use super::{confusion, curves, mosaic};
use crate::eval::validate::EvalResult;
use anyhow::Result;
use std::path::{Path, PathBuf};

/// Writes the curves, the confusion matrix and the batch mosaics that `r` carries into
/// `dir`; returns the files written. Curves need at least one correct detection (upstream
/// skips the metrics otherwise).
pub fn write(dir: &Path, r: &EvalResult, names: &[String]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    if !r.curves.px.is_empty() {
        curves::write_all(dir, &r.curves)?;
        files.extend(["PR_curve.png", "F1_curve.png", "P_curve.png", "R_curve.png"].map(|f| dir.join(f)));
    }
    if let Some(cm) = &r.confusion {
        let path = dir.join("confusion_matrix.png");
        confusion::write(&path, cm, names)?;
        files.push(path);
    }
    for (i, batch) in r.samples.iter().enumerate().filter(|(_, b)| !b.is_empty()) {
        for (suffix, show) in [("labels", mosaic::Show::Labels), ("pred", mosaic::Show::Predictions)] {
            let path = dir.join(format!("val_batch{i}_{suffix}.jpg"));
            mosaic::write(&path, batch, names, show)?;
            files.push(path);
        }
    }
    Ok(files)
}
