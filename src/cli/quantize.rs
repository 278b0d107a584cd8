//! `yolo-qat quantize`: calibrate (PTQ), then finetune (QAT), evaluating and
//! saving after each stage, as the seed's `qat.py quantize` does.

use super::common::{eval_set, open_fp, print_table, train_loader, Row};
use super::parse_device;
use crate::checkpoint::load::load;
use crate::data::config::DataConfig;
use crate::data::hyp::Hyp;
use crate::eval::validate::{evaluate, EvalOptions};
use crate::model::detector::Detector;
use crate::quant::calibrate::{calibrate, prepare_with, PrepareOptions};
use crate::quant::qat::{lr_for_epoch, Qat, Supervision};
use crate::quant::tying::TieScope;
use crate::quant::CalibMethod;
use crate::util::{increment_dir, write_atomic};
use anyhow::{anyhow, bail, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

#[derive(clap::Args, Clone)]
pub struct Args {
    /// FP model: an upstream (converted) .pt or a yolo-qat .safetensors.
    #[arg(long)]
    pub weights: PathBuf,
    #[arg(long, default_value = "data/coco.yaml")]
    pub data: PathBuf,
    #[arg(long, default_value = super::common::DEFAULT_HYP)]
    pub hyp: PathBuf,
    #[arg(long, default_value = "cuda:0")]
    pub device: String,
    #[arg(long, default_value_t = 10)]
    pub batch_size: usize,
    #[arg(long, visible_aliases = ["img", "img-size"], default_value_t = 640)]
    pub imgsz: usize,
    #[arg(long, default_value = "runs/qat")]
    pub project: PathBuf,
    #[arg(long, default_value = "exp")]
    pub name: String,
    #[arg(long)]
    pub exist_ok: bool,
    /// QAT iterations per epoch.
    #[arg(long, default_value_t = 200)]
    pub iters: usize,
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    #[arg(long, default_value_t = 57)]
    pub seed: u64,
    /// Keep the detect layer in floating point (faster convergence, slower engine).
    #[arg(long)]
    pub no_last_layer: bool,
    /// Layers kept in floating point, e.g. `model.3,model.21` (see `yolo-qat sensitive`).
    #[arg(long, value_delimiter = ',')]
    pub skip_layers: Vec<String>,
    #[arg(long, default_value_t = 1)]
    pub supervision_stride: usize,
    /// Also supervise the detect head's raw outputs (not in the reference recipe, which
    /// never trains the head; see docs/results.md).
    #[arg(long)]
    pub supervise_head: bool,
    /// Launch the QAT step's kernels one by one instead of replaying a CUDA graph.
    #[arg(long)]
    pub no_cuda_graph: bool,
    /// Also learn each activation quantizer's amax during QAT, by Adam at this LR on
    /// log amax (LSQ-style; not in the reference recipe, see docs/results.md).
    #[arg(long, value_name = "LR")]
    pub learn_amax: Option<f64>,
    #[arg(long)]
    pub no_eval_origin: bool,
    #[arg(long)]
    pub no_eval_ptq: bool,
    /// Also write COCO JSON (annotations, predictions) at each evaluation.
    #[arg(long)]
    pub eval_pycocotools: bool,
    /// Calibration batches of the training loader.
    #[arg(long, default_value_t = 26)]
    pub calib_batches: usize,
    /// Activation amax from histograms: mse, percentile, entropy or max.
    #[arg(long, default_value = "mse")]
    pub calib_method: String,
    /// Which junctions share one quantizer: `all` (every Concat and MaxPool, what TensorRT
    /// needs; the recipe) or `reference` (only what the reference's ONNX walk finds).
    #[arg(long, default_value = "all")]
    pub ties: String,
    /// Calibrate the DFL conv's input like any other (the reference's way) instead of giving
    /// it amax 1, the known range of the softmax probabilities it reads.
    #[arg(long)]
    pub calibrate_dfl: bool,
    /// Continue the run in --project/--name from its last finished epoch.
    #[arg(long)]
    pub resume: bool,
    /// Multiplies the recipe's LR schedule (1e-6, 1e-5 in epoch 6).
    #[arg(long, default_value_t = 1.0)]
    pub lr_scale: f64,
    /// Loader threads (default: all cores).
    #[arg(long)]
    pub workers: Option<usize>,
}

/// `model.7` / `7` → 7.
pub fn parse_layers(list: &[String], n: usize) -> Result<Vec<usize>> {
    let mut out = Vec::new();
    for s in list.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        let i: usize = s.strip_prefix("model.").unwrap_or(s).parse().map_err(|_| anyhow!("--skip-layers {s}: expected model.N"))?;
        if i >= n {
            bail!("--skip-layers {s}: the model has layers model.0..model.{}", n - 1);
        }
        out.push(i);
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

struct Run {
    dir: PathBuf,
    stem: String,
    rows: Vec<Row>,
    device: Device,
    /// The report's `run` object; `write_report` adds to it.
    meta: serde_json::Map<String, serde_json::Value>,
}

impl Run {
    fn save(&self, model: &Detector, file: &str, info: serde_json::Value) -> Result<PathBuf> {
        let path = self.dir.join("weights").join(file);
        model.save(&path, info)?;
        Ok(path)
    }

    fn write_report(&mut self, extra: serde_json::Value) -> Result<()> {
        if let serde_json::Value::Object(m) = extra {
            self.meta.extend(m);
        }
        let report = serde_json::json!({ "rows": self.rows, "run": self.meta });
        write_atomic(&self.dir.join("report.json"), serde_json::to_string_pretty(&report)?.as_bytes())
    }
}

pub fn run(a: Args) -> Result<()> {
    let device = parse_device(&a.device)?;
    let method = CalibMethod::parse(&a.calib_method)?;
    let ties = TieScope::parse(&a.ties)?;
    if let Some(lr) = a.learn_amax.filter(|lr| !(lr.is_finite() && *lr > 0.0)) {
        bail!("--learn-amax {lr}: expected a positive learning rate, e.g. 1e-4");
    }
    let (mut model, data, hyp) = open_fp(&a.weights, &a.data, &a.hyp)?;
    let mut skip = parse_layers(&a.skip_layers, model.graph.layers.len())?;
    if a.no_last_layer {
        skip.push(model.graph.layers.len() - 1);
    }
    let dir = if a.resume { a.project.join(&a.name) } else { increment_dir(&a.project, &a.name, a.exist_ok)? };
    if a.resume {
        return resume(&a, model, dir, &data, hyp, device);
    }
    let stem = a.weights.file_stem().map_or("model".into(), |s| s.to_string_lossy().into_owned());
    let mut run = Run { dir, stem, rows: Vec::new(), device, meta: Default::default() };
    tch::manual_seed(a.seed as i64);
    let workers = a.workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(4, |n| n.get()));
    let loader = train_loader(&data, a.imgsz, a.batch_size, hyp, a.seed, workers)?;
    let val = eval_set(&data, a.imgsz, a.batch_size)?;
    let eopts = EvalOptions { half: device.is_cuda(), save_json: a.eval_pycocotools, ..EvalOptions::new(a.imgsz, a.batch_size, device) };
    model.to(device, Kind::Float);
    println!("{}: {} layers, quantizing on {device:?}, results in {}", a.weights.display(), model.graph.layers.len(), run.dir.display());

    if !a.no_eval_origin {
        let r = evaluate(&model, &val, &eopts.in_dir(&run.dir.join("eval_origin")))?;
        run.rows.push(Row::new("Origin", &r));
    }
    let t0 = Instant::now();
    for line in prepare_with(&mut model, &PrepareOptions { skip_layers: skip.clone(), method, ties, dfl_unit_range: !a.calibrate_dfl })? {
        println!("{line}");
    }
    let to_tensor = |b: crate::data::train_loader::TrainBatch| batch_tensor(&b.images, b.batch, b.size, b.size, device);
    let missing = calibrate(&mut model, loader.iter_forever(0).take(a.calib_batches).map(to_tensor), method)?;
    let calib_s = t0.elapsed().as_secs_f64();
    println!(
        "calibrated {} quantizers on {} batches in {calib_s:.1} s ({missing} saw no data)",
        model.quant.as_ref().map_or(0, |q| q.table.len()),
        a.calib_batches
    );
    let mut ptq_ap = None;
    if !a.no_eval_ptq {
        let r = evaluate(&model, &val, &eopts.in_dir(&run.dir.join("eval_ptq")))?;
        ptq_ap = Some(r.map);
        run.rows.push(Row::new("PTQ", &r));
    }
    let ptq_name = format!("ptq_ap_{:.4}_{}.safetensors", ptq_ap.unwrap_or(0.0), run.stem);
    run.save(&model, &ptq_name, serde_json::json!({ "stage": "ptq", "ap": ptq_ap }))?;
    print_table(&run.rows);
    run.write_report(serde_json::json!({ "calibration_s": calib_s, "skip_layers": skip, "calib_method": a.calib_method, "ties": a.ties, "calibrate_dfl": a.calibrate_dfl, "supervise_head": a.supervise_head, "lr_scale": a.lr_scale, "learn_amax": a.learn_amax }))?;
    qat(&a, &mut model, None, 0, &loader, &val, &eopts, &mut run, calib_s)
}

/// `--resume`: the last finished epoch's checkpoint becomes the student, the FP
/// model the teacher again, Adam and the loss scale continue from their saved state.
fn resume(a: &Args, mut fp: Detector, dir: PathBuf, data: &DataConfig, hyp: Hyp, device: Device) -> Result<()> {
    let weights = dir.join("weights");
    let last = std::fs::read_dir(&weights)
        .map_err(|_| anyhow!("--resume: {} has no finished run (no weights folder)", dir.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let epoch: usize = name.strip_prefix("qat_ep_")?.split('_').next()?.parse().ok()?;
            Some((epoch, e.path()))
        })
        .max_by_key(|(e, _)| *e);
    let Some((epoch, path)) = last else { bail!("--resume: no finished QAT epoch in {}", weights.display()) };
    if epoch + 1 >= a.epochs {
        bail!("--resume: all {} epochs of {} are finished", a.epochs, dir.display());
    }
    let mut student = load(&path)?;
    student.to(device, Kind::Float);
    fp.to(device, Kind::Float);
    let report: serde_json::Value = std::fs::read_to_string(dir.join("report.json")).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default();
    let mut rows: Vec<Row> = serde_json::from_value(report["rows"].clone()).unwrap_or_default();
    // Rows of epochs after the checkpoint (an interrupted run) are redone.
    rows.retain(|r| r.name.strip_prefix("QAT-").and_then(|e| e.parse::<usize>().ok()).is_none_or(|e| e <= epoch));
    let calib_s = report["run"]["calibration_s"].as_f64().unwrap_or(0.0);
    let stem = a.weights.file_stem().map_or("model".into(), |s| s.to_string_lossy().into_owned());
    let meta = report["run"].as_object().cloned().unwrap_or_default();
    let mut run = Run { dir, stem, rows, device, meta };
    println!("resuming {} after epoch {epoch} from {}", run.dir.display(), path.display());
    let workers = a.workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(4, |n| n.get()));
    let loader = train_loader(data, a.imgsz, a.batch_size, hyp, a.seed, workers)?;
    let val = eval_set(data, a.imgsz, a.batch_size)?;
    let eopts = EvalOptions { half: device.is_cuda(), save_json: a.eval_pycocotools, ..EvalOptions::new(a.imgsz, a.batch_size, device) };
    let mut teacher = fp.graph;
    if device.is_cuda() {
        teacher.to(device, Kind::Half);
    }
    qat(a, &mut student, Some(teacher), epoch + 1, &loader, &val, &eopts, &mut run, calib_s)
}

