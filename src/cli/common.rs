//! Pieces several commands share: data sets from a data yaml, result rows and tables.

use crate::data::config::DataConfig;
use crate::data::hyp::Hyp;
use crate::data::train_loader::TrainLoader;
use crate::data::val_set::{ValSet, ValSetOptions};
use crate::detector::load;
use crate::detector::Detector;
use crate::eval::validate::EvalResult;
use anyhow::{anyhow, bail, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// An FP model with its data set and hyperparameters, checked to agree (quantize, sensitive).
/// The default `--hyp`. When it is not there (the binary run outside the repository),
/// the same values built into the binary are used.
pub const DEFAULT_HYP: &str = "configs/hyp.scratch-high.yaml";

/// `--hyp`: the file, or the built-in scratch-high values for a missing default.
pub fn load_hyp(path: &Path) -> Result<Hyp> {
    if path == Path::new(DEFAULT_HYP) && !path.exists() {
        return Ok(Hyp::scratch_high());
    }
    Hyp::load(path).map_err(|e| anyhow!("{}: {e:#}", path.display()))
}

pub fn open_fp(weights: &Path, data: &Path, hyp: &Path) -> Result<(Detector, DataConfig, Hyp)> {
    let model = load(weights)?;
    if model.is_quantized() {
        bail!("{}: already quantized; start from the FP model (quantize --resume continues a run)", weights.display());
    }
    let cfg = DataConfig::load(data)?;
    if cfg.nc() != model.graph.nc {
        bail!("{}: {} classes, but {} has {}", data.display(), cfg.nc(), weights.display(), model.graph.nc);
    }
    Ok((model, cfg, load_hyp(hyp)?))
}

/// The val split with val.py's rectangular batches; warnings printed once.
pub fn eval_set(data: &DataConfig, imgsz: usize, batch_size: usize) -> Result<ValSet> {
    let opts = ValSetOptions { imgsz, batch_size, ..ValSetOptions::default() };
    let set = ValSet::load(&data.val, data.nc(), opts).map_err(|e| anyhow!("{}: val: {e:#}", data.yaml_path.display()))?;
    report_warnings("val", &set.warnings);
    Ok(set)
}

/// Loader threads when `--workers` is not given: every core, within the `--workers` bound.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(4, |n| n.get()).min(super::validate::MAX_WORKERS)
}

/// The augmented training loader over the train split (`workers` checked as `--workers`).
/// With `masks`, the polygon labels go through the augmentations and every label gets its
/// mask (the segmentation loss); the train split must then hold polygon labels.
pub fn train_loader(data: &DataConfig, imgsz: usize, batch: usize, hyp: Hyp, seed: u64, workers: usize, masks: bool) -> Result<TrainLoader> {
    super::validate::workers(workers)?;
    let opts = ValSetOptions { imgsz, batch_size: batch, rect: false, ..ValSetOptions::default() };
    let set = ValSet::load(&data.train, data.nc(), opts).map_err(|e| anyhow!("{}: train: {e:#}", data.yaml_path.display()))?;
    report_warnings("train", &set.warnings);
    if masks && set.entries.iter().all(|e| e.segments.iter().all(Vec::is_empty)) {
        bail!("{}: the train split has box labels only; the segmentation loss needs polygon labels (or use --loss distill)", data.yaml_path.display());
    }
    let segments: Vec<Vec<Vec<[f32; 2]>>> = set.entries.iter().map(|e| e.segments.clone()).collect();
    let samples = set.entries.into_iter().map(|e| (e.path, e.rows.iter().map(|r| (r.class, r.xywhn)).collect())).collect();
    let loader = TrainLoader::new(samples, imgsz, batch, hyp, seed, workers);
    Ok(if masks { loader.with_segments(segments) } else { loader })
}

fn report_warnings(split: &str, warnings: &[String]) {
    if warnings.is_empty() {
        return;
    }
    eprintln!("warning: {} problem(s) in the {split} set, skipped:", warnings.len());
    for w in warnings.iter().take(20) {
        eprintln!("  {w}");
    }
    if warnings.len() > 20 {
        eprintln!("  … and {} more", warnings.len() - 20);
    }
}

/// One row of the accuracy table (the reference patch's report.json rows).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Row {
    pub name: String,
    pub map: f64,
    pub map50: f64,
    pub precision: f64,
    pub recall: f64,
    /// Segmentation models: mask mAP50-95 and mAP50 (the box metrics are the fields above).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask_map: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask_map50: Option<f64>,
}

impl Row {
    pub fn new(name: &str, r: &EvalResult) -> Row {
        Row {
            name: name.to_string(),
            map: r.map,
            map50: r.map50,
            precision: r.precision,
            recall: r.recall,
            mask_map: r.mask.as_ref().map(|m| m.map),
            mask_map50: r.mask.as_ref().map(|m| m.map50),
        }
    }
}

pub fn print_table(rows: &[Row]) {
    let masks = rows.iter().any(|r| r.mask_map.is_some());
    let mask_head = if masks { format!(" {:>8} {:>8}", "MaskAP", "MaskAP50") } else { String::new() };
    println!("{:<12} {:>8} {:>8} {:>8} {:>8}{mask_head}", "model", "AP", "AP50", "P", "R");
    for r in rows {
        let mask = match (masks, r.mask_map, r.mask_map50) {
            (true, Some(m), Some(m50)) => format!(" {m:>8.4} {m50:>8.4}"),
            (true, ..) => format!(" {:>8} {:>8}", "-", "-"),
            _ => String::new(),
        };
        println!("{:<12} {:>8.4} {:>8.4} {:>8.4} {:>8.4}{mask}", r.name, r.map, r.map50, r.precision, r.recall);
    }
}
