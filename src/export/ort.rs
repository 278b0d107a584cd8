//! Runs an .onnx model with ONNX Runtime from Rust, through the `ort` crate with
//! `load-dynamic`: the shared library of the pip `onnxruntime` package in the
//! project venv is loaded at run time (ONNX Runtime ≥ 1.17; `ORT_DYLIB_PATH`
//! overrides where it comes from). CPU execution, f32 images in; outputs come
//! back as CPU tensors of their ONNX type (float32 → Float, int32 → Int,
//! int64 → Int64).

use anyhow::{anyhow, bail, Result};
use onnx_protobuf::{Message, ModelProto};
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::{Tensor as OrtTensor, TensorElementType, ValueType};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use tch::{Device, Kind, Tensor};

/// Environment variable naming the ONNX Runtime shared library to load.
pub const ORT_DYLIB_ENV: &str = "ORT_DYLIB_PATH";

/// How much ONNX Runtime may rewrite the graph. `Basic` keeps Q/DQ as written
/// (fake quantization in float, what `Detector::forward` computes); `All` lets
/// ORT fuse Q/DQ around convs into integer kernels (closer to a real INT8 engine).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrtOptimization {
    Disable,
    Basic,
    Extended,
    All,
}

#[derive(Debug, Clone, Copy)]
pub struct OrtOptions {
    pub optimization: OrtOptimization,
    /// Intra-op threads (None: ONNX Runtime's default).
    pub threads: Option<usize>,
}

impl Default for OrtOptions {
    fn default() -> Self {
        OrtOptions { optimization: OrtOptimization::Basic, threads: None }
    }
}

/// Where the ONNX Runtime library is: `$ORT_DYLIB_PATH`, else the project venv's
/// `onnxruntime/capi/libonnxruntime.so*` (`$YOLO_QAT_HOME`, default `~/.cache/yolo-qat`).
pub fn library_path() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(ORT_DYLIB_ENV).filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        bail!("ONNX Runtime library not found: {ORT_DYLIB_ENV}={} is not a file", p.display());
    }
    let home = match std::env::var_os("YOLO_QAT_HOME").filter(|p| !p.is_empty()) {
        Some(h) => PathBuf::from(h),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/yolo-qat"),
    };
    let lib = home.join("venv/lib");
    let mut candidates = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&lib) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with("python3") {
                continue;
            }
            let capi = e.path().join("site-packages/onnxruntime/capi");
            if let Ok(files) = std::fs::read_dir(&capi) {
                for f in files.flatten() {
                    let n = f.file_name().to_string_lossy().into_owned();
                    if n.starts_with("libonnxruntime.so") || n.starts_with("libonnxruntime.dylib") || n.ends_with("onnxruntime.dll") {
                        candidates.push(f.path());
                    }
                }
            }
        }
    }
    // The versioned file (`libonnxruntime.so.1.x.y`) is the real library; prefer the longest name.
    candidates.sort_by_key(|p| std::cmp::Reverse(p.file_name().map_or(0, |n| n.len())));
    candidates.into_iter().next().ok_or_else(|| {
        anyhow!(
            "ONNX Runtime library not found: {ORT_DYLIB_ENV} is unset and there is no {}/python3*/site-packages/onnxruntime/capi/libonnxruntime.so* (run scripts/setup.sh, or set {ORT_DYLIB_ENV})",
            lib.display()
        )
    })
}

static ENV: OnceLock<std::result::Result<ort::environment::Environment, String>> = OnceLock::new();

/// The process-wide ONNX Runtime environment (loads the library once).
fn environment() -> Result<&'static ort::environment::Environment> {
    let env = ENV.get_or_init(|| {
        let path = library_path().map_err(|e| e.to_string())?;
        let builder = ort::init_from(&path).map_err(|e| format!("cannot load ONNX Runtime from {}: {e}", path.display()))?;
        builder.with_name("yolo-qat").with_telemetry(false).build().map_err(|e| format!("cannot start ONNX Runtime ({}): {e}", path.display()))
    });
    env.as_ref().map_err(|e| anyhow!("{e}"))
}

/// An ONNX model loaded into an ONNX Runtime CPU session.
pub struct OnnxModel {
    session: Mutex<Session>,
    pub path: PathBuf,
    pub input_name: String,
    /// Input dims; `None` where symbolic.
    pub input_shape: Vec<Option<i64>>,
    pub output_names: Vec<String>,
    /// The model's metadata props (`stride`, `names`, `imgsz`, …).
    pub metadata: BTreeMap<String, String>,
}

impl OnnxModel {
    /// Loads with `OrtOptions::default()` (basic graph optimizations: Q/DQ kept as written).
    pub fn load(path: &Path) -> Result<Self> {
        Self::load_with(path, &OrtOptions::default())
    }

