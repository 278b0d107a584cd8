//! The validation loop (upstream `val.py`): batches from the rectangular val set, model
//! inference (fp16 on CUDA), candidate filtering on the device, NMS and
//! matching on the CPU in parallel, then upstream's metrics.

use super::coco_json::{write_coco_json, CocoImage};
use super::confusion::ConfusionMatrix;
use super::masks::{label_masks, mask_iou, predicted_masks};
use super::matching::{correct_from_iou, process_batch, to_original_space, NUM_IOU};
use super::metrics::{EvalStats, ValMetrics};
use super::nms::{non_max_suppression_indexed, Detection, NmsConfig};
use super::samples::{sample_batch, SampleBatch, SAMPLE_BATCHES};
use crate::data::val_set::{ValBatch, ValSet};
use crate::detector::Detector;
use crate::progress::Progress;
use anyhow::Result;
use rayon::prelude::*;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// segment/val.py's default NMS IoU threshold.
pub const SEG_IOU_THRES: f64 = 0.6;

#[derive(Clone, Debug)]
pub struct EvalOptions {
    pub device: Device,
    /// fp16 inference (val.py's default on CUDA).
    pub half: bool,
    pub nms: NmsConfig,
    /// NMS IoU threshold for segmentation models (segment/val.py's default 0.6; val.py's is 0.7).
    pub seg_iou_thres: f64,
    /// Write COCO `annotations.json` / `predictions.json` into `out_dir`.
    pub save_json: bool,
    pub out_dir: Option<PathBuf>,
    pub progress: bool,
    /// Gather what the pictures need: the confusion matrix and the first batches.
    pub plots: bool,
}

impl EvalOptions {
    /// The image size and batch size are the validation set's ([`ValSet`](crate::data::val_set::ValSet)).
    pub fn new(device: Device) -> Self {
        EvalOptions {
            device,
            half: device.is_cuda(),
            nms: NmsConfig::default(),
            seg_iou_thres: SEG_IOU_THRES,
            save_json: false,
            out_dir: None,
            progress: true,
            plots: false,
        }
    }

    pub fn in_dir(&self, dir: &std::path::Path) -> Self {
        EvalOptions { out_dir: Some(dir.to_path_buf()), ..self.clone() }
    }
}

/// Per-image milliseconds, as val.py prints them.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Speed {
    pub preprocess: f64,
    pub inference: f64,
    pub nms: f64,
}

#[derive(Clone, Debug)]
pub struct EvalResult {
    /// Box metrics (the only ones for detection models).
    pub metrics: ValMetrics,
    /// Segmentation models: mask metrics (segment/val.py's `Mask(P R mAP50 mAP50-95)`).
    pub mask: Option<ValMetrics>,
    pub speed: Speed,
    pub wall_s: f64,
    /// With `EvalOptions::plots`: val.py's confusion matrix and sampled batches.
    pub confusion: Option<ConfusionMatrix>,
    pub samples: Vec<SampleBatch>,
}

impl std::ops::Deref for EvalResult {
    type Target = ValMetrics;
    fn deref(&self) -> &ValMetrics {
        &self.metrics
    }
}

/// Anything that maps a (B,3,H,W) float batch in [0,1] to (B, 4+nc, A), or, for
/// segmentation models, to (B, 4+nc+nm, A) and the prototypes (B, nm, H/4, W/4).
pub trait Infer: Sync {
    fn infer(&self, x: &Tensor) -> Result<Tensor>;
    fn names(&self) -> &[String];
    fn infer_with_protos(&self, x: &Tensor) -> Result<(Tensor, Option<Tensor>)> {
        Ok((self.infer(x)?, None))
    }
}

/// A detector prepared for inference: an fp16 copy when asked.
struct Prepared<'a> {
    model: &'a Detector,
    half: Option<Detector>,
}

