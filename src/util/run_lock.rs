//! One run per folder: a lock file holding the owner's pid. The lock is the kernel's
//! (`flock` through `File::try_lock`), so it dies with its process even on SIGKILL; the
//! pid in the file only names the holder in the refusal message.

use super::cleanup;
use anyhow::{anyhow, bail, Result};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The lock file's name inside a run folder.
pub const LOCK_NAME: &str = ".yolo-qat.lock";

/// Held for as long as the value lives; removing the file and releasing the lock on drop.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
    file: File,
}

impl RunLock {
    /// Takes the lock of run folder `dir`, or says which process holds it.
    pub fn acquire(dir: &Path) -> Result<RunLock> {
        let path = dir.join(LOCK_NAME);
        // A holder that finishes unlinks the file while we wait on the old inode:
        // then our lock guards nothing and we start over on the new file.
        for _ in 0..16 {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|e| anyhow!("{}: cannot open the run lock: {e}", path.display()))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => bail!(
                    "{}: in use by process {} (lock file {}); wait for it to finish or choose another --name",
                    dir.display(),
                    holder(&mut file),
                    path.display()
                ),
                Err(TryLockError::Error(e)) => bail!("{}: cannot lock: {e}", path.display()),
            }
            if !same_file(&file, &path) {
                continue;
            }
            file.set_len(0)
                .and_then(|_| file.rewind())
                .and_then(|_| writeln!(file, "{}", std::process::id()))
                .map_err(|e| anyhow!("{}: cannot write the run lock: {e}", path.display()))?;
            cleanup::register(&path);
            return Ok(RunLock { path, file });
        }
        bail!("{}: the run lock keeps changing hands; try again", path.display())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The pid written in a lock file, or "unknown" (a holder that has not written it yet).
fn holder(file: &mut File) -> String {
    let mut s = String::new();
    let _ = file.take(64).read_to_string(&mut s);
    s.trim().parse::<u32>().map_or("unknown".into(), |p| p.to_string())
}

fn same_file(file: &File, path: &Path) -> bool {
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Unlink while still locked, so a waiter sees a fresh file (see `acquire`).
        if same_file(&self.file, &self.path) {
            let _ = std::fs::remove_file(&self.path);
        }
        cleanup::unregister(&self.path);
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_names_the_holder_and_the_lock_is_free_after_drop() {
        let d = tempfile::tempdir().unwrap();
        let lock = RunLock::acquire(d.path()).unwrap();
        let pid = std::fs::read_to_string(lock.path()).unwrap();
        assert_eq!(pid.trim(), std::process::id().to_string());
        // flock locks belong to the open file description, so a second open in this
        // process conflicts just as another process would.
        let e = RunLock::acquire(d.path()).unwrap_err().to_string();
        assert!(e.contains(&format!("in use by process {}", std::process::id())), "{e}");
        drop(lock);
        assert!(!d.path().join(LOCK_NAME).exists());
        let again = RunLock::acquire(d.path()).unwrap();
        drop(again);
    }

    #[test]
    fn a_stale_lock_file_of_a_dead_process_is_taken_over() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(LOCK_NAME), "999999999\n").unwrap();
        let lock = RunLock::acquire(d.path()).unwrap();
        assert_eq!(std::fs::read_to_string(lock.path()).unwrap().trim(), std::process::id().to_string());
    }
}
