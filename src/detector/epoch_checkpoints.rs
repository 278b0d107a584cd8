//! The QAT epoch checkpoints a run may resume from: `weights/qat_ep_E_*.safetensors`
//! files that are complete (the safetensors header accounts for every byte) and
//! belong to this run (`info.run_id` and `info.epoch` in the yolo-qat metadata).
//! Leftover temporary files (`*.tmp`, from a kill during a write) are deleted.

use anyhow::{anyhow, Result};
use std::io::Read;
use std::path::{Path, PathBuf};

/// The `info` key that ties a checkpoint to its run.
pub const RUN_ID_KEY: &str = "run_id";

/// A fresh run identity: time in nanoseconds, pid and a counter, unique on one machine.
pub fn new_run_id() -> String {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{nanos:x}-{}-{}", std::process::id(), SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

#[derive(Clone, Debug, PartialEq)]
pub struct EpochCheckpoint {
    pub epoch: usize,
    pub path: PathBuf,
}

/// What [`scan`] found in a weights folder.
#[derive(Debug, Default)]
pub struct RunCheckpoints {
    /// Valid checkpoints of the run, by epoch (one per epoch, the last name in order when several).
    pub epochs: Vec<EpochCheckpoint>,
    /// `PATH: why` for each `qat_ep_*` file not used.
    pub skipped: Vec<String>,
    /// Temporary files deleted.
    pub removed_tmp: Vec<PathBuf>,
}

impl RunCheckpoints {
    /// The checkpoint of the last finished epoch.
    pub fn last(&self) -> Option<&EpochCheckpoint> {
        self.epochs.last()
    }
}

/// Lists the complete epoch checkpoints of run `run_id` in `weights` (a missing folder
/// has none) and deletes `*.tmp` files there. Call it with the run's lock held.
pub fn scan(weights: &Path, run_id: &str) -> Result<RunCheckpoints> {
    let mut out = RunCheckpoints::default();
    let entries = match std::fs::read_dir(weights) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(anyhow!("{}: cannot list: {e}", weights.display())),
    };
    let mut names: Vec<(String, PathBuf)> = entries.filter_map(|e| e.ok()).map(|e| (e.file_name().to_string_lossy().into_owned(), e.path())).collect();
    names.sort();
    for (name, path) in names {
        let regular = std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file());
        if name.ends_with(".tmp") {
            if regular && std::fs::remove_file(&path).is_ok() {
                out.removed_tmp.push(path);
            }
            continue;
        }
        let Some(epoch) = epoch_of(&name) else { continue };
        if !regular {
            out.skipped.push(format!("{}: not a regular file", path.display()));
            continue;
        }
        match check(&path, run_id, epoch) {
            Ok(()) => {
                out.epochs.retain(|e| e.epoch != epoch);
                out.epochs.push(EpochCheckpoint { epoch, path });
            }
            Err(why) => out.skipped.push(format!("{}: {why}", path.display())),
        }
    }
    out.epochs.sort_by_key(|e| e.epoch);
    Ok(out)
}

/// `qat_ep_E_….safetensors` → E.
pub fn epoch_of(name: &str) -> Option<usize> {
    name.strip_suffix(".safetensors")?.strip_prefix("qat_ep_")?.split('_').next()?.parse().ok()
}

/// Largest safetensors header read (the metadata holds the model yaml and quantizer table).
const MAX_HEADER: u64 = 64 << 20;

