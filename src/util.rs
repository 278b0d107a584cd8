//! Small helpers shared across the pipeline.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// Writes `bytes` to a temporary file beside `path`, then renames it over `path`,
/// so that a crash never leaves a half-written output.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("{}.tmp", path.extension().and_then(|e| e.to_str()).unwrap_or("out")));
    write_via_temp(path, &tmp, |t| Ok(std::fs::write(t, bytes)?))
}

/// `write(tmp)`, then `tmp` renamed over `path` (its folder created first).
fn write_via_temp(path: &Path, tmp: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create folder", dir.display()))?;
    }
    write(tmp).with_context(|| format!("{}: cannot write", tmp.display()))?;
    std::fs::rename(tmp, path).with_context(|| format!("{}: cannot rename into place", path.display()))?;
    Ok(())
}

/// Upstream's `increment_path`: `runs/x/exp`, then `exp2`, `exp3`… unless `exist_ok`.
pub fn increment_dir(project: &Path, name: &str, exist_ok: bool) -> Result<PathBuf> {
    let base = project.join(name);
    let dir = if exist_ok || !base.exists() { base } else { (2..).map(|n| project.join(format!("{name}{n}"))).find(|p| !p.exists()).expect("unbounded") };
    std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create folder", dir.display()))?;
    Ok(dir)
}

/// `Tensor::write_safetensors` through a temporary file and a rename (see `write_atomic`).
pub fn write_safetensors_atomic(path: &Path, tensors: &[(String, tch::Tensor)]) -> Result<()> {
    write_via_temp(path, &path.with_extension("safetensors.tmp"), |t| Ok(tch::Tensor::write_safetensors(tensors, t)?))
}

/// The message of a libtorch error out of tch's panic text, which wraps it (and a C++
/// backtrace, with escaped newlines) as `...Torch("MESSAGE\nbacktrace...")`.
pub fn torch_error_line(panic: &str) -> String {
    let inner = panic.split_once("Torch(\"").map_or(panic, |(_, rest)| rest);
    let line = inner.split("\\n").next().unwrap_or(inner).lines().next().unwrap_or("unknown");
    line.chars().take(300).collect()
}

/// The first line of an error message that a C++ shim (`src/cuda/graph.cpp`,
/// `src/quant/train_fake_quant.cpp`) returned through its `char** err`, freed here.
///
/// # Safety
/// `err` is null or a NUL-terminated string from `strdup`, not used afterwards.
pub unsafe fn take_c_message(err: *mut std::ffi::c_char) -> Option<String> {
    extern "C" {
        fn free(p: *mut std::ffi::c_void);
    }
    if err.is_null() {
        return None;
    }
    let msg = std::ffi::CStr::from_ptr(err).to_string_lossy().lines().next().unwrap_or("").to_string();
    free(err.cast());
    Some(msg)
}

thread_local! {
    /// Set while a panic will be turned into an error by the caller (the hook stays quiet).
    pub static PANIC_IS_HANDLED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f`, turning libtorch's CUDA out-of-memory panic into an error that says what to do.
pub fn catch_oom<T>(f: impl FnOnce() -> T) -> anyhow::Result<T> {
    PANIC_IS_HANDLED.with(|h| h.set(true));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    PANIC_IS_HANDLED.with(|h| h.set(false));
    r.map_err(|p| {
        let msg = p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
        if msg.contains("out of memory") {
            anyhow::anyhow!("CUDA out of memory: try a smaller --batch-size")
        } else {
            anyhow::anyhow!("libtorch error: {}", torch_error_line(&msg))
        }
    })
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
