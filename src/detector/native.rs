//! yolo-qat's own checkpoint: safetensors, tensors under upstream names, and
//! JSON metadata (model yaml, class names, whether BN is fused, quantizer state).

use crate::quant::state::QuantMeta;
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use tch::{Kind, Tensor};

pub const FORMAT: &str = "yolo-qat";
pub const VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NativeMeta {
    pub format: String,
    pub version: u32,
    /// The model yaml, as YAML text.
    pub yaml: String,
    pub names: Vec<String>,
    /// True when Conv+BN and RepConvN are already fused (`*.conv.bias`, no `*.bn.*`).
    pub fused: bool,
    #[serde(default)]
    pub quant: Option<QuantMeta>,
    /// Free-form provenance: source weights, epoch, AP…
    #[serde(default)]
    pub info: serde_json::Value,
}

/// Is this file a safetensors file (an 8-byte header length, then JSON)?
pub fn looks_like_safetensors(bytes: &[u8]) -> bool {
    bytes.len() > 9 && bytes[8] == b'{'
}

pub fn read(path: &Path) -> Result<(NativeMeta, BTreeMap<String, Tensor>)> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| anyhow!("{}: not a valid safetensors file: {e}", path.display()))?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let meta_json = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get("yolo-qat"))
        .ok_or_else(|| anyhow!("{}: safetensors file without yolo-qat metadata (not written by yolo-qat)", path.display()))?;
    let meta: NativeMeta = serde_json::from_str(meta_json).map_err(|e| anyhow!("{}: bad yolo-qat metadata: {e}", path.display()))?;
    if meta.format != FORMAT || meta.version > VERSION {
        bail!("{}: format {} v{} is not readable by this yolo-qat (v{VERSION})", path.display(), meta.format, meta.version);
    }
    let mut tensors = BTreeMap::new();
    for (name, view) in st.tensors() {
        let kind = match view.dtype() {
            safetensors::Dtype::F32 => Kind::Float,
            safetensors::Dtype::F16 => Kind::Half,
            safetensors::Dtype::BF16 => Kind::BFloat16,
            safetensors::Dtype::F64 => Kind::Double,
            safetensors::Dtype::I64 => Kind::Int64,
            d => bail!("{}: tensor {name} has unsupported dtype {d:?}", path.display()),
        };
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        let t = Tensor::f_from_data_size(view.data(), &shape, kind).map_err(|e| anyhow!("{}: tensor {name}: {e}", path.display()))?;
        tensors.insert(name, t.to_kind(Kind::Float));
    }
    Ok((meta, tensors))
}

struct Blob {
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl safetensors::View for &Blob {
    fn dtype(&self) -> safetensors::Dtype {
        safetensors::Dtype::F32
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

/// Writes atomically: a temporary file beside `path`, then a rename.
pub fn write(path: &Path, meta: &NativeMeta, tensors: &[(String, Tensor)]) -> Result<()> {
    let blobs: Vec<(String, Blob)> = tensors
        .iter()
        .map(|(n, t)| {
            let t = t.detach().to_device(tch::Device::Cpu).to_kind(Kind::Float).contiguous();
            let shape = t.size().iter().map(|&d| d as usize).collect();
            let v = Vec::<f32>::try_from(t.reshape([-1])).unwrap_or_default();
            let data = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            (n.clone(), Blob { shape, data })
        })
        .collect();
    let mut info = HashMap::new();
    info.insert("yolo-qat".to_string(), serde_json::to_string(meta)?);
    let views: Vec<(&str, &Blob)> = blobs.iter().map(|(n, b)| (n.as_str(), b)).collect();
    let bytes = safetensors::serialize(views, &Some(info)).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    crate::util::write_atomic(path, &bytes)
}
