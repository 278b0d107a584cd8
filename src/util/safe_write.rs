//! Writing outputs without destroying anything: the bytes go to a uniquely named
//! temporary file in the target's folder and are renamed over the target only when
//! complete. A symlink is written through (its target is replaced, the link kept);
//! anything that exists and is not a regular file (a folder, a device, a FIFO) is
//! refused, and so is an output that is one of the command's inputs.

use super::cleanup;
use anyhow::{anyhow, bail, Context, Result};
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// What a `--help` says about outputs.
pub const OUTPUT_POLICY: &str =
    "An existing regular file is replaced atomically; a symlink is written through; a folder, device or FIFO is refused, as is one of the inputs.";

/// The file a write to `path` replaces: `path` itself, or the file a symlink at `path`
/// points to. Errors when it exists and is not a regular file.
pub fn resolve_target(path: &Path) -> Result<PathBuf> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(path.to_path_buf()),
        Err(e) => return Err(anyhow!("{}: cannot inspect: {e}", path.display())),
    };
    let target = if meta.file_type().is_symlink() {
        std::fs::canonicalize(path)
            .map_err(|_| anyhow!("{}: a symlink to nothing (outputs are written through symlinks; its target must exist)", path.display()))?
    } else {
        path.to_path_buf()
    };
    let kind = std::fs::metadata(&target).map_err(|e| anyhow!("{}: cannot inspect: {e}", path.display()))?.file_type();
    if !kind.is_file() {
        bail!("{}: exists and is {}, not a regular file; refusing to replace it", path.display(), describe(kind));
    }
    Ok(target)
}

fn describe(t: std::fs::FileType) -> &'static str {
    if t.is_dir() {
        "a folder"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else {
        "a special file"
    }
}

/// Checks an output before any work: what [`resolve_target`] checks, and that it is
/// none of `inputs` (`(flag, path)`, e.g. `("--weights", w)`), symlinks and hard links included.
pub fn check_output(flag: &str, path: &Path, inputs: &[(&str, &Path)]) -> Result<()> {
    resolve_target(path).map_err(|e| anyhow!("{flag} {e:#}"))?;
    let Some(out_id) = file_id(path) else { return Ok(()) };
    for (in_flag, input) in inputs {
        if file_id(input) == Some(out_id) {
            bail!("{flag} {}: is the {in_flag} file; refusing to overwrite an input", path.display());
        }
    }
    Ok(())
}

/// (device, inode) of the file `path` names, symlinks followed.
fn file_id(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// A temporary file that is removed unless [`TempFile::persist`] renames it into place.
pub struct TempFile {
    path: PathBuf,
    kept: bool,
}

impl TempFile {
    /// A fresh name beside `target`: `.NAME.PID.N.tmp` (hidden, unique per process and call).
    pub fn beside(target: &Path) -> TempFile {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let name = target.file_name().map_or("out".into(), |n| n.to_string_lossy().into_owned());
        let tmp = format!(".{name}.{}.{}.tmp", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed));
        let path = target.with_file_name(tmp);
        cleanup::register(&path);
        TempFile { path, kept: false }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Renames the temporary file over `target`.
    pub fn persist(mut self, target: &Path) -> Result<()> {
        std::fs::rename(&self.path, target).with_context(|| format!("{}: cannot rename into place", target.display()))?;
        self.kept = true;
        cleanup::unregister(&self.path);
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.kept {
            let _ = std::fs::remove_file(&self.path);
            cleanup::unregister(&self.path);
        }
    }
}

/// `write(tmp)`, then `tmp` renamed over `path` (its folder created first); the
/// temporary file is removed on every error.
pub fn write_via_temp(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create folder", dir.display()))?;
    }
    let target = resolve_target(path)?;
    let tmp = TempFile::beside(&target);
    write(tmp.path()).with_context(|| format!("{}: cannot write", path.display()))?;
    tmp.persist(&target)
}

/// Writes `bytes` to `path` atomically (see the module doc), flushed to disk before the
/// rename so that a crash leaves the old file or the new one, never a torn one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_via_temp(path, |t| {
        let mut f = std::fs::File::create(t)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        Ok(())
    })
}

/// `Tensor::write_safetensors` through a temporary file and a rename (see `write_atomic`).
pub fn write_safetensors_atomic(path: &Path, tensors: &[(String, tch::Tensor)]) -> Result<()> {
    write_via_temp(path, |t| Ok(tch::Tensor::write_safetensors(tensors, t)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leftovers(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).filter(|n| n.ends_with(".tmp")).collect()
    }

    #[test]
    fn write_atomic_replaces_a_file_and_leaves_no_temp() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("r.json");
        std::fs::write(&p, b"old").unwrap();
        write_atomic(&p, b"new").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        assert!(leftovers(d.path()).is_empty());
    }

    #[test]
    fn a_symlink_is_written_through() {
        let d = tempfile::tempdir().unwrap();
        let (real, link) = (d.path().join("real.onnx"), d.path().join("link.onnx"));
        std::fs::write(&real, b"old").unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        write_atomic(&link, b"new").unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read(&real).unwrap(), b"new");
    }

    #[test]
    fn a_folder_or_fifo_is_refused_and_kept() {
        let d = tempfile::tempdir().unwrap();
        let sub = d.path().join("out.json");
        std::fs::create_dir(&sub).unwrap();
        let e = write_atomic(&sub, b"x").unwrap_err().to_string();
        assert!(e.contains("is a folder, not a regular file"), "{e}");
        assert!(sub.is_dir());
        let fifo = d.path().join("fifo.onnx");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let e = write_atomic(&fifo, b"x").unwrap_err().to_string();
        assert!(e.contains("is a FIFO"), "{e}");
        assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
        assert!(leftovers(d.path()).is_empty());
    }

    #[test]
    fn a_dangling_symlink_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let link = d.path().join("x.onnx");
        std::os::unix::fs::symlink(d.path().join("missing"), &link).unwrap();
        let e = write_atomic(&link, b"x").unwrap_err().to_string();
        assert!(e.contains("a symlink to nothing"), "{e}");
    }

    #[test]
    fn a_failed_write_removes_its_temp() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("w.safetensors");
        let e = write_via_temp(&p, |t| {
            std::fs::write(t, b"half")?;
            bail!("disk full")
        });
        assert!(e.is_err());
        assert!(leftovers(d.path()).is_empty() && !p.exists());
    }

    #[test]
    fn an_output_that_is_an_input_is_refused_through_links() {
        let d = tempfile::tempdir().unwrap();
        let w = d.path().join("q.safetensors");
        std::fs::write(&w, b"model").unwrap();
        let hard = d.path().join("hard.safetensors");
        std::fs::hard_link(&w, &hard).unwrap();
        for out in [&w, &hard] {
            let e = check_output("--output", out, &[("--weights", &w)]).unwrap_err().to_string();
            assert!(e.contains("is the --weights file"), "{e}");
        }
        assert!(check_output("--output", &d.path().join("new.onnx"), &[("--weights", &w)]).is_ok());
        assert_eq!(std::fs::read(&w).unwrap(), b"model");
    }

    #[test]
    fn temp_names_are_unique() {
        let t = Path::new("/x/y.json");
        let (a, b) = (TempFile::beside(t), TempFile::beside(t));
        assert_ne!(a.path(), b.path());
        assert!(a.path().file_name().unwrap().to_string_lossy().starts_with(".y.json."));
    }
}
