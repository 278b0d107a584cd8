//! Files that must not outlive the process: temporary outputs and run locks.
//! Their owners remove them on drop; an interrupt (Ctrl-C) exits without
//! running drops, so the handler of [`remove_on_interrupt`] removes what is still listed.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

static LIVE: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn live() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    // A panic while the list was held leaves it usable: it is only a list of paths.
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Lists `path` for removal at an interrupt.
pub fn register(path: &Path) {
    live().push(path.to_path_buf());
}

/// Takes `path` off the list (its owner removed or kept it).
pub fn unregister(path: &Path) {
    let mut l = live();
    if let Some(i) = l.iter().position(|p| p == path) {
        l.swap_remove(i);
    }
}

/// Removes every listed file now; returns how many were there.
pub fn remove_all() -> usize {
    let paths: Vec<PathBuf> = std::mem::take(&mut *live());
    paths.iter().filter(|p| std::fs::remove_file(p).is_ok()).count()
}

/// Ctrl-C (SIGINT): remove the listed files, say so, exit 130 (the shell's code for SIGINT).
/// Commands that stop gracefully on their own (quantize) install their own handler instead
/// and may call [`remove_all`] from it.
pub fn remove_on_interrupt() {
    let _ = ctrlc::set_handler(|| {
        remove_all();
        eprintln!("error: interrupted");
        std::process::exit(130);
    });
}

/// Whether `path` is listed (for tests).
pub fn is_listed(path: &Path) -> bool {
    live().iter().any(|p| p == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_and_unregister_track_a_path() {
        let p = Path::new("/nonexistent/yolo-qat-cleanup-test.tmp");
        register(p);
        assert!(is_listed(p));
        unregister(p);
        assert!(!is_listed(p));
    }
}
