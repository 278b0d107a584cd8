//! Small helpers shared across the pipeline.

pub mod cleanup;
pub mod run_lock;
pub mod safe_write;

pub use run_lock::RunLock;
pub use safe_write::{check_output, write_atomic, write_safetensors_atomic};
pub use yolo_qat_readers::regular_file;

use anyhow::{anyhow, Context, Result};
use std::path::{Path, PathBuf};

/// Upstream's `increment_path`: `runs/x/exp`, then `exp2`, `exp3`… unless `exist_ok`.
/// A new folder is claimed with `create_dir`, which fails when it exists, so two runs
/// started at once never share one.
pub fn increment_dir(project: &Path, name: &str, exist_ok: bool) -> Result<PathBuf> {
    std::fs::create_dir_all(project).with_context(|| format!("{}: cannot create folder", project.display()))?;
    let base = project.join(name);
    if exist_ok {
        std::fs::create_dir_all(&base).with_context(|| format!("{}: cannot create folder", base.display()))?;
        return Ok(base);
    }
    for n in 1..100_000 {
        let dir = if n == 1 { base.clone() } else { project.join(format!("{name}{n}")) };
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(anyhow!("{}: cannot create folder: {e}", dir.display())),
        }
    }
    Err(anyhow!("{}: no free {name}N folder name; use --exist-ok or another --name", project.display()))
}

/// The message of a libtorch error out of tch's panic text, which wraps it (and a C++
/// backtrace, with escaped newlines) as `...Torch("MESSAGE\nbacktrace...")`.
pub fn torch_error_line(panic: &str) -> String {
    let inner = panic.split_once("Torch(\"").map_or(panic, |(_, rest)| rest);
    let line = inner.split("\\n").next().unwrap_or(inner).lines().next().unwrap_or("unknown");
    line.chars().take(300).collect()
}

/// The first line of an error message that a C++ shim (`src/native/cuda_graph.cpp`,
/// `src/native/train_fake_quant.cpp`, …) returned through its `char** err`, freed here.
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

    #[test]
    fn increment_dir_claims_a_fresh_folder() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(increment_dir(d.path(), "exp", false).unwrap(), d.path().join("exp"));
        assert_eq!(increment_dir(d.path(), "exp", false).unwrap(), d.path().join("exp2"));
        assert_eq!(increment_dir(d.path(), "exp", true).unwrap(), d.path().join("exp"));
    }
}
