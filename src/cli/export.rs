//! `yolo-qat export`: Q/DQ ONNX that TensorRT builds as INT8, optionally with
//! end-to-end NMS; `--check` runs the TensorRT rules check on any .onnx.

use super::validate;
use crate::detector::load;
use crate::export::{check_file, export, End2End, ExportOptions, MaskPooling, Nms};
use crate::util::check_output;
use anyhow::{bail, Result};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Model to export (a QAT/PTQ checkpoint gives Q/DQ; an FP one the plain graph).
    #[arg(long, required_unless_present = "check")]
    weights: Option<PathBuf>,
    /// `onnx` or `onnx_end2end` (the reference patch's names); may be given twice.
    #[arg(long, default_values_t = vec!["onnx".to_string()])]
    include: Vec<String>,
    /// Same as `--include onnx_end2end`.
    #[arg(long)]
    end2end: bool,
    /// End-to-end NMS as TensorRT's plugin (`trt`) or standard ONNX ops (`onnx`).
    #[arg(long, default_value = "trt")]
    nms: String,
    /// Symbolic batch, height and width.
    #[arg(long)]
    dynamic: bool,
    /// Accepted for the reference patch's command lines: constant folding is always done.
    #[arg(long)]
    simplify: bool,
    /// Accepted for the reference patch's command lines (no effect).
    #[arg(long)]
    inplace: bool,
    /// Input size: one value (square) or height and width.
    #[arg(long, visible_aliases = ["img", "img-size"], num_args = 1..=2, default_values_t = vec![640])]
    imgsz: Vec<i64>,
    #[arg(long, default_value_t = 1)]
    batch_size: i64,
    /// Accepted for the reference patch's command lines; the graph is written on the CPU.
    #[arg(long, default_value = "cpu")]
    device: String,
    #[arg(long, default_value_t = 0.45)]
    iou_thres: f64,
    #[arg(long, default_value_t = 0.25)]
    conf_thres: f64,
    #[arg(long, default_value_t = 100)]
    topk_all: i64,
    #[arg(long)]
    class_agnostic: bool,
    /// Segmentation end2end: each detection's mask is R×R over its box (`det_masks` (B, K, R·R)).
    #[arg(long, default_value_t = 160)]
    mask_resolution: i64,
    /// Segmentation end2end: input pixels → prototype cells (prototypes are at 1/4 of the input).
    #[arg(long, default_value_t = 0.25)]
    pooler_scale: f64,
    /// Segmentation end2end: bilinear samples per mask cell side; 0 = adaptive (ceil(box side / R)).
    #[arg(long, default_value_t = 0)]
    sampling_ratio: i64,
    #[arg(long)]
    opset: Option<i64>,
    /// Output file (default: next to the weights, NAME.onnx / NAME-end2end.onnx). Replaced
    /// atomically if it is a regular file; a symlink is written through; a folder, device
    /// or FIFO, or the --weights file itself, is refused.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Only check an existing ONNX file against TensorRT's Q/DQ rules.
    #[arg(long)]
    check: Option<PathBuf>,
}

pub fn run(a: Args) -> Result<()> {
    if let Some(path) = &a.check {
        println!("{}", check_file(path)?);
        return Ok(());
    }
    let Some(weights) = a.weights.clone() else { bail!("--weights: required unless --check is given") };
    let (h, w) = match a.imgsz.as_slice() {
        [s] => (*s, *s),
        [h, w] => (*h, *w),
        _ => bail!("--imgsz takes one or two values"),
    };
    validate::count("--batch-size", usize::try_from(a.batch_size).unwrap_or(0))?;
    validate::count("--topk-all", usize::try_from(a.topk_all).unwrap_or(0))?;
    validate::unit("--iou-thres", a.iou_thres)?;
    validate::unit("--conf-thres", a.conf_thres)?;
    let mut kinds: Vec<bool> = Vec::new();
    for inc in &a.include {
        match inc.as_str() {
            "onnx" => kinds.push(false),
            "onnx_end2end" => kinds.push(true),
            other => bail!("--include {other}: expected onnx or onnx_end2end"),
        }
    }
    if a.end2end {
        kinds = vec![true];
    }
    kinds.dedup();
    if a.output.is_some() && kinds.len() > 1 {
        bail!("--output names one file; give one --include at a time");
    }
    let model = load(&weights)?;
    // Upstream's export.py rounds a size up to the stride with a warning; a size that is
    // silently not the one asked for is worse than an error here.
    let stride = validate::max_stride(&model);
    for v in [h, w] {
        validate::imgsz("--imgsz", usize::try_from(v).unwrap_or(0), stride)?;
    }
    let stem = weights.with_extension("");
    for e2e in kinds {
        let masks = MaskPooling { resolution: a.mask_resolution, pooler_scale: a.pooler_scale, sampling_ratio: a.sampling_ratio };
        let end2end = e2e.then_some(End2End {
            iou_thres: a.iou_thres,
            conf_thres: a.conf_thres,
            topk_all: a.topk_all,
            class_agnostic: a.class_agnostic,
            nms: Nms::Trt,
            masks,
        });
        let end2end = match end2end {
            Some(mut e) => {
                e.nms = Nms::parse(&a.nms)?;
                e.validate()?;
                Some(e)
            }
            None => None,
        };
        let opts = ExportOptions { dynamic: a.dynamic, end2end, imgsz: (h, w), batch: a.batch_size, opset: a.opset };
        let path = a.output.clone().unwrap_or_else(|| PathBuf::from(format!("{}{}.onnx", stem.display(), if e2e { "-end2end" } else { "" })));
        check_output("--output", &path, &[("--weights", &weights)])?;
        let report = export(&model, &opts, &path)?;
        println!("{report}");
    }
    Ok(())
}
