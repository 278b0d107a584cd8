//! `eval --weights model.onnx`: the deployed row, through ONNX Runtime on the CPU.
//! A dynamic model takes val.py's rectangular batches; a static one, as upstream
//! does for non-PyTorch backends, square letterboxed images at its own size.

use crate::data::config::DataConfig;
use crate::data::val_set::{ValSet, ValSetOptions};
use crate::eval::validate::{evaluate_with, EvalOptions, EvalResult, Infer};
use crate::export::ort::OnnxModel;
use anyhow::{anyhow, bail, Result};
use std::path::Path;
use tch::{Device, Kind, Tensor};

struct OrtInfer {
    model: OnnxModel,
    names: Vec<String>,
}

// ONNX Runtime sessions are thread-safe for concurrent Run calls.
unsafe impl Sync for OrtInfer {}

impl Infer for OrtInfer {
    fn infer(&self, x: &Tensor) -> Result<Tensor> {
        let outs = self.model.run(&x.to_device(Device::Cpu).to_kind(Kind::Float))?;
        outs.into_iter().next().ok_or_else(|| anyhow!("{}: the model has no outputs", self.model.path.display()))
    }
    fn names(&self) -> &[String] {
        &self.names
    }
    /// A segmentation export's `output1` holds the prototypes.
    fn infer_with_protos(&self, x: &Tensor) -> Result<(Tensor, Option<Tensor>)> {
        let mut outs = self.model.run(&x.to_device(Device::Cpu).to_kind(Kind::Float))?.into_iter();
        let out = outs.next().ok_or_else(|| anyhow!("{}: the model has no outputs", self.model.path.display()))?;
        let protos = if self.model.output_names.get(1).is_some_and(|n| n == "output1") { outs.next() } else { None };
        Ok((out, protos))
    }
}

/// An exported model ready to run, for `predict`.
pub struct OnnxInfer {
    pub infer: Box<dyn Infer>,
    /// The static input (height, width), if the export has one.
    pub fixed: Option<(usize, usize)>,
}

/// An exported model as `Infer` (CPU).
pub fn onnx_infer(path: &Path, names: Vec<String>) -> Result<OnnxInfer> {
    let model = OnnxModel::load(path)?;
    if model.output_names.first().is_none_or(|n| n != "output0") {
        bail!("{}: expected output `output0` (an end-to-end export has NMS inside; export without --end2end)", path.display());
    }
    let fixed = if model.is_dynamic() { None } else { model.input_size().map(|(h, w)| (h as usize, w as usize)) };
    Ok(OnnxInfer { infer: Box::new(OrtInfer { model, names }), fixed })
}

pub fn evaluate_onnx(path: &Path, data: &DataConfig, imgsz: usize, batch_size: usize, opts: &EvalOptions) -> Result<EvalResult> {
    let model = OnnxModel::load(path)?;
    if model.output_names.first().is_none_or(|n| n != "output0") {
        bail!("{}: expected output `output0` (an end-to-end export cannot be evaluated; export without --end2end)", path.display());
    }
    let set_opts = if model.is_dynamic() {
        ValSetOptions { imgsz, batch_size, ..ValSetOptions::default() }
    } else {
        let (h, w) = model.input_size().ok_or_else(|| anyhow!("{}: input size unknown", path.display()))?;
        if h != w {
            bail!("{}: static input {h}x{w}; evaluate a square or --dynamic export", path.display());
        }
        let batch = model.batch().unwrap_or(1).max(1) as usize;
        if h as usize != imgsz || batch != batch_size {
            eprintln!(
                "note: {} has a static {h}x{w} input of batch {batch}: evaluating at that size and batch, not --imgsz {imgsz} --batch-size {batch_size}",
                path.display()
            );
        }
        ValSetOptions { imgsz: h as usize, batch_size: model.batch().unwrap_or(1).max(1) as usize, rect: false, ..ValSetOptions::default() }
    };
    let set = ValSet::load(&data.val, data.nc(), set_opts).map_err(|e| anyhow!("{}: val: {e:#}", data.yaml_path.display()))?;
    let names = data.names.clone();
    let mut opts = opts.clone();
    opts.device = Device::Cpu;
    opts.half = false;
    evaluate_with(&OrtInfer { model, names }, &set, &opts)
}