impl Infer for Prepared<'_> {
    fn infer(&self, x: &Tensor) -> Result<Tensor> {
        let m = self.half.as_ref().unwrap_or(self.model);
        Ok(tch::no_grad(|| m.forward(x)))
    }
    fn names(&self) -> &[String] {
        &self.model.names
    }
    fn infer_with_protos(&self, x: &Tensor) -> Result<(Tensor, Option<Tensor>)> {
        let m = self.half.as_ref().unwrap_or(self.model);
        let g = &m.graph;
        match g.proto {
            Some(p) => {
                let mut vals = tch::no_grad(|| m.run(x, &[g.output, p]));
                Ok((vals.take(g.output), Some(vals.take(p))))
            }
            None => Ok((self.infer(x)?, None)),
        }
    }
}

// tch tensors are reference-counted handles; inference never mutates the model.
unsafe impl Sync for Prepared<'_> {}

fn half_copy(model: &Detector) -> Detector {
    let mut graph = model.graph.deep_clone();
    graph.to(graph_device(model), Kind::Half);
    let quant = model.quant.as_ref().map(|q| q.deep_clone());
    Detector { cfg: model.cfg.clone(), names: model.names.clone(), graph, quant, source: model.source.clone() }
}

fn graph_device(model: &Detector) -> Device {
    model.graph.convs().next().map_or(Device::Cpu, |(_, c)| c.weight.device())
}

/// Evaluates a model (already on `opts.device`) on `set`.
pub fn evaluate(model: &Detector, set: &ValSet, opts: &EvalOptions) -> Result<EvalResult> {
    evaluate_with(&prepare(model, opts.half), set, opts)
}

/// A model ready for `Infer` (an fp16 copy with `half`), e.g. for `predict`.
pub fn prepare(model: &Detector, half: bool) -> impl Infer + '_ {
    Prepared { model, half: half.then(|| half_copy(model)) }
}

pub fn evaluate_with(m: &dyn Infer, set: &ValSet, opts: &EvalOptions) -> Result<EvalResult> {
    let start = Instant::now();
    let kind = if opts.half { Kind::Half } else { Kind::Float };
    let mut bar = Progress::maybe(opts.progress, "eval", set.num_batches());
    let mut stats = EvalStats::default();
    let mut mask_stats: Option<EvalStats> = None;
    let mut confusion = opts.plots.then(|| ConfusionMatrix::new(m.names().len()));
    let mut samples = Vec::new();
    let mut coco = Vec::new();
    let (mut t_pre, mut t_inf, mut t_nms) = (0.0, 0.0, 0.0);
    let nc = m.names().len();
    for batch in set.prefetch(4) {
        let batch: ValBatch = batch?;
        let t0 = Instant::now();
        let x = Tensor::from_slice(&batch.images).view([batch.batch as i64, 3, batch.height as i64, batch.width as i64]).to_device(opts.device).to_kind(kind)
            / 255.0;
        let t1 = sync(opts.device, t0, &mut t_pre);
        let (out, protos) = m.infer_with_protos(&x)?;
        let t2 = sync(opts.device, t1, &mut t_inf);
        let width = out.size()[1] as usize;
        let nms = if protos.is_some() { NmsConfig { iou_thres: opts.seg_iou_thres, ..opts.nms } } else { opts.nms };
        let per_image = candidates(&out, opts.nms.conf_thres as f64, nc);
        let results: Vec<ImageResult> = per_image
            .par_iter()
            .zip(&batch.items)
            .map(|(rows, item)| {
                let kept = non_max_suppression_indexed(rows, width, nc, &nms);
                let input_space: Vec<Detection> = kept.iter().map(|(d, _)| *d).collect();
                let dets = to_original_space(&input_space, item);
                let correct = process_batch(&dets, &item.labels);
                let coeffs = kept.iter().flat_map(|&(_, r)| rows[r * width + 4 + nc..(r + 1) * width].iter().copied()).collect();
                ImageResult { input_space, dets, correct, coeffs }
            })
            .collect();
        if let Some(protos) = &protos {
            let correct = mask_correct(protos, &results, &batch)?;
            let ms = mask_stats.get_or_insert_with(EvalStats::default);
            for ((r, c), item) in results.iter().zip(correct).zip(&batch.items) {
                ms.add_image(&r.dets, &c, &item.labels);
            }
        }
        t_nms += t2.elapsed().as_secs_f64();
        if opts.plots && samples.len() < SAMPLE_BATCHES {
            let boxed: Vec<_> = results.iter().map(|r| r.input_space.clone()).collect();
            samples.push(sample_batch(&batch, &boxed));
        }
        for (r, item) in results.into_iter().zip(&batch.items) {
            stats.add_image(&r.dets, &r.correct, &item.labels);
            if let Some(cm) = confusion.as_mut() {
                cm.add_image(&r.dets, &item.labels);
            }
            if opts.save_json {
                coco.push(CocoImage { path: item.path.clone(), orig_hw: item.orig_hw, labels: item.labels.clone(), detections: r.dets });
            }
        }
        bar.inc(1);
    }
    bar.finish();
    let n = set.len().max(1) as f64;
    let speed = Speed { preprocess: t_pre / n * 1e3, inference: t_inf / n * 1e3, nms: t_nms / n * 1e3 };
    if opts.save_json {
        if let Some(dir) = &opts.out_dir {
            write_coco_json(dir, &coco, m.names())?;
        }
    }
    let mask = mask_stats.map(|s| s.finish(m.names()));
    Ok(EvalResult { metrics: stats.finish(m.names()), mask, speed, wall_s: start.elapsed().as_secs_f64(), confusion, samples })
}