/// Complete, and written by this run for this epoch.
fn check(path: &Path, run_id: &str, epoch: usize) -> Result<(), String> {
    let mut f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let len = f.metadata().map_err(|e| e.to_string())?.len();
    let mut n = [0u8; 8];
    f.read_exact(&mut n).map_err(|_| "truncated (no safetensors header)".to_string())?;
    let n = u64::from_le_bytes(n);
    if n > MAX_HEADER || 8 + n > len {
        return Err("truncated or not a safetensors file (header length)".into());
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header).map_err(|_| "truncated header".to_string())?;
    let header: serde_json::Value = serde_json::from_slice(&header).map_err(|_| "corrupt safetensors header".to_string())?;
    let end =
        header.as_object().into_iter().flatten().filter(|(k, _)| *k != "__metadata__").filter_map(|(_, t)| t["data_offsets"][1].as_u64()).max().unwrap_or(0);
    if 8 + n + end != len {
        return Err(format!("incomplete: {len} bytes, the header describes {}", 8 + n + end));
    }
    let meta: serde_json::Value =
        header["__metadata__"]["yolo-qat"].as_str().and_then(|s| serde_json::from_str(s).ok()).ok_or_else(|| "no yolo-qat metadata".to_string())?;
    let info = &meta["info"];
    if info[RUN_ID_KEY].as_str() != Some(run_id) {
        return Err(format!("from another run ({} {}, this run {run_id})", RUN_ID_KEY, info[RUN_ID_KEY]));
    }
    if info["epoch"].as_u64() != Some(epoch as u64) {
        return Err(format!("its metadata says epoch {}, its name {epoch}", info["epoch"]));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A minimal safetensors file with one f32 tensor of `n` values and yolo-qat metadata.
    fn safetensors(info: serde_json::Value, n: usize) -> Vec<u8> {
        let meta = serde_json::json!({ "format": "yolo-qat", "version": 1, "yaml": "", "names": [], "fused": true, "info": info });
        let mut md = HashMap::new();
        md.insert("yolo-qat".to_string(), meta.to_string());
        let data: Vec<u8> = vec![0u8; 4 * n];
        let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![n], &data).unwrap();
        safetensors::serialize([("w", view)], &Some(md)).unwrap()
    }

    #[test]
    fn only_complete_checkpoints_of_this_run_count_and_temps_go() {
        let d = tempfile::tempdir().unwrap();
        let w = d.path();
        let put = |name: &str, bytes: &[u8]| std::fs::write(w.join(name), bytes).unwrap();
        put("qat_ep_0_ap_0.5000_m.safetensors", &safetensors(serde_json::json!({ "run_id": "A", "epoch": 0 }), 4));
        put("qat_ep_1_ap_0.5100_m.safetensors", &safetensors(serde_json::json!({ "run_id": "A", "epoch": 1 }), 4));
        // killed mid-write: epoch 2 cut short, its temp left behind
        let full = safetensors(serde_json::json!({ "run_id": "A", "epoch": 2 }), 4);
        put("qat_ep_2_ap_0.5200_m.safetensors", &full[..full.len() - 3]);
        put(".qat_ep_3_ap_0.5300_m.safetensors.123.0.tmp", &full);
        put("qat_ep_3_ap_0.5300_m.safetensors.tmp", &full);
        // an older run in the same folder (--exist-ok)
        put("qat_ep_4_ap_0.6000_m.safetensors", &safetensors(serde_json::json!({ "run_id": "B", "epoch": 4 }), 4));
        // renamed by hand
        put("qat_ep_5_ap_0.6000_m.safetensors", &safetensors(serde_json::json!({ "run_id": "A", "epoch": 1 }), 4));
        put("qat_best_m.safetensors", &safetensors(serde_json::json!({ "run_id": "A", "epoch": 1 }), 4));
        let r = scan(w, "A").unwrap();
        assert_eq!(r.epochs.iter().map(|e| e.epoch).collect::<Vec<_>>(), vec![0, 1]);
        assert_eq!(r.last().unwrap().path, w.join("qat_ep_1_ap_0.5100_m.safetensors"));
        assert_eq!(r.removed_tmp.len(), 2);
        assert_eq!(r.skipped.len(), 3, "{:?}", r.skipped);
        assert!(r.skipped.iter().any(|s| s.contains("qat_ep_2") && s.contains("incomplete")), "{:?}", r.skipped);
        assert!(r.skipped.iter().any(|s| s.contains("qat_ep_4") && s.contains("another run")), "{:?}", r.skipped);
        assert!(r.skipped.iter().any(|s| s.contains("qat_ep_5") && s.contains("says epoch 1")), "{:?}", r.skipped);
        assert!(!w.join("qat_ep_3_ap_0.5300_m.safetensors.tmp").exists());
    }

    #[test]
    fn a_missing_folder_has_no_checkpoints() {
        let r = scan(Path::new("/nonexistent/weights"), "A").unwrap();
        assert!(r.epochs.is_empty());
    }

    #[test]
    fn run_ids_differ() {
        assert_ne!(new_run_id(), new_run_id());
    }
}
