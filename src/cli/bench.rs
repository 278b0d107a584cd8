//! `yolo-qat bench`: the numbers docs/perf.md records. Random-weight models from
//! a yaml (or real weights), synthetic inputs resident on the device unless
//! `--data` asks for the real training loader.

use super::common::{default_workers, train_loader};
use super::parse_device;
use super::quantize_args::RecipeArg;
use super::validate;
use crate::cuda::memory::PeakMemory;
use crate::data::config::DataConfig;
use crate::data::train_loader::TrainLoader;
use crate::detector::Detector;
use crate::detector::{load, random};
use crate::model::graph::channels_last;
use crate::model::info::gflops;
use crate::quant::assigner::GtBoxes;
use crate::quant::calibrate::{calibrate, prepare};
use crate::quant::qat::{Qat, Supervision};
use crate::quant::recipe::{QatSettings, Recipe};
use crate::quant::task_loss::gt_boxes;
use crate::quant::train::images_to_tensor;
use crate::quant::CalibMethod;
use crate::util::catch_oom;
use anyhow::{bail, Result};
use std::path::PathBuf;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

#[derive(clap::Args)]
pub struct Args {
    /// `qat` (calibration + QAT steps), `infer` (fp16 forward) or `loader` (the augmented
    /// training loader alone over `--data`, images per second).
    what: String,
    /// Model yaml for random weights (e.g. configs/gelan-c.yaml) …
    #[arg(long)]
    cfg: Option<PathBuf>,
    /// … or real weights.
    #[arg(long)]
    weights: Option<PathBuf>,
    #[arg(long, default_value_t = 640)]
    imgsz: usize,
    #[arg(long, default_value_t = 10)]
    batch_size: usize,
    #[arg(long, default_value_t = 30)]
    iters: usize,
    #[arg(long, default_value_t = 5)]
    warmup: usize,
    #[arg(long, default_value = "cuda:0")]
    device: String,
    /// Also time whole QAT steps fed by the augmented loader over this data set.
    #[arg(long)]
    data: Option<PathBuf>,
    #[arg(long, default_value = super::common::DEFAULT_HYP)]
    hyp: PathBuf,
    #[arg(long, default_value_t = 26)]
    calib_batches: usize,
    /// Loader threads (default: one per core).
    #[arg(long)]
    workers: Option<usize>,
    /// The loader keeps decoded, resized images in memory (`quantize --cache`); one pass
    /// over the data fills it before timing.
    #[arg(long)]
    cache: bool,
    /// Launch every QAT kernel one by one instead of replaying a CUDA graph.
    #[arg(long)]
    no_cuda_graph: bool,
    /// Run in channels-last (NHWC) memory layout: `infer` only when asked, the QAT step
    /// by default where `quantize` does (CUDA with our kernels).
    #[arg(long)]
    channels_last: bool,
    /// Keep the QAT step NCHW.
    #[arg(long)]
    no_channels_last: bool,
    /// ATen's ops (NCHW unless `--channels-last`) instead of our fused CUDA kernels.
    #[arg(long)]
    unfused: bool,
    /// After timing, profile this many QAT steps: share of GPU time per kernel family
    /// and the costliest kernels (0 = off).
    #[arg(long, default_value_t = 0)]
    profile: usize,
    /// Whose QAT step to time: `seed` (layer distillation, fixed ranges; the history in
    /// docs/perf.md) or `default` (task loss on labels, learned ranges, weight average).
    #[arg(long, value_enum, default_value_t = RecipeArg::Seed)]
    recipe: RecipeArg,
}

/// Labels for timing a task-loss step on synthetic images: 8 boxes per image on a 4 × 2 grid,
/// padded to the 32 label slots a recorded step uses.
fn synthetic_labels(batch: usize, imgsz: usize, device: Device) -> GtBoxes {
    let labels: Vec<(usize, usize, [f32; 4])> =
        (0..batch).flat_map(|i| (0..8).map(move |k| (i, k % 3, [((k % 4) as f32 + 0.5) / 4.0, ((k / 4) as f32 + 0.5) / 2.0, 0.15, 0.2]))).collect();
    gt_boxes(&labels, batch, (imgsz as i64, imgsz as i64), LABEL_SLOTS, device)
}