/// One image after NMS: detections in input and original pixels, box correct matrix,
/// and the kept detections' mask coefficients (n × nm, empty for detection models).
struct ImageResult {
    input_space: Vec<Detection>,
    dets: Vec<Detection>,
    correct: Vec<[bool; NUM_IOU]>,
    coeffs: Vec<f32>,
}

/// The mask correct matrix of every image of a batch (segment/val.py `process_batch(masks=True)`).
fn mask_correct(protos: &Tensor, results: &[ImageResult], batch: &ValBatch) -> Result<Vec<Vec<[bool; NUM_IOU]>>> {
    let protos = protos.to_kind(Kind::Float);
    let input_hw = (batch.height, batch.width);
    let preds: Vec<_> = results.iter().enumerate().map(|(i, r)| predicted_masks(&protos.get(i as i64), &r.coeffs, &r.input_space, input_hw)).collect();
    Ok(results
        .par_iter()
        .zip(&preds)
        .zip(&batch.items)
        .map(|((r, pred), item)| {
            if r.dets.is_empty() || item.labels.is_empty() {
                return vec![[false; NUM_IOU]; r.dets.len()];
            }
            let gt = label_masks(&item.segments, input_hw, (pred.h, pred.w));
            correct_from_iou(&r.dets, &item.labels, &mask_iou(&gt, pred))
        })
        .collect())
}

fn sync(device: Device, since: Instant, acc: &mut f64) -> Instant {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
    *acc += since.elapsed().as_secs_f64();
    Instant::now()
}

/// Rows (anchor × (4+nc[+nm])) whose best class score beats `conf`, per image, on the CPU.
fn candidates(out: &Tensor, conf: f64, nc: usize) -> Vec<Vec<f32>> {
    let out = out.to_kind(Kind::Float).transpose(1, 2); // (B, A, 4+nc)
    let b = out.size()[0];
    let mask = out.narrow(2, 4, nc as i64).amax([-1i64].as_slice(), false).gt(conf);
    let width = out.size()[2] as usize;
    let counts = Vec::<i64>::try_from(mask.sum_dim_intlist([1i64].as_slice(), false, Kind::Int64).to_device(Device::Cpu)).unwrap_or_default();
    let rows = out.masked_select(&mask.unsqueeze(-1)).to_device(Device::Cpu);
    let flat = Vec::<f32>::try_from(rows).unwrap_or_default();
    let mut per_image = Vec::with_capacity(b as usize);
    let mut offset = 0;
    for c in counts {
        let len = c as usize * width;
        per_image.push(flat[offset..offset + len].to_vec());
        offset += len;
    }
    per_image
}
