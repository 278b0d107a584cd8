//! `yolo-qat sensitive`: which layers lose accuracy under INT8.

use super::common::{default_workers, eval_set, open_fp, train_loader};
use super::parse_device;
use super::validate;
use crate::eval::validate::{evaluate, EvalOptions};
use crate::progress::Progress;
use crate::quant::calibrate::{calibrate, prepare_with, PrepareOptions};
use crate::quant::sensitivity::analyze;
use crate::quant::state::quantized_layers;
use crate::quant::train::images_to_tensor;
use crate::quant::tying::TieScope;
use crate::quant::CalibMethod;
use crate::util::{increment_dir, write_atomic, RunLock};
use anyhow::Result;
use std::path::PathBuf;
use tch::Kind;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    weights: PathBuf,
    #[arg(long, default_value = "cuda:0")]
    device: String,
    #[arg(long, default_value = "data/coco.yaml")]
    data: PathBuf,
    #[arg(long, default_value_t = 10)]
    batch_size: usize,
    #[arg(long, visible_aliases = ["img", "img-size"], default_value_t = 640)]
    imgsz: usize,
    #[arg(long, default_value = super::common::DEFAULT_HYP)]
    hyp: PathBuf,
    #[arg(long, default_value = "runs/qat_sentive")]
    project: PathBuf,
    #[arg(long, default_value = "exp")]
    name: String,
    #[arg(long)]
    exist_ok: bool,
    /// Evaluate on the first N val images only.
    #[arg(long)]
    num_image: Option<usize>,
    #[arg(long, default_value_t = 26)]
    calib_batches: usize,
    #[arg(long, default_value = "mse")]
    calib_method: String,
    /// Which junctions share one quantizer: `all` (every Concat and MaxPool, what TensorRT
    /// needs; the recipe) or `reference` (only what the reference's ONNX walk finds).
    #[arg(long, default_value = "all")]
    ties: String,
    /// Calibrate the DFL conv's input like any other (the reference's way) instead of giving
    /// it amax 1, the known range of the softmax probabilities it reads.
    #[arg(long)]
    calibrate_dfl: bool,
    #[arg(long, default_value_t = 57)]
    seed: u64,
    /// No sensitivity.png (it also skips the floating-point evaluation drawn as its Origin line).
    #[arg(long)]
    noplots: bool,
}

pub fn run(a: Args) -> Result<()> {
    let device = parse_device(&a.device)?;
    let method = CalibMethod::parse(&a.calib_method)?;
    let ties = TieScope::parse(&a.ties)?;
    validate::count("--batch-size", a.batch_size)?;
    validate::count("--calib-batches", a.calib_batches)?;
    if let Some(n) = a.num_image {
        validate::count("--num-image", n)?;
    }
    let (mut model, data, hyp) = open_fp(&a.weights, &a.data, &a.hyp)?;
    validate::imgsz("--imgsz", a.imgsz, validate::max_stride(&model))?;
    let dir = increment_dir(&a.project, &a.name, a.exist_ok)?;
    let _lock = RunLock::acquire(&dir)?;
    let loader = train_loader(&data, a.imgsz, a.batch_size, hyp, a.seed, default_workers(), false)?;
    let mut val = eval_set(&data, a.imgsz, a.batch_size)?;
    if let Some(n) = a.num_image {
        val = val.limit(n);
    }
    model.to(device, Kind::Float);
    let mut opts = EvalOptions::new(device);
    opts.progress = false;
    let origin = if a.noplots { None } else { Some(evaluate(&model, &val, &opts)?) };
    if let Some(r) = &origin {
        println!("{:<10} AP {:.4}  AP50 {:.4}", "Origin", r.map, r.map50);
    }
    prepare_with(&mut model, &PrepareOptions { ties, dfl_unit_range: !a.calibrate_dfl, ..PrepareOptions::new(method) })?;
    let batches = loader.iter_forever(0).take(a.calib_batches).map(|b| images_to_tensor(&b.images, b.batch, b.size, b.size, device));
    calibrate(&mut model, batches, method)?;
    let mut bar = Progress::new("sensitivity", quantized_layers(&model.graph).len() + 1);
    let result = analyze(&mut model, |m, name| {
        bar.set_message(name);
        let r = evaluate(m, &val, &opts)?;
        bar.suspend(|| println!("{name:<10} AP {:.4}  AP50 {:.4}", r.map, r.map50));
        bar.inc(1);
        Ok((r.map, r.map50))
    })?;
    bar.finish();
    write_atomic(&dir.join("summary-sensitive-analysis.json"), serde_json::to_string_pretty(&result.seed_summary())?.as_bytes())?;
    write_atomic(&dir.join("sensitivity.json"), serde_json::to_string_pretty(&result)?.as_bytes())?;
    if !a.noplots {
        crate::plots::sensitivity::write(&dir.join("sensitivity.png"), &result, origin.map(|r| r.map))?;
    }
    println!("\nLayers ranked by AP gain when kept in floating point (PTQ AP {:.4}):", result.ptq_map);
    println!("{:<4} {:<10} {:>8} {:>8} {:>9}", "rank", "layer", "AP", "AP50", "gain");
    for (i, l) in result.ranked().iter().enumerate() {
        println!("{:<4} {:<10} {:>8.4} {:>8.4} {:>+9.4}", i + 1, l.layer, l.map, l.map50, l.gain);
    }
    println!("results saved to {}", dir.display());
    Ok(())
}
