//! The optimizer's side of a QAT run between epochs, for `quantize --resume`: master
//! weights, Adam's moments, the loss scale, learned ranges and the weight average after
//! the last finished epoch, in one safetensors file tagged with that epoch.

use super::qat::Qat;
use anyhow::{anyhow, Result};
use std::path::Path;
use tch::{Device, Tensor};

/// The file's name in a run's `weights/` folder.
pub const FILE_NAME: &str = "last_optimizer.safetensors";

/// Writes `qat`'s optimizer state after `epoch` (atomically).
pub fn save(path: &Path, epoch: usize, qat: &Qat) -> Result<()> {
    let mut tensors: Vec<(String, Tensor)> = qat.optimizer_state().into_iter().map(|(n, t)| (n, t.to_device(Device::Cpu))).collect();
    tensors.push(("epoch".into(), Tensor::from(epoch as i64)));
    tensors.push(("ema.updates".into(), Tensor::from(qat.ema_updates().unwrap_or(0) as i64)));
    crate::util::write_safetensors_atomic(path, &tensors)
}

/// Restores the state saved after `epoch` into `qat`; `Ok(false)` when the file is missing
/// or belongs to another epoch (Adam then starts afresh).
pub fn restore(qat: &mut Qat, path: &Path, epoch: usize) -> Result<bool> {
    let Some(saved) = read(path, epoch) else { return Ok(false) };
    let updates = saved.iter().find(|(n, _)| n == "ema.updates").map_or(0, |(_, t)| t.int64_value(&[]) as u64);
    qat.load_optimizer_state(&saved, updates).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    Ok(true)
}

/// The saved state if it belongs to `epoch`.
fn read(path: &Path, epoch: usize) -> Option<Vec<(String, Tensor)>> {
    let tensors = Tensor::read_safetensors(path).ok()?;
    let saved_epoch = tensors.iter().find(|(n, _)| n == "epoch")?.1.int64_value(&[]);
    (saved_epoch == epoch as i64).then_some(tensors)
}
