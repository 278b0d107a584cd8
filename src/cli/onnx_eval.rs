//! `eval --weights model.onnx`: the deployed row, through ONNX Runtime.

use crate::data::val_set::ValSet;
use crate::eval::validate::{EvalOptions, EvalResult};
use anyhow::{bail, Result};
use std::path::Path;

pub fn evaluate_onnx(path: &Path, _set: &ValSet, _opts: &EvalOptions, _names: &[String]) -> Result<EvalResult> {
    bail!("{}: evaluating ONNX models needs the export module (not built yet)", path.display())
}
