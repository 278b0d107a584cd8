//! `yolo-qat quantize`: calibrate (PTQ), then finetune (QAT), evaluating and saving
//! after each stage; with `--max-ap-drop`, move the most sensitive layers back to
//! floating point until the INT8 model is within that AP of the FP model.

use super::common::{eval_set, open_fp, print_table, train_loader, Row};
use super::parse_device;
pub use super::quantize_args::Args;
use super::validate;
use crate::data::config::DataConfig;
use crate::data::hyp::Hyp;
use crate::data::train_loader::{TrainBatch, TrainLoader};
use crate::data::val_set::ValSet;
use crate::detector::epoch_checkpoints::{self, new_run_id, RUN_ID_KEY};
use crate::detector::load;
use crate::detector::Detector;
use crate::eval::validate::{evaluate, EvalOptions};
use crate::model::graph::Graph;
use crate::model::info::layer_gflops;
use crate::plots::results::{write as write_results, EpochRecord, Level};
use crate::quant::calibrate::{calibrate, prepare_with, PrepareOptions};
use crate::quant::fp_fallback::{flop_share, next_layer, FallbackReport, FallbackRound};
use crate::quant::qat::{Qat, Supervision};
use crate::quant::recipe::QatSettings;
use crate::quant::sensitivity::analyze;
use crate::quant::state::set_layer_enabled;
use crate::quant::train::{images_to_tensor, Batch, Trainer};
use crate::quant::train_state;
use crate::quant::tying::TieScope;
use crate::quant::CalibMethod;
use crate::util::RunLock;
use crate::util::{increment_dir, write_atomic};
use anyhow::{anyhow, bail, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tch::{Device, Kind};

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

/// One quantize run: its folder, its rows, what it shares between stages.
struct Run {
    dir: PathBuf,
    stem: String,
    rows: Vec<Row>,
    device: Device,
    settings: QatSettings,
    loader: TrainLoader,
    val: ValSet,
    eopts: EvalOptions,
    stop: Arc<AtomicBool>,
    /// The report's `run` object; `write_report` adds to it.
    meta: serde_json::Map<String, serde_json::Value>,
    /// Epochs trained so far, across fallback rounds (names the checkpoints).
    next_epoch: usize,
    t_start: Instant,
    images: usize,
    /// Write `results.csv` / `results.png` after every epoch.
    plots: bool,
}

impl Run {
    /// Saves `model` under `weights/` with `info`, tagged with this run's id (what `--resume`
    /// trusts).
    fn save(&self, model: &Detector, file: &str, mut info: serde_json::Value) -> Result<PathBuf> {
        if let (Some(m), Some(id)) = (info.as_object_mut(), self.meta.get(RUN_ID_KEY)) {
            m.insert(RUN_ID_KEY.into(), id.clone());
        }
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

    fn best(&self) -> Option<&Row> {
        self.rows.iter().find(|r| r.name == "QAT-Best")
    }

    fn origin(&self) -> Option<f64> {
        self.rows.iter().find(|r| r.name == "Origin").map(|r| r.map)
    }

    fn batches(&self, epoch: usize) -> impl Iterator<Item = Batch> + '_ {
        let device = self.device;
        self.loader.iter_forever(1 + epoch as u64).map(move |b: TrainBatch| Batch {
            x: images_to_tensor(&b.images, b.batch, b.size, b.size, device),
            labels: b.labels,
            masks: b.masks,
            mask_size: b.mask_size,
        })
    }
}

pub fn run(a: Args) -> Result<()> {
    let settings = a.settings()?;
    let device = parse_device(&a.device)?;
    let method = CalibMethod::parse(&a.calib_method)?;
    let ties = TieScope::parse(&a.ties)?;
    let (mut model, data, hyp) = open_fp(&a.weights, &a.data, &a.hyp)?;
    let settings = segmentation_objective(settings, &model);
    validate::imgsz("--imgsz", a.imgsz, validate::max_stride(&model))?;
    let mut skip = parse_layers(&a.skip_layers, model.graph.layers.len())?;
    if a.no_last_layer {
        skip.push(model.graph.layers.len() - 1);
    }
    if a.resume {
        let dir = a.project.join(&a.name);
        let _lock = RunLock::acquire(&dir)?;
        return resume(&a, settings, model, dir, &data, hyp, device);
    }
    let dir = increment_dir(&a.project, &a.name, a.exist_ok)?;
    let _lock = RunLock::acquire(&dir)?;
    let masks = model.graph.is_segmentation() && settings.objective.uses_labels();
    let mut run = open_run(&a, settings, dir, &data, hyp, device, masks)?;
    run.meta.insert(RUN_ID_KEY.into(), new_run_id().into());
    tch::manual_seed(a.seed as i64);
    model.to(device, Kind::Float);
    println!("{}: {} layers, quantizing on {device:?}, results in {}", a.weights.display(), model.graph.layers.len(), run.dir.display());
    describe(&a, &settings);
    if !a.no_eval_origin {
        let r = evaluate(&model, &run.val, &run.eopts.in_dir(&run.dir.join("eval_origin")))?;
        run.rows.push(Row::new("Origin", &r));
    }
    let t0 = Instant::now();
    for line in prepare_with(&mut model, &PrepareOptions { skip_layers: skip.clone(), method, ties, dfl_unit_range: !a.calibrate_dfl })? {
        println!("{line}");
    }
    let calib = run.loader.iter_forever(0).take(a.calib_batches).map(|b| images_to_tensor(&b.images, b.batch, b.size, b.size, device));
    let missing = calibrate(&mut model, calib, method)?;
    let calib_s = t0.elapsed().as_secs_f64();
    let quantizers = model.quant.as_ref().map_or(0, |q| q.table.len());
    println!("calibrated {quantizers} quantizers on {} batches in {calib_s:.1} s ({missing} saw no data)", a.calib_batches);
    let mut ptq_ap = None;
    if !a.no_eval_ptq {
        let r = evaluate(&model, &run.val, &run.eopts.in_dir(&run.dir.join("eval_ptq")))?;
        ptq_ap = Some(r.map);
        run.rows.push(Row::new("PTQ", &r));
    }
    let ptq_name = match ptq_ap {
        Some(ap) => format!("ptq_ap_{ap:.4}_{}.safetensors", run.stem),
        None => format!("ptq_{}.safetensors", run.stem),
    };
    run.save(&model, &ptq_name, serde_json::json!({ "stage": "ptq", "ap": ptq_ap }))?;
    print_table(&run.rows);
    run.write_report(
        serde_json::json!({ "calibration_s": calib_s, "skip_layers": skip, "calib_method": a.calib_method, "ties": a.ties, "calibrate_dfl": a.calibrate_dfl }),
    )?;
    // The FP weights the fallback's teacher needs, before QAT changes them.
    let fp_graph = (a.max_ap_drop.is_some() && settings.objective.uses_teacher()).then(|| model.graph.deep_clone());
    let epochs = settings.epochs;
    qat_epochs(&a, &mut run, &mut model, None, epochs, None)?;
    if let Some(drop) = a.max_ap_drop {
        fallback(&a, &mut run, fp_graph, drop)?;
    }
    Ok(())
}

/// Segmentation models: the task loss carries the mask term (upstream
/// `utils/segment/loss_tal.py`), so the recipes apply as they are (docs/results.md: on
/// gelan-t-dseg the default recipe's task loss beats distillation by 0.05 box / 0.05 mask AP).
fn segmentation_objective(s: QatSettings, model: &Detector) -> QatSettings {
    if model.graph.is_segmentation() && s.objective.uses_labels() {
        println!("segmentation model: the task loss includes the mask term (polygon labels needed)");
    }
    s
}

/// `masks`: the objective is the segmentation task loss (the loader draws each label's mask).
fn open_run(a: &Args, settings: QatSettings, dir: PathBuf, data: &DataConfig, hyp: Hyp, device: Device, masks: bool) -> Result<Run> {
    let stem = a.weights.file_stem().map_or("model".into(), |s| s.to_string_lossy().into_owned());
    let workers = a.workers.unwrap_or_else(super::common::default_workers);
    let loader = train_loader(data, a.imgsz, a.batch_size, hyp, a.seed, workers, masks)?.with_cache(a.cache);
    let val = eval_set(data, a.imgsz, a.batch_size)?;
    let eopts = EvalOptions { half: device.is_cuda(), save_json: a.eval_pycocotools, ..EvalOptions::new(device) };
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    let _ = ctrlc::set_handler(move || s2.store(true, Ordering::SeqCst));
    let mut meta = serde_json::Map::new();
    meta.insert("settings".into(), settings_json(a, &settings));
    Ok(Run {
        dir,
        stem,
        rows: Vec::new(),
        device,
        settings,
        loader,
        val,
        eopts,
        stop,
        meta,
        next_epoch: 0,
        t_start: Instant::now(),
        images: 0,
        plots: !a.noplots,
    })
}

fn settings_json(a: &Args, s: &QatSettings) -> serde_json::Value {
    serde_json::json!({
        "recipe": a.recipe().name(),
        "loss": s.objective.kind.name(),
        "task_weight": s.objective.task_weight,
        "distill_weight": s.objective.distill_weight,
        "lr": s.schedule.base,
        "lr_schedule": format!("{:?}", s.schedule.shape).to_lowercase(),
        "lrf": s.schedule.final_frac,
        "warmup_iters": s.schedule.warmup_iters,
        "epochs": s.epochs,
        "iters": s.iters,
        "learn_amax": s.learn_amax,
        "ema": s.ema.map(|(d, t)| serde_json::json!({ "decay": d, "tau": t })),
        "supervise_head": a.supervise_head,
        "max_ap_drop": a.max_ap_drop,
        "batch_size": a.batch_size,
        "imgsz": a.imgsz,
    })
}

fn describe(a: &Args, s: &QatSettings) {
    let ema = s.ema.map_or("off".to_string(), |(d, t)| format!("decay {d} tau {t}"));
    let amax = s.learn_amax.map_or("calibrated".to_string(), |lr| format!("learned (lr {lr:e})"));
    println!(
        "QAT ({} recipe): loss {}, Adam lr {:e} ({:?}), {} epochs × {} iterations, activation ranges {amax}, weight average {ema}",
        a.recipe().name(),
        s.objective.kind.name(),
        s.schedule.base,
        s.schedule.shape,
        s.epochs,
        s.iters
    );
}

/// `--resume`: the last finished epoch's checkpoint becomes the student, the FP model
/// the teacher again; master weights, Adam, the loss scale, learned ranges and the weight
/// average continue from their saved state.
fn resume(a: &Args, settings: QatSettings, mut fp: Detector, dir: PathBuf, data: &DataConfig, hyp: Hyp, device: Device) -> Result<()> {
    let (epoch, path) = last_epoch(&dir)?;
    if epoch + 1 >= settings.epochs {
        bail!("--resume: all {} epochs of {} are finished", settings.epochs, dir.display());
    }
    let mut student = load(&path)?;
    student.to(device, Kind::Float);
    fp.to(device, Kind::Float);
    let report: serde_json::Value = std::fs::read_to_string(dir.join("report.json")).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default();
    let masks = fp.graph.is_segmentation() && settings.objective.uses_labels();
    let mut run = open_run(a, settings, dir, data, hyp, device, masks)?;
    run.rows = serde_json::from_value(report["rows"].clone()).unwrap_or_default();
    // Rows of epochs after the checkpoint (an interrupted run) are redone.
    run.rows.retain(|r| r.name.strip_prefix("QAT-").and_then(|e| e.parse::<usize>().ok()).is_none_or(|e| e <= epoch));
    if let Some(m) = report["run"].as_object() {
        run.meta = m.clone();
    }
    run.next_epoch = epoch + 1;
    println!("resuming {} after epoch {epoch} from {}", run.dir.display(), path.display());
    let mut teacher = fp.graph;
    if device.is_cuda() {
        teacher.to(device, Kind::Half);
    }
    qat_epochs(a, &mut run, &mut student, Some(teacher), settings.epochs - epoch - 1, Some(epoch)).map(|_| ())
}

/// The highest finished epoch's checkpoint of this run (its id in the report), leftovers
/// of interrupted writes removed, other runs' files skipped with a word.
fn last_epoch(dir: &Path) -> Result<(usize, PathBuf)> {
    let report: serde_json::Value = std::fs::read_to_string(dir.join("report.json")).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default();
    let Some(id) = report["run"][RUN_ID_KEY].as_str() else {
        bail!("--resume: {} has no report.json with a run id (not a finished epoch of a yolo-qat quantize run)", dir.display());
    };
    let weights = dir.join("weights");
    let found = epoch_checkpoints::scan(&weights, id)?;
    for why in &found.skipped {
        println!("--resume: skipped {why}");
    }
    if !found.removed_tmp.is_empty() {
        println!("--resume: removed {} unfinished file(s) in {}", found.removed_tmp.len(), weights.display());
    }
    let last = found.last().ok_or_else(|| anyhow!("--resume: no finished QAT epoch of this run in {}", weights.display()))?;
    Ok((last.epoch, last.path.clone()))
}

/// A QAT student for `model` under the run's settings (`teacher`: the FP graph to imitate,
/// default a copy of `model` as it is now).
fn new_qat(a: &Args, run: &Run, model: &mut Detector, teacher: Option<Graph>) -> Qat {
    let s = &run.settings;
    let mut qat = Qat::new(model, teacher, Supervision { stride: a.supervision_stride, head: a.supervise_head }, run.device.is_cuda());
    qat.set_objective(model, s.objective);
    if let Some(lr) = s.learn_amax {
        qat.learn_amax(model, lr);
    }
    if let Some((decay, tau)) = s.ema {
        qat.enable_ema(decay, tau);
    }
    qat.set_channels_last(model, channels_last_step(run.device, a.no_fused_kernels || a.no_channels_last));
    qat
}

/// Whether the QAT step runs channels-last: on CUDA with our kernels (ATen's channels-last
/// 2x2 average pool alone would cost more than the layout saves), unless turned off.
pub fn channels_last_step(device: tch::Device, off: bool) -> bool {
    device.is_cuda() && crate::cuda::kernels::available() && !off
}

/// Trains `epochs` epochs of QAT on `model`, evaluating and saving after each; `resumed`:
/// the finished epoch whose optimizer state to restore. Returns the best AP of these epochs.
fn qat_epochs(a: &Args, run: &mut Run, model: &mut Detector, teacher: Option<Graph>, epochs: usize, resumed: Option<usize>) -> Result<f64> {
    let mut qat = new_qat(a, run, model, teacher);
    let state_path = run.dir.join("weights").join(train_state::FILE_NAME);
    if let Some(e) = resumed {
        restore_optimizer(&mut qat, &state_path, e)?;
    }
    let s = run.settings;
    crate::cuda::kernels::set_enabled(!a.no_fused_kernels);
    let want_graph = run.device.is_cuda() && !a.no_cuda_graph && crate::cuda::graph::CudaGraph::available();
    // The schedule runs over this call's epochs (a resumed run continues the original's).
    let (first, total) = match resumed {
        Some(e) => (e + 1, s.epochs),
        None => (0, epochs),
    };
    let mut trainer = Trainer::new(s.schedule, total, s.iters, want_graph);
    let mut best = f64::NEG_INFINITY;
    let last = run.next_epoch + epochs - 1;
    for k in first..first + epochs {
        let epoch = run.next_epoch;
        let bar = epoch_bar(s.iters, epoch, last);
        let stats = trainer
            .epoch(&mut qat, model, run.batches(epoch), k, &run.stop, &bar)
            .map_err(|e| anyhow!("{e:#}; finished epochs are saved in {}", run.dir.display()))?;
        bar.finish();
        run.images += stats.images;
        println!(
            "epoch {epoch}: mean loss {:.5} (box {:.4} cls {:.4} dfl {:.4} mask {:.4} distill {:.4}), lr {:.1e}",
            stats.loss, stats.parts[0], stats.parts[1], stats.parts[2], stats.parts[3], stats.parts[4], stats.lr
        );
        qat.bind_for_eval(model);
        let ap = finish_epoch(run, model, epoch, &stats)?;
        qat.bind_master(model);
        train_state::save(&state_path, epoch, &qat)?;
        best = best.max(ap);
        run.next_epoch += 1;
    }
    Ok(best)
}

fn epoch_bar(iters: usize, epoch: usize, last: usize) -> ProgressBar {
    let bar = ProgressBar::new(iters as u64);
    bar.set_style(ProgressStyle::with_template("QAT {prefix} {bar:30} {pos}/{len} {msg} [{elapsed}<{eta}]").unwrap_or_else(|_| ProgressStyle::default_bar()));
    bar.set_prefix(format!("epoch {epoch} (to {last})"));
    bar
}

/// Evaluates and saves the epoch's model, keeps the best, updates the table and the report.
fn finish_epoch(run: &mut Run, model: &Detector, epoch: usize, stats: &crate::quant::train::EpochStats) -> Result<f64> {
    let r = evaluate(model, &run.val, &run.eopts.in_dir(&run.dir.join(format!("eval_qat_ep{epoch}"))))?;
    let row = Row::new(&format!("QAT-{epoch}"), &r);
    let skip = model.quant.as_ref().map(|q| q.skip_layers.clone()).unwrap_or_default();
    let info = serde_json::json!({ "stage": "qat", "epoch": epoch, "ap": r.map, "loss": stats.loss, "fp_layers": skip });
    run.save(model, &format!("qat_ep_{epoch}_ap_{:.4}_{}.safetensors", r.map, run.stem), info.clone())?;
    let mut best = run.best().cloned();
    if r.map.is_finite() && best.as_ref().is_none_or(|b| r.map > b.map) {
        run.save(model, &format!("qat_best_{}.safetensors", run.stem), info)?;
        best = Some(Row { name: "QAT-Best".into(), ..row.clone() });
    }
    run.rows.retain(|r| r.name != "QAT-Best");
    run.rows.push(row);
    run.rows.extend(best);
    print_table(&run.rows);
    let ips = run.images as f64 / run.t_start.elapsed().as_secs_f64();
    let mut epochs = run.meta.get("epochs").and_then(|v| v.as_array().cloned()).unwrap_or_default();
    epochs.truncate(epoch);
    epochs.push(serde_json::json!({
        "epoch": epoch, "loss": stats.loss, "box": stats.parts[0], "cls": stats.parts[1], "dfl": stats.parts[2], "mask": stats.parts[3], "distill": stats.parts[4],
        "lr": stats.lr, "ap": r.map, "ap50": r.map50, "precision": r.precision, "recall": r.recall
    }));
    let losses: Vec<f64> = epochs.iter().filter_map(|e| e["loss"].as_f64()).collect();
    run.write_report(serde_json::json!({ "qat_images_per_s": ips, "epochs_done": epoch + 1, "loss_per_epoch": losses, "epochs": epochs, "wall_s": run.t_start.elapsed().as_secs_f64() }))?;
    if run.plots {
        plot_results(run, &epochs)?;
    }
    Ok(r.map)
}

/// `results.csv` and `results.png` from the report's epochs (a resumed run's too).
fn plot_results(run: &Run, epochs: &[serde_json::Value]) -> Result<()> {
    let f = |e: &serde_json::Value, k: &str| e[k].as_f64().unwrap_or(0.0);
    let records: Vec<EpochRecord> = epochs
        .iter()
        .map(|e| EpochRecord {
            epoch: e["epoch"].as_u64().unwrap_or(0) as usize,
            losses: ["loss", "box", "cls", "dfl", "distill"].iter().map(|k| (k.to_string(), f(e, k))).collect(),
            lr: f(e, "lr"),
            ap: f(e, "ap"),
            ap50: f(e, "ap50"),
            precision: f(e, "precision"),
            recall: f(e, "recall"),
        })
        .collect();
    let level = |name: &str| run.rows.iter().find(|r| r.name == name).map(|r| Level { ap: r.map, ap50: r.map50 });
    write_results(&run.dir, &records, level("Origin"), level("PTQ"))
}

/// `--max-ap-drop`: from the best QAT model, the most sensitive INT8 layer goes back to
/// floating point and QAT continues, until the best AP reaches `Origin − drop`.
fn fallback(a: &Args, run: &mut Run, fp_graph: Option<Graph>, drop: f64) -> Result<()> {
    let origin = run.origin().ok_or_else(|| anyhow!("--max-ap-drop needs the Origin AP"))?;
    let target = origin - drop;
    let mut report = FallbackReport { target_ap: target, fp_layers: Vec::new(), fp_flop_share: 0.0, met: false, rounds: Vec::new() };
    let best_path = run.dir.join("weights").join(format!("qat_best_{}.safetensors", run.stem));
    let mut model = load(&best_path)?;
    model.to(run.device, Kind::Float);
    let flops = layer_gflops(&model.graph, a.imgsz as i64);
    let mut best = run.best().map_or(f64::NEG_INFINITY, |r| r.map);
    if best < target {
        println!("QAT-Best AP {best:.4} < Origin {origin:.4} − {drop}: measuring each layer's sensitivity");
        let mut opts = run.eopts.clone();
        opts.progress = false;
        opts.out_dir = None;
        let val = &run.val;
        let sens = analyze(&mut model, |m, name| {
            let r = evaluate(m, val, &opts)?;
            println!("  {name:<10} AP {:.4}", r.map);
            Ok((r.map, r.map50))
        })?;
        write_atomic(&run.dir.join("sensitivity.json"), serde_json::to_string_pretty(&sens)?.as_bytes())?;
        while best < target {
            let Some(next) = next_layer(&sens.layers, &report.fp_layers) else { break };
            let layer: usize = next.layer.trim_start_matches("model.").parse()?;
            println!("keeping {} in floating point (+{:.4} AP alone) and finetuning {} epochs", next.layer, next.gain, a.recover_epochs);
            report.fp_layers.push(next.layer.clone());
            set_layer_enabled(&mut model.graph, layer, false);
            if let Some(q) = model.quant.as_mut() {
                q.skip_layers.push(layer);
            }
            let teacher = fp_graph.as_ref().map(Graph::deep_clone);
            let round_best = qat_epochs(a, run, &mut model, teacher, a.recover_epochs, None)?;
            best = best.max(round_best);
            report.rounds.push(FallbackRound { added: next.layer.clone(), best_ap: round_best });
        }
    }
    let idx: Vec<usize> = report.fp_layers.iter().filter_map(|l| l.trim_start_matches("model.").parse().ok()).collect();
    report.fp_flop_share = flop_share(&flops, &idx);
    report.met = best >= target;
    let verdict = if report.met { "met" } else { "NOT met" };
    println!(
        "accuracy target AP ≥ {target:.4}: {verdict} (best {best:.4}); layers in floating point: {} ({:.1} % of the conv FLOPs)",
        if idx.is_empty() { "none".to_string() } else { report.fp_layers.join(", ") },
        100.0 * report.fp_flop_share
    );
    run.write_report(serde_json::json!({ "accuracy_target": report }))
}

fn restore_optimizer(qat: &mut Qat, path: &Path, epoch: usize) -> Result<()> {
    if train_state::restore(qat, path, epoch)? {
        println!("optimizer state of epoch {epoch} restored from {}", path.display());
    } else {
        println!("no optimizer state of epoch {epoch} in {}: Adam starts afresh", path.display());
    }
    Ok(())
}
