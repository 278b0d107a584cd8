//! `yolo-qat eval`: upstream val.py's numbers for any model yolo-qat reads.

use super::common::eval_set;
use super::parse_device;
use super::validate;
use crate::data::config::DataConfig;
use crate::detector::load;
use crate::eval::validate::{evaluate, EvalOptions, EvalResult};
use crate::util::{increment_dir, write_atomic, RunLock};
use anyhow::{bail, Result};
use std::path::PathBuf;
use tch::Kind;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    weights: PathBuf,
    #[arg(long, default_value = "data/coco.yaml")]
    data: PathBuf,
    #[arg(long, default_value_t = 10)]
    batch_size: usize,
    /// A multiple of the model's largest stride. A static-shape .onnx is evaluated at its own size.
    #[arg(long, visible_aliases = ["img", "img-size"], default_value_t = 640)]
    imgsz: usize,
    #[arg(long, default_value = "cuda:0")]
    device: String,
    #[arg(long, default_value_t = 0.001)]
    conf_thres: f32,
    /// NMS IoU threshold (default: 0.7 as val.py; 0.6 as segment/val.py for segmentation models).
    #[arg(long)]
    iou_thres: Option<f64>,
    #[arg(long, default_value = "runs/qat_eval")]
    project: PathBuf,
    #[arg(long, default_value = "exp")]
    name: String,
    #[arg(long)]
    exist_ok: bool,
    /// Also write annotations.json and predictions.json (COCO format).
    #[arg(long, visible_alias = "save-json")]
    use_pycocotools: bool,
    /// Per-class table.
    #[arg(long)]
    verbose: bool,
    /// fp32 inference on CUDA (default: fp16, as val.py).
    #[arg(long)]
    fp32: bool,
    /// No pictures (PR/F1/P/R curves, confusion matrix, batch mosaics).
    #[arg(long)]
    noplots: bool,
}

pub fn run(a: Args) -> Result<()> {
    validate::count("--batch-size", a.batch_size)?;
    validate::unit("--conf-thres", a.conf_thres as f64)?;
    if let Some(t) = a.iou_thres {
        validate::unit("--iou-thres", t)?;
    }
    let device = parse_device(&a.device)?;
    let data = DataConfig::load(&a.data)?;
    let onnx = a.weights.extension().is_some_and(|e| e == "onnx");
    let model = if onnx {
        // Exported models carry no stride; every upstream detect model's largest is 32.
        validate::imgsz("--imgsz", a.imgsz, 32)?;
        None
    } else {
        let mut model = load(&a.weights)?;
        validate::imgsz("--imgsz", a.imgsz, validate::max_stride(&model))?;
        if model.graph.nc != data.nc() {
            bail!("{}: {} classes, but {} has {}", a.data.display(), data.nc(), a.weights.display(), model.graph.nc);
        }
        model.to(device, Kind::Float);
        Some(model)
    };
    let dir = increment_dir(&a.project, &a.name, a.exist_ok)?;
    let _lock = RunLock::acquire(&dir)?;
    let mut opts = EvalOptions::new(device).in_dir(&dir);
    opts.half = device.is_cuda() && !a.fp32;
    opts.save_json = a.use_pycocotools;
    opts.nms.conf_thres = a.conf_thres;
    if let Some(t) = a.iou_thres {
        (opts.nms.iou_thres, opts.seg_iou_thres) = (t, t);
    }
    opts.plots = !a.noplots;
    let r = match model {
        None => crate::export::onnx_eval::evaluate_onnx(&a.weights, &data, a.imgsz, a.batch_size, &opts)?,
        Some(model) => evaluate(&model, &eval_set(&data, a.imgsz, a.batch_size)?, &opts)?,
    };
    print_result(&r, a.verbose);
    write_atomic(&dir.join("results.json"), serde_json::to_string_pretty(&results_json(&r))?.as_bytes())?;
    if !a.noplots {
        crate::plots::eval::write(&dir, &r, &data.names)?;
    }
    println!("results saved to {}", dir.display());
    Ok(())
}

pub fn print_result(r: &EvalResult, verbose: bool) {
    let table = |m: &crate::eval::metrics::ValMetrics| {
        let t = m.to_string();
        if verbose {
            t
        } else {
            t.lines().take(2).map(|l| format!("{l}\n")).collect::<String>()
        }
    };
    match &r.mask {
        // segment/val.py prints Box(P R mAP50 mAP50-95) and Mask(...) side by side; here one table each
        Some(mask) => print!("Box\n{}Mask\n{}", table(&r.metrics), table(mask)),
        None => print!("{}", table(&r.metrics)),
    }
    println!(
        "Speed: {:.1}ms pre-process, {:.1}ms inference, {:.1}ms NMS per image; {:.1} s in all",
        r.speed.preprocess, r.speed.inference, r.speed.nms, r.wall_s
    );
}

pub fn results_json(r: &EvalResult) -> serde_json::Value {
    let per_class: Vec<_> = r
        .per_class
        .iter()
        .map(|c| serde_json::json!({ "name": c.name, "images": c.images, "instances": c.instances, "precision": c.precision, "recall": c.recall, "map50": c.map50, "map": c.map }))
        .collect();
    let mut j = serde_json::json!({
        "precision": r.precision, "recall": r.recall, "map50": r.map50, "map": r.map,
        "per_class": per_class,
        "speed_ms": r.speed,
        "wall_s": r.wall_s,
    });
    if let Some(m) = &r.mask {
        j["mask"] = serde_json::json!({ "precision": m.precision, "recall": m.recall, "map50": m.map50, "map": m.map });
    }
    j
}