/// Label slots per image of the benchmarked task-loss step (quantize's minimum).
const LABEL_SLOTS: usize = 32;

fn sync(d: Device) {
    if let Device::Cuda(i) = d {
        tch::Cuda::synchronize(i as i64);
    }
}

fn model(a: &Args) -> Result<Detector> {
    match (&a.weights, &a.cfg) {
        (Some(w), _) => load(w),
        (None, Some(c)) => random(c, None),
        _ => bail!("bench: give --cfg (random weights) or --weights"),
    }
}

pub fn run(a: Args) -> Result<()> {
    validate::count("--batch-size", a.batch_size)?;
    validate::count("--iters", a.iters)?;
    validate::count("--calib-batches", a.calib_batches)?;
    if a.what == "loader" {
        return bench_loader(&a);
    }
    let device = parse_device(&a.device)?;
    tch::Cuda::cudnn_set_benchmark(true);
    let mut m = model(&a)?;
    validate::imgsz("--imgsz", a.imgsz, validate::max_stride(&m))?;
    m.to(device, Kind::Float);
    let fwd_gflops = gflops(&m.graph, a.imgsz as i64);
    let x = Tensor::rand([a.batch_size as i64, 3, a.imgsz as i64, a.imgsz as i64], (Kind::Float, device));
    crate::cuda::kernels::set_enabled(!a.unfused);
    let mem = PeakMemory::start();
    crate::cuda::memory::reset_allocator_peak(device);
    let report = match a.what.as_str() {
        "infer" => bench_infer(&m, &x, &a, device, fwd_gflops),
        "qat" => bench_qat(&mut m, &x, &a, device, fwd_gflops)?,
        w => bail!("bench {w}: expected `qat`, `infer` or `loader`"),
    };
    let mut report = report;
    // The caching allocator's own peak: what this process's tensors needed (other processes
    // and the allocator's cache do not count); the device-wide figure is kept for reference.
    let peak = crate::cuda::memory::allocator_peak(device);
    report["allocator_peak_gib"] = serde_json::json!(peak.map(|p| p.allocated_gib()));
    report["allocator_reserved_peak_gib"] = serde_json::json!(peak.map(|p| p.reserved_gib()));
    report["device_used_peak_gib"] = serde_json::json!(mem.as_ref().map(|p| p.peak_gib()));
    report["fused_kernels"] = serde_json::json!(crate::cuda::kernels::available() && !a.unfused && device.is_cuda());
    report["forward_gflops_per_image"] = serde_json::json!(fwd_gflops);
    report["imgsz"] = serde_json::json!(a.imgsz);
    report["batch_size"] = serde_json::json!(a.batch_size);
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// Images per second of the augmented loader alone (`--iters` batches after `--warmup`).
fn bench_loader(a: &Args) -> Result<()> {
    let Some(d) = &a.data else { bail!("bench loader: give --data") };
    let workers = a.workers.unwrap_or_else(default_workers);
    let l = train_loader(&DataConfig::load(d)?, a.imgsz, a.batch_size, super::common::load_hyp(&a.hyp)?, 0, workers, false)?.with_cache(a.cache);
    fill_cache(&l, a.cache);
    let mut batches = l.iter_forever(1);
    batches.by_ref().take(a.warmup).for_each(drop);
    let t = Instant::now();
    let n: usize = batches.take(a.iters).map(|b| b.batch).sum();
    let s = t.elapsed().as_secs_f64();
    let report = serde_json::json!({ "bench": "loader", "workers": workers, "cache": a.cache, "imgsz": a.imgsz, "batch_size": a.batch_size, "images": n, "images_per_s": n as f64 / s, "ms_per_image_per_worker": s * 1e3 * workers as f64 / n as f64 });
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// With the cache on, one pass over the data (epoch 0) so that timed epochs read from it.
fn fill_cache(l: &TrainLoader, on: bool) {
    if on {
        l.iter(0).for_each(drop);
    }
}

fn bench_infer(m: &Detector, x: &Tensor, a: &Args, device: Device, gf: f64) -> serde_json::Value {
    let mut h = m.graph.deep_clone();
    h.to(device, Kind::Half);
    let mut xh = x.to_kind(Kind::Half);
    if a.channels_last {
        h.weights_channels_last();
        xh = channels_last(&xh);
    }
    let run = || tch::no_grad(|| h.forward(&xh));
    for _ in 0..a.warmup {
        let _ = run();
    }
    sync(device);
    let t = Instant::now();
    for _ in 0..a.iters {
        let _ = run();
    }
    sync(device);
    let s = t.elapsed().as_secs_f64() / a.iters as f64;
    let ms_per_img = s * 1e3 / a.batch_size as f64;
    serde_json::json!({ "bench": "infer", "channels_last": a.channels_last, "ms_per_image": ms_per_img, "images_per_s": a.batch_size as f64 / s, "tflops": gf * a.batch_size as f64 / s / 1e3 })
}

/// Places quantizers and calibrates them on `--calib-batches` batches (the loader's, or
/// random images like `x`); returns the seconds it took.
fn calibrate_for_bench(m: &mut Detector, loader: Option<&TrainLoader>, x: &Tensor, a: &Args, device: Device) -> Result<f64> {
    prepare(m, &[], CalibMethod::Mse)?;
    sync(device);
    let t = Instant::now();
    match loader {
        Some(l) => {
            calibrate(m, l.iter_forever(0).take(a.calib_batches).map(|b| images_to_tensor(&b.images, b.batch, b.size, b.size, device)), CalibMethod::Mse)?
        }
        None => calibrate(m, (0..a.calib_batches).map(|_| x.rand_like()), CalibMethod::Mse)?,
    };
    Ok(t.elapsed().as_secs_f64())
}

fn bench_qat(m: &mut Detector, x: &Tensor, a: &Args, device: Device, gf: f64) -> Result<serde_json::Value> {
    let loader = match &a.data {
        Some(d) => {
            let data = DataConfig::load(d)?;
            let l = train_loader(&data, a.imgsz, a.batch_size, super::common::load_hyp(&a.hyp)?, 0, a.workers.unwrap_or_else(default_workers), false)?;
            Some(l.with_cache(a.cache))
        }
        None => None,
    };
    let calib_s = calibrate_for_bench(m, loader.as_ref(), x, a, device)?;
    let (mut qat, gt) = student(m, a, device);
    let gt = gt.as_ref();
    let mut graphed = false;
    if device.is_cuda() && !a.no_cuda_graph {
        let t = Instant::now();
        catch_oom(|| qat.capture(m, x, gt))??;
        graphed = true;
        eprintln!("captured the QAT step as a CUDA graph in {:.1} s", t.elapsed().as_secs_f64());
    }
    for _ in 0..a.warmup {
        let _ = qat.step_with(m, x, gt, 1e-6);
    }
    sync(device);
    let fused_ops = crate::cuda::kernels::applied();
    // The steady state's own peak (calibration and cuDNN's algorithm search excluded).
    crate::cuda::memory::reset_allocator_peak(device);
    let t = Instant::now();
    for _ in 0..a.iters {
        let _ = qat.step_with(m, x, gt, 1e-6);
    }
    sync(device);
    let step_s = t.elapsed().as_secs_f64() / a.iters as f64;
    let step_peak = crate::cuda::memory::allocator_peak(device);
    let ips = a.batch_size as f64 / step_s;
    let mut out = serde_json::json!({
        "bench": "qat", "objective": qat.objective().kind.name(), "cuda_graph": graphed, "channels_last": qat.channels_last(), "calibration_s": calib_s, "calibration_batches": a.calib_batches,
        "step_ms": step_s * 1e3, "images_per_s": ips,
        "tflops": 4.0 * gf * ips / 1e3,
        "fused_ops_before_timing": fused_ops,
        "step_allocator_peak_gib": step_peak.map(|p| p.allocated_gib()),
    });
    if a.profile > 0 {
        out["profile"] = profile_steps(a.profile, || {
            let _ = qat.step_with(m, x, gt, 1e-6);
        })?;
    }
    if let Some(l) = loader {
        fill_cache(&l, a.cache);
        let fed = with_loader(&mut qat, m, &l, gt.is_some(), a, device);
        out["images_per_s_with_loader"] = fed["images_per_s"].clone();
        out["gpu_share"] = serde_json::json!(fed["images_per_s"].as_f64().unwrap_or(0.0) / ips);
        out["with_loader"] = fed;
    }
    Ok(out)
}

/// The QAT student of `--recipe`'s settings, and synthetic labels when its objective needs them.
fn student(m: &mut Detector, a: &Args, device: Device) -> (Qat, Option<GtBoxes>) {
    let settings = QatSettings::of(if a.recipe == RecipeArg::Default { Recipe::Default } else { Recipe::Seed });
    let mut qat = Qat::new(m, None, Supervision::recipe(1), device.is_cuda());
    qat.set_objective(m, settings.objective);
    if let Some(lr) = settings.learn_amax {
        qat.learn_amax(m, lr);
    }
    if let Some((decay, tau)) = settings.ema {
        qat.enable_ema(decay, tau);
    }
    qat.set_channels_last(m, a.channels_last || super::quantize::channels_last_step(device, a.unfused || a.no_channels_last));
    let gt = settings.objective.uses_labels().then(|| synthetic_labels(a.batch_size, a.imgsz, device));
    (qat, gt)
}

/// Whole steps fed by the augmented loader (its labels when `labels`): images per second, and
/// where the main thread's time went (waiting for batches, uploading them, launching steps).
fn with_loader(qat: &mut Qat, m: &mut Detector, l: &TrainLoader, labels: bool, a: &Args, device: Device) -> serde_json::Value {
    let t = Instant::now();
    let (mut n, mut wait, mut upload) = (0, 0.0, 0.0);
    let mut batches = l.iter_forever(1).take(a.iters);
    loop {
        let t0 = Instant::now();
        let Some(b) = batches.next() else { break };
        let t1 = Instant::now();
        let xb = images_to_tensor(&b.images, b.batch, b.size, b.size, device);
        let gb = labels.then(|| gt_boxes(&b.labels, b.batch, (b.size as i64, b.size as i64), LABEL_SLOTS, device));
        let t2 = Instant::now();
        let _ = qat.step_with(m, &xb, gb.as_ref(), 1e-6);
        n += b.batch;
        wait += (t1 - t0).as_secs_f64();
        upload += (t2 - t1).as_secs_f64();
    }
    sync(device);
    let s = t.elapsed().as_secs_f64();
    let per_batch_ms = |v: f64| v * 1e3 / a.iters as f64;
    serde_json::json!({ "images_per_s": n as f64 / s, "ms_per_batch": per_batch_ms(s), "wait_ms": per_batch_ms(wait), "upload_ms": per_batch_ms(upload), "step_call_ms": per_batch_ms(s - wait - upload) })
}

/// GPU time per kernel family over `steps` runs of `step`, and the 30 costliest kernels
/// (ms and launches per step).
fn profile_steps(steps: usize, mut step: impl FnMut()) -> Result<serde_json::Value> {
    use crate::cuda::kernel_profile::{family, profile};
    use std::collections::BTreeMap;
    let kernels = profile(|| {
        for _ in 0..steps {
            step();
        }
        if tch::Cuda::is_available() {
            tch::Cuda::synchronize(0);
        }
    })?;
    let total: u64 = kernels.iter().map(|k| k.ns).sum();
    let mut families: BTreeMap<&str, u64> = BTreeMap::new();
    let mut by_name: BTreeMap<&str, (u64, usize)> = BTreeMap::new();
    for k in &kernels {
        *families.entry(family(&k.name)).or_default() += k.ns;
        let e = by_name.entry(&k.name).or_default();
        e.0 += k.ns;
        e.1 += 1;
    }
    let mut top: Vec<(&str, (u64, usize))> = by_name.into_iter().collect();
    top.sort_by_key(|&(_, (ns, _))| std::cmp::Reverse(ns));
    let per_step_ms = |ns: u64| ns as f64 / 1e6 / steps as f64;
    Ok(serde_json::json!({
        "steps": steps,
        "kernels_per_step": kernels.len() as f64 / steps as f64,
        "gpu_ms_per_step": per_step_ms(total),
        "share": families.iter().map(|(f, &ns)| (f.to_string(), serde_json::json!(ns as f64 / total.max(1) as f64))).collect::<serde_json::Map<_, _>>(),
        "top_kernels_ms_launches_per_step": top
            .iter()
            .take(30)
            .map(|&(n, (ns, count))| serde_json::json!([n.chars().take(160).collect::<String>(), per_step_ms(ns), count as f64 / steps as f64]))
            .collect::<Vec<_>>(),
    }))
}