#[allow(clippy::too_many_arguments)]
fn qat(
    a: &Args,
    model: &mut Detector,
    teacher: Option<crate::model::graph::Graph>,
    start: usize,
    loader: &crate::data::train_loader::TrainLoader,
    val: &crate::data::val_set::ValSet,
    eopts: &EvalOptions,
    run: &mut Run,
    calib_s: f64,
) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    let _ = ctrlc::set_handler(move || s2.store(true, Ordering::SeqCst));
    let amp = run.device.is_cuda();
    let mut qat = Qat::new(model, teacher, Supervision { stride: a.supervision_stride, head: a.supervise_head }, amp);
    if let Some(lr) = a.learn_amax {
        qat.learn_amax(model, lr);
    }
    let state_path = run.dir.join("weights").join(OPTIMIZER_STATE);
    if start > 0 {
        match load_optimizer_state(&state_path, start - 1) {
            Some(saved) => {
                qat.load_optimizer_state(&saved).map_err(|e| anyhow!("{}: {e}", state_path.display()))?;
                println!("optimizer state of epoch {} restored from {}", start - 1, state_path.display());
            }
            None => println!("no optimizer state of epoch {} in {}: Adam starts afresh", start - 1, state_path.display()),
        }
    }
    let mut want_graph = amp && !a.no_cuda_graph && crate::cuda::graph::CudaGraph::available();
    let mut best: Option<Row> = run.rows.iter().find(|r| r.name == "QAT-Best").cloned();
    let mut seen = 0usize;
    let t_all = Instant::now();
    for epoch in start..a.epochs {
        let lr = lr_for_epoch(epoch) * a.lr_scale;
        let bar = ProgressBar::new(a.iters as u64);
        bar.set_style(
            ProgressStyle::with_template("QAT {prefix} {bar:30} {pos}/{len} {msg} [{elapsed}<{eta}]").unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_prefix(format!("epoch {epoch}/{}", a.epochs));
        // The loss is summed on the device and read only for the progress bar (every
        // 10 steps), so the host never waits for the GPU within a step.
        let mut loss_sum = Tensor::zeros([], (Kind::Float, run.device));
        let mut shown = String::new();
        for (i, b) in loader.iter_forever(1 + epoch as u64).take(a.iters).enumerate() {
            if stop.load(Ordering::SeqCst) {
                bar.abandon();
                bail!("interrupted in epoch {epoch}; finished epochs are saved in {}", run.dir.display());
            }
            let x = batch_tensor(&b.images, b.batch, b.size, b.size, run.device);
            if want_graph {
                want_graph = false;
                match catch_oom(|| qat.capture(model, &x)) {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) | Err(e) => eprintln!("CUDA graph not used ({e:#}); launching kernels one by one"),
                }
            }
            let loss = catch_oom(|| qat.step(model, &x, lr))?;
            seen += b.batch;
            loss_sum += loss;
            if i % 10 == 9 {
                shown = format!("loss {:.5} lr {lr:.0e}", loss_sum.double_value(&[]) / (i + 1) as f64);
            }
            bar.set_position(i as u64 + 1);
            bar.set_message(shown.clone());
        }
        bar.finish();
        let mean_loss = loss_sum.double_value(&[]) / a.iters.max(1) as f64;
        println!("epoch {epoch}: mean loss {mean_loss:.5}, lr {lr:.0e}");
        qat.write_back_amax(model);
        let r = evaluate(model, val, &eopts.in_dir(&run.dir.join(format!("eval_qat_ep{epoch}"))))?;
        let row = Row::new(&format!("QAT-{epoch}"), &r);
        let info = serde_json::json!({ "stage": "qat", "epoch": epoch, "ap": r.map, "loss": mean_loss });
        run.save(model, &format!("qat_ep_{epoch}_ap_{:.4}_{}.safetensors", r.map, run.stem), info.clone())?;
        if best.as_ref().is_none_or(|b: &Row| r.map > b.map) {
            run.save(model, &format!("qat_best_{}.safetensors", run.stem), info)?;
            best = Some(Row { name: "QAT-Best".into(), ..row.clone() });
        }
        save_optimizer_state(&state_path, epoch, &qat)?;
        run.rows.retain(|r| r.name != "QAT-Best");
        run.rows.push(row);
        run.rows.extend(best.clone());
        print_table(&run.rows);
        let ips = seen as f64 / t_all.elapsed().as_secs_f64();
        let mut losses = run.meta.get("loss_per_epoch").and_then(|v| v.as_array().cloned()).unwrap_or_default();
        losses.truncate(epoch);
        losses.push(mean_loss.into());
        run.write_report(serde_json::json!({ "calibration_s": calib_s, "qat_images_per_s": ips, "epochs_done": epoch + 1, "loss_per_epoch": losses }))?;
    }
    Ok(())
}

