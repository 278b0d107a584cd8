//! `yolo-qat predict`: detections drawn on images (detect.py), one picture per input
//! under the same file name; `--compare W2` puts a second model's beside the first's.

use super::parse_device;
use crate::data::image_io::{decode_rgb8, RgbImage};
use crate::detector::load;
use crate::detector::Detector;
use crate::eval::predict::{detect, detect_nms, input_shape};
use crate::eval::validate::{prepare, Infer};
use crate::export::onnx_eval::onnx_infer;
use crate::export::parse_names_dict;
use crate::plots::canvas::save;
use crate::plots::predictions::{draw_detections, side_by_side};
use crate::progress::Progress;
use crate::util::increment_dir;
use anyhow::{anyhow, bail, Result};
use std::path::{Path, PathBuf};
use tch::{Device, Kind};

#[derive(clap::Args)]
pub struct Args {
    /// `.pt`, `.safetensors` (yolo-qat) or an exported `.onnx` (ONNX Runtime, CPU).
    #[arg(long)]
    weights: PathBuf,
    /// An image or a folder of images.
    #[arg(long)]
    source: PathBuf,
    /// A second model drawn beside the first (e.g. FP vs INT8).
    #[arg(long)]
    compare: Option<PathBuf>,
    #[arg(long, default_value_t = 0.25)]
    conf_thres: f32,
    #[arg(long, default_value_t = 0.45)]
    iou_thres: f64,
    #[arg(long, visible_aliases = ["img", "img-size"], default_value_t = 640)]
    imgsz: usize,
    #[arg(long, default_value = "cuda:0")]
    device: String,
    #[arg(long, default_value = "runs/predict")]
    project: PathBuf,
    #[arg(long, default_value = "exp")]
    name: String,
    #[arg(long)]
    exist_ok: bool,
}

/// A loaded model: what runs it, its class names, and a fixed input size (static ONNX).
struct Model {
    label: String,
    infer: Box<dyn Infer>,
    fixed: Option<(usize, usize)>,
    device: Device,
}

const IMAGE_EXTENSIONS: [&str; 7] = ["jpg", "jpeg", "png", "bmp", "webp", "tif", "tiff"];

pub fn run(a: Args) -> Result<()> {
    if a.imgsz == 0 || !a.imgsz.is_multiple_of(32) {
        bail!("--imgsz {}: must be a positive multiple of 32", a.imgsz);
    }
    let device = parse_device(&a.device)?;
    let images = sources(&a.source)?;
    let first = open(&a.weights, device)?;
    let second = a.compare.as_deref().map(|w| open(w, device)).transpose()?;
    if let Some(s) = &second {
        if s.infer.names() != first.infer.names() {
            bail!("--compare {}: its classes differ from {}'s", s.label, first.label);
        }
    }
    let dir = increment_dir(&a.project, &a.name, a.exist_ok)?;
    let mut bar = Progress::new("predict", images.len());
    for path in &images {
        let img = decode_rgb8(path)?;
        let mut out = picture(&first, &img, &a, second.is_some())?;
        if let Some(s) = &second {
            out = side_by_side(&out, &picture(s, &img, &a, true)?);
        }
        save(&dir.join(path.file_name().unwrap_or_default()), &out)?;
        bar.inc(1);
    }
    bar.finish();
    println!("{} image(s) saved to {}", images.len(), dir.display());
    Ok(())
}

/// The image with `m`'s detections; the model's file name on it when comparing.
fn picture(m: &Model, img: &RgbImage, a: &Args, titled: bool) -> Result<RgbImage> {
    let shape = m.fixed.unwrap_or_else(|| input_shape(img.hw(), a.imgsz, 32));
    let dets = detect(m.infer.as_ref(), img, shape, &detect_nms(a.conf_thres, a.iou_thres), m.device)?;
    draw_detections(img, &dets, m.infer.names(), titled.then_some(m.label.as_str()))
}

fn open(weights: &Path, device: Device) -> Result<Model> {
    let label = weights.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if weights.extension().is_some_and(|e| e == "onnx") {
        let names = onnx_names(weights)?;
        let o = onnx_infer(weights, names)?;
        return Ok(Model { label, infer: o.infer, fixed: o.fixed, device: Device::Cpu });
    }
    let mut model = load(weights)?;
    model.to(device, Kind::Float);
    let infer: Box<dyn Infer> = Box::new(Owned(model));
    Ok(Model { label, infer, fixed: None, device })
}

/// A detector owned by `predict`, run in fp32 (detect.py's default; its `--half` is opt-in).
struct Owned(Detector);

impl Infer for Owned {
    fn infer(&self, x: &tch::Tensor) -> Result<tch::Tensor> {
        prepare(&self.0, false).infer(x)
    }
    fn names(&self) -> &[String] {
        &self.0.names
    }
}

// As validate's Prepared: tch tensors are reference-counted handles, inference never mutates.
unsafe impl Sync for Owned {}

/// Class names from the export's metadata (`names`, upstream's dict format).
fn onnx_names(path: &Path) -> Result<Vec<String>> {
    let model = crate::export::ort::OnnxModel::load(path)?;
    let text = model.metadata.get("names").ok_or_else(|| anyhow!("{}: no `names` in the model's metadata", path.display()))?;
    parse_names_dict(text).ok_or_else(|| anyhow!("{}: cannot read the class names in its metadata", path.display()))
}

/// The image, or the images of a folder (not recursive), by name.
fn sources(source: &Path) -> Result<Vec<PathBuf>> {
    if source.is_file() {
        return Ok(vec![source.to_path_buf()]);
    }
    if !source.is_dir() {
        bail!("--source {}: no such file or folder", source.display());
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(source)
        .map_err(|e| anyhow!("--source {}: {e}", source.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().and_then(|e| e.to_str()).is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str())))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("--source {}: no images (jpg, png, bmp, webp, tif)", source.display());
    }
    Ok(files)
}
