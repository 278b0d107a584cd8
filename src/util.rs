//! Small helpers shared across the pipeline.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// Writes `bytes` to a temporary file beside `path`, then renames it over `path`,
/// so that a crash never leaves a half-written output.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create folder", dir.display()))?;
    }
    let tmp = path.with_extension(format!("{}.tmp", path.extension().and_then(|e| e.to_str()).unwrap_or("out")));
    std::fs::write(&tmp, bytes).with_context(|| format!("{}: cannot write", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("{}: cannot rename into place", path.display()))?;
    Ok(())
}

/// Upstream's `increment_path`: `runs/x/exp`, then `exp2`, `exp3`… unless `exist_ok`.
pub fn increment_dir(project: &Path, name: &str, exist_ok: bool) -> Result<PathBuf> {
    let base = project.join(name);
    let dir = if exist_ok || !base.exists() {
        base
    } else {
        (2..).map(|n| project.join(format!("{name}{n}"))).find(|p| !p.exists()).expect("unbounded")
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create folder", dir.display()))?;
    Ok(dir)
}

/// `Tensor::write_safetensors` through a temporary file and a rename (see `write_atomic`).
pub fn write_safetensors_atomic(path: &Path, tensors: &[(String, tch::Tensor)]) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create folder", dir.display()))?;
    }
    let tmp = path.with_extension("safetensors.tmp");
    tch::Tensor::write_safetensors(tensors, &tmp).with_context(|| format!("{}: cannot write", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("{}: cannot rename into place", path.display()))?;
    Ok(())
}

/// The message of a libtorch error out of tch's panic text, which wraps it (and a C++
/// backtrace, with escaped newlines) as `...Torch("MESSAGE\nbacktrace...")`.
pub fn torch_error_line(panic: &str) -> String {
    let inner = panic.split_once("Torch(\"").map_or(panic, |(_, rest)| rest);
    let line = inner.split("\\n").next().unwrap_or(inner).lines().next().unwrap_or("unknown");
    line.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torch_error_line_keeps_the_message_only() {
        let panic = r#"called `Result::unwrap()` on an `Err` value: Torch("CUDA error: operation not permitted\nSearch for x\nframe #0")"#;
        assert_eq!(torch_error_line(panic), "CUDA error: operation not permitted");
        assert_eq!(torch_error_line("plain message\nmore"), "plain message");
    }
}