/// Adam's moments and the loss scale after the last finished epoch, for `--resume`.
const OPTIMIZER_STATE: &str = "last_optimizer.safetensors";

fn save_optimizer_state(path: &Path, epoch: usize, qat: &Qat) -> Result<()> {
    let mut tensors: Vec<(String, Tensor)> = qat.optimizer_state().into_iter().map(|(n, t)| (n, t.to_device(Device::Cpu))).collect();
    tensors.push(("epoch".into(), Tensor::from(epoch as i64)));
    crate::util::write_safetensors_atomic(path, &tensors)
}

/// The saved state if it belongs to `epoch`.
fn load_optimizer_state(path: &Path, epoch: usize) -> Option<Vec<(String, Tensor)>> {
    let tensors = Tensor::read_safetensors(path).ok()?;
    let saved_epoch = tensors.iter().find(|(n, _)| n == "epoch")?.1.int64_value(&[]);
    (saved_epoch == epoch as i64).then_some(tensors)
}

/// A u8 (B,3,H,W) batch as float in [0,1] on `device`.
/// (A pinned, asynchronous upload measured no faster, and tch can pin only through
/// libtorch's deprecated `pin_memory(device)`, which warns on every call.)
pub fn batch_tensor(images: &[u8], b: usize, h: usize, w: usize, device: Device) -> Tensor {
    Tensor::from_slice(images).view([b as i64, 3, h as i64, w as i64]).to_device(device).to_kind(Kind::Float) / 255.0
}

thread_local! {
    /// Set while a panic will be turned into an error by the caller (the hook stays quiet).
    pub static PANIC_IS_HANDLED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f`, turning libtorch's CUDA out-of-memory panic into an error that says what to do.
pub fn catch_oom<T>(f: impl FnOnce() -> T) -> Result<T> {
    PANIC_IS_HANDLED.with(|h| h.set(true));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    PANIC_IS_HANDLED.with(|h| h.set(false));
    r.map_err(|p| {
        let msg = p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
        if msg.contains("out of memory") {
            anyhow!("CUDA out of memory: try a smaller --batch-size")
        } else {
            anyhow!("libtorch error: {}", crate::util::torch_error_line(&msg))
        }
    })
}