    pub fn load_with(path: &Path, opts: &OrtOptions) -> Result<Self> {
        let env = environment()?;
        let bytes = super::read_onnx_bytes(path)?;
        let proto = ModelProto::parse_from_bytes(&bytes).map_err(|e| anyhow!("{}: not an ONNX model: {e}", path.display()))?;
        let metadata = proto.metadata_props.iter().map(|p| (p.key.clone(), p.value.clone())).collect();
        let level = match opts.optimization {
            OrtOptimization::Disable => GraphOptimizationLevel::Disable,
            OrtOptimization::Basic => GraphOptimizationLevel::Level1,
            OrtOptimization::Extended => GraphOptimizationLevel::Level2,
            OrtOptimization::All => GraphOptimizationLevel::All,
        };
        let err = |e: &dyn std::fmt::Display| anyhow!("{}: ONNX Runtime: {e}", path.display());
        let mut builder = Session::builder(env).map_err(|e| err(&e))?.with_optimization_level(level).map_err(|e| err(&e))?;
        if let Some(t) = opts.threads {
            builder = builder.with_intra_threads(t).map_err(|e| err(&e))?;
        }
        let session = builder.commit_from_memory(&bytes).map_err(|e| err(&e))?;
        let inputs = session.inputs();
        if inputs.len() != 1 {
            bail!("{}: expected one input (images), the model has {}", path.display(), inputs.len());
        }
        let input_name = inputs[0].name().to_string();
        let input_shape: Vec<Option<i64>> = match inputs[0].dtype() {
            ValueType::Tensor { ty: TensorElementType::Float32, shape, .. } => shape.iter().map(|&d| (d >= 0).then_some(d)).collect(),
            other => bail!("{}: input `{input_name}` is {other:?}, expected a float32 tensor", path.display()),
        };
        if input_shape.len() != 4 {
            bail!("{}: input `{input_name}` has rank {}, expected (B, 3, H, W)", path.display(), input_shape.len());
        }
        let output_names = session.outputs().iter().map(|o| o.name().to_string()).collect();
        Ok(OnnxModel { session: Mutex::new(session), path: path.to_path_buf(), input_name, input_shape, output_names, metadata })
    }

    /// True when height or width is symbolic.
    pub fn is_dynamic(&self) -> bool {
        self.input_shape[2].is_none() || self.input_shape[3].is_none()
    }

    /// The fixed input size (H, W), if any.
    pub fn input_size(&self) -> Option<(i64, i64)> {
        Some((self.input_shape[2]?, self.input_shape[3]?))
    }

    /// The fixed batch size, if any.
    pub fn batch(&self) -> Option<i64> {
        self.input_shape[0]
    }

    /// Runs the model on (B, 3, H, W) images; one CPU tensor per model output, in order.
    pub fn run(&self, images: &Tensor) -> Result<Vec<Tensor>> {
        let shape = images.size();
        if shape.len() != 4 {
            bail!("{}: images must be (B, 3, H, W), got {shape:?}", self.path.display());
        }
        for (k, (&got, want)) in shape.iter().zip(&self.input_shape).enumerate() {
            if let Some(w) = *want {
                if got != w {
                    bail!("{}: input dim {k} must be {w}, got {got} (images {shape:?})", self.path.display());
                }
            }
        }
        let x = images.to_device(Device::Cpu).to_kind(Kind::Float).contiguous();
        let data = Vec::<f32>::try_from(x.view([-1]))?;
        let input = OrtTensor::from_array((shape.clone(), data)).map_err(|e| anyhow!("{}: {e}", self.path.display()))?;
        let mut session = self.session.lock().map_err(|_| anyhow!("{}: session lock poisoned", self.path.display()))?;
        let outputs = session.run(ort::inputs![self.input_name.as_str() => input]).map_err(|e| anyhow!("{}: ONNX Runtime: {e}", self.path.display()))?;
        let mut out = Vec::with_capacity(self.output_names.len());
        for name in &self.output_names {
            let v = outputs.get(name.as_str()).ok_or_else(|| anyhow!("{}: no output `{name}`", self.path.display()))?;
            let t = match v.dtype() {
                ValueType::Tensor { ty: TensorElementType::Float32, .. } => {
                    let (s, d) = v.try_extract_tensor::<f32>().map_err(|e| anyhow!("{name}: {e}"))?;
                    Tensor::from_slice(d).view(&s[..])
                }
                ValueType::Tensor { ty: TensorElementType::Int32, .. } => {
                    let (s, d) = v.try_extract_tensor::<i32>().map_err(|e| anyhow!("{name}: {e}"))?;
                    Tensor::from_slice(d).view(&s[..])
                }
                ValueType::Tensor { ty: TensorElementType::Int64, .. } => {
                    let (s, d) = v.try_extract_tensor::<i64>().map_err(|e| anyhow!("{name}: {e}"))?;
                    Tensor::from_slice(d).view(&s[..])
                }
                other => bail!("{}: output `{name}` is {other:?} (float32, int32 or int64 expected)", self.path.display()),
            };
            out.push(t);
        }
        Ok(out)
    }
}
