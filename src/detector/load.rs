//! Opens any checkpoint yolo-qat reads: an upstream `.pt` (zip + pickle) or
//! yolo-qat's own safetensors, and builds the fused model from it.

use super::native;
use super::Detector;
use crate::checkpoint::{read_upstream, DType, RawTensor, UpstreamModel};
use crate::model::parse::build;
use crate::model::weights::{RandomWeights, StateDict};
use crate::model::ModelConfig;
use crate::quant::state::from_meta;
use anyhow::{anyhow, bail, Context, Result};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use tch::{Kind, Tensor};

/// A checkpoint's contents before the model is built.
pub struct Checkpoint {
    pub cfg: ModelConfig,
    pub names: Vec<String>,
    pub state: StateDict,
    pub quant: Option<crate::quant::state::QuantMeta>,
}

pub fn read_checkpoint(path: &Path) -> Result<Checkpoint> {
    let mut head = [0u8; 16];
    let n = std::fs::File::open(path).and_then(|mut f| f.read(&mut head)).with_context(|| format!("{}: cannot open", path.display()))?;
    if n == 0 {
        bail!("{}: empty file", path.display());
    }
    if head.starts_with(b"PK") {
        let up = read_upstream(path).map_err(|e| anyhow!("{e}"))?;
        from_upstream(up).map_err(|e| anyhow!("{}: {e}", path.display()))
    } else if native::looks_like_safetensors(&head[..n]) {
        let (meta, tensors) = native::read(path)?;
        let raw: serde_yaml::Value = serde_yaml::from_str(&meta.yaml).map_err(|e| anyhow!("{}: bad model yaml in metadata: {e}", path.display()))?;
        let cfg = ModelConfig::from_value(raw).map_err(|e| anyhow!("{}: {e}", path.display()))?;
        Ok(Checkpoint { cfg, names: meta.names, state: StateDict::new(tensors, BTreeMap::new()), quant: meta.quant })
    } else {
        bail!("{}: neither a PyTorch checkpoint (zip) nor a yolo-qat safetensors file", path.display())
    }
}

fn from_upstream(up: UpstreamModel) -> Result<Checkpoint> {
    let cfg = ModelConfig::from_value(up.yaml)?;
    let mut names = up.names;
    if names.is_empty() {
        names = (0..cfg.nc).map(|i| format!("class{i}")).collect();
    }
    let tensors = up.tensors.into_iter().map(|(k, t)| Ok((k.clone(), to_tensor(&t).with_context(|| format!("tensor {k}"))?))).collect::<Result<_>>()?;
    Ok(Checkpoint { cfg, names, state: StateDict::new(tensors, up.bn_eps), quant: None })
}

pub fn to_tensor(t: &RawTensor) -> Result<Tensor> {
    let kind = match t.dtype {
        DType::F16 => Kind::Half,
        DType::BF16 => Kind::BFloat16,
        DType::F32 => Kind::Float,
        DType::F64 => Kind::Double,
        DType::I64 => Kind::Int64,
        DType::I32 => Kind::Int,
        DType::I16 => Kind::Int16,
        DType::I8 => Kind::Int8,
        DType::U8 => Kind::Uint8,
        DType::Bool => Kind::Bool,
    };
    let shape: Vec<i64> = t.shape.iter().map(|&d| d as i64).collect();
    let x = Tensor::f_from_data_size(&t.data, &shape, kind)?;
    Ok(if x.is_floating_point() { x.to_kind(Kind::Float) } else { x })
}

/// Loads a checkpoint and builds its fused model (on the CPU, fp32).
pub fn load(path: &Path) -> Result<Detector> {
    let mut ck = read_checkpoint(path)?;
    let mut graph = build(&ck.cfg, &mut ck.state).map_err(|e| anyhow!("{}: {e:#}", path.display()))?;
    let unused = ck.state.unused();
    if !unused.is_empty() && !unused.iter().all(|k| k.starts_with("quant.")) {
        let shown: Vec<_> = unused.iter().filter(|k| !k.starts_with("quant.")).take(3).collect();
        bail!("{}: tensors the model layout does not use, e.g. {shown:?} (does the yaml match the weights?)", path.display());
    }
    let quant = match &ck.quant {
        Some(meta) => Some(from_meta(&mut graph, meta, &ck.state.tensors).map_err(|e| anyhow!("{}: {e}", path.display()))?),
        None => None,
    };
    Ok(Detector { cfg: ck.cfg, names: ck.names, graph, quant, source: path.to_path_buf() })
}

/// A model from a yaml with random weights (benchmarks).
pub fn random(cfg_path: &Path, nc: Option<usize>) -> Result<Detector> {
    let mut cfg = ModelConfig::from_file(cfg_path)?;
    if let Some(nc) = nc {
        cfg = cfg.with_nc(nc)?;
    }
    let graph = build(&cfg, &mut RandomWeights).map_err(|e| anyhow!("{}: {e:#}", cfg_path.display()))?;
    let names = (0..cfg.nc).map(|i| format!("class{i}")).collect();
    Ok(Detector { cfg, names, graph, quant: None, source: cfg_path.to_path_buf() })
}
