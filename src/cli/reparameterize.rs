//! `yolo-qat reparameterize`: a dual-head checkpoint as its GELAN model.

use crate::detector::read_checkpoint;
use crate::detector::Detector;
use crate::model::parse::build;
use crate::model::reparam::{infer_target, map_names};
use crate::model::weights::StateDict;
use crate::model::ModelConfig;
use crate::util::check_output;
use anyhow::{anyhow, bail, Result};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// A dual-head YOLOv9 checkpoint (upstream train_dual.py output).
    #[arg(long)]
    weights: PathBuf,
    /// The GELAN yaml of the same size (configs/gelan-X.yaml); inferred when absent.
    #[arg(long)]
    cfg: Option<PathBuf>,
    /// Where to write the converted model (yolo-qat safetensors). Replaced atomically if it is
    /// a regular file; a symlink is written through; a folder, device or FIFO, or an input, is refused.
    #[arg(long)]
    output: PathBuf,
}

pub fn run(a: Args) -> Result<()> {
    let mut inputs = vec![("--weights", a.weights.as_path())];
    inputs.extend(a.cfg.as_deref().map(|c| ("--cfg", c)));
    check_output("--output", &a.output, &inputs)?;
    let ck = read_checkpoint(&a.weights)?;
    let dual = &ck.cfg;
    let last = &dual.layers[dual.layers.len() - 1].module;
    if last != "DualDDetect" && last != "DualDSegment" {
        bail!("{}: not a dual-head model (detect layer {last}); it is already in GELAN form", a.weights.display());
    }
    let target = match &a.cfg {
        Some(p) => ModelConfig::from_file(p)?.with_nc(dual.nc)?,
        None => infer_target(dual).map_err(|e| anyhow!("{}: {e}", a.weights.display()))?,
    };
    let tensors = map_names(dual, &target, ck.state.tensors)?;
    let eps = map_names(dual, &target, ck.state.bn_eps)?;
    let mut state = StateDict::new(tensors, eps);
    let graph = build(&target, &mut state).map_err(|e| anyhow!("{}: the GELAN layout does not fit the weights: {e:#}", a.weights.display()))?;
    let model = Detector { cfg: target, names: ck.names, graph, quant: None, source: a.weights.clone() };
    let info = serde_json::json!({ "reparameterized_from": a.weights.display().to_string() });
    model.save(&a.output, info)?;
    println!("{} -> {} ({} layers, {} parameters)", a.weights.display(), a.output.display(), model.graph.layers.len(), model.graph.parameter_count());
    Ok(())
}
