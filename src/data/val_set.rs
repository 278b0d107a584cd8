//! The validation set as upstream `LoadImagesAndLabels(rect=True, pad=0.5)`
//! builds it for val.py, with a parallel, optionally prefetching batch loader.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver};
use std::thread::JoinHandle;

use anyhow::{bail, Context, Result};
use rayon::prelude::*;

use super::image_io::decode_rgb8;
use super::labels::{label_path_for, read_label_file, Label, LabelRow};
use super::letterbox::{letterbox, scale_box_to_original};
use super::resize::load_image_resize;

/// Upstream's IMG_FORMATS; only jpeg/png/bmp/webp decode here, others are reported corrupt.
const IMG_FORMATS: [&str; 10] = ["bmp", "dng", "jpeg", "jpg", "mpo", "png", "tif", "tiff", "webp", "pfm"];

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ValSetOptions {
    pub imgsz: usize,
    pub batch_size: usize,
    pub stride: usize,
    /// Extra stride fraction of rectangular batch shapes (val.py: 0.5).
    pub pad: f64,
    /// Rectangular batches (val.py with a PyTorch model); false gives imgsz squares.
    pub rect: bool,
}

impl Default for ValSetOptions {
    fn default() -> Self {
        ValSetOptions { imgsz: 640, batch_size: 32, stride: 32, pad: 0.5, rect: true }
    }
}

/// One usable image: its path, original (h, w) and label rows.
#[derive(Clone, Debug, PartialEq)]
pub struct ValEntry {
    pub path: PathBuf,
    pub orig_hw: (usize, usize),
    pub rows: Vec<LabelRow>,
    /// Normalized polygon per row (segmentation labels; empty for box labels).
    pub segments: Vec<Vec<[f32; 2]>>,
}

#[derive(Clone, Debug)]
pub struct ValSet {
    /// In batch order (sorted by aspect ratio when `rect`).
    pub entries: Vec<ValEntry>,
    /// (height, width) of each batch.
    pub batch_shapes: Vec<(usize, usize)>,
    /// Skipped images and dropped labels, one line each, path first.
    pub warnings: Vec<String>,
    pub options: ValSetOptions,
}

pub struct ValBatch {
    /// B x 3 x H x W, RGB, CHW, u8.
    pub images: Vec<u8>,
    pub batch: usize,
    pub height: usize,
    pub width: usize,
    pub items: Vec<ValItem>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ValItem {
    pub path: PathBuf,
    pub orig_hw: (usize, usize),
    /// Upstream's `(h / h0, w / w0)` of the first resize; `ratio.0` is scale_boxes' gain.
    pub ratio: (f64, f64),
    /// Letterbox (dw, dh).
    pub pad: (f64, f64),
    /// Ground truth in original pixels, through upstream's f32 round trip.
    pub labels: Vec<Label>,
    /// Each label's polygon in letterboxed (network input) pixels; empty for box labels.
    pub segments: Vec<Vec<[f32; 2]>>,
}

impl ValSet {
    /// Lists, verifies and orders the images of `sources` (folders or `.txt` lists).
    pub fn load(sources: &[PathBuf], nc: usize, options: ValSetOptions) -> Result<ValSet> {
        if options.imgsz == 0 || options.batch_size == 0 || options.stride == 0 {
            bail!("imgsz, batch size and stride must be positive");
        }
        let files = list_images(sources)?;
        if files.is_empty() {
            bail!("no images found in {}", show_paths(sources));
        }
        let checked: Vec<Result<(ValEntry, Vec<String>), String>> = files.par_iter().map(|f| verify(f, nc)).collect();
        let (mut entries, mut warnings) = (Vec::new(), Vec::new());
        for c in checked {
            match c {
                Ok((e, w)) => {
                    warnings.extend(w);
                    entries.push(e);
                }
                Err(w) => warnings.push(w),
            }
        }
        if entries.is_empty() {
            bail!("none of the {} images in {} could be used: {}", files.len(), show_paths(sources), warnings.join("; "));
        }
        let batch_shapes = if options.rect {
            entries.sort_by(|a, b| aspect(a).total_cmp(&aspect(b)));
            rect_shapes(&entries, &options)
        } else {
            vec![(options.imgsz, options.imgsz); entries.len().div_ceil(options.batch_size)]
        };
        Ok(ValSet { entries, batch_shapes, warnings, options })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Keeps the first `n` images in file order (`--num-image`), batches recomputed.
    pub fn limit(mut self, n: usize) -> ValSet {
        if n >= self.entries.len() {
            return self;
        }
        self.entries.sort_by(|a, b| a.path.cmp(&b.path));
        self.entries.truncate(n.max(1));
        self.batch_shapes = if self.options.rect {
            self.entries.sort_by(|a, b| aspect(a).total_cmp(&aspect(b)));
            rect_shapes(&self.entries, &self.options)
        } else {
            vec![(self.options.imgsz, self.options.imgsz); self.entries.len().div_ceil(self.options.batch_size)]
        };
        self
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn num_batches(&self) -> usize {
        self.batch_shapes.len()
    }

    pub fn num_labels(&self) -> usize {
        self.entries.iter().map(|e| e.rows.len()).sum()
    }

    /// Decodes, resizes and letterboxes batch `index` (images in parallel).
    pub fn load_batch(&self, index: usize) -> Result<ValBatch> {
        let bs = self.options.batch_size;
        let entries = &self.entries[index * bs..((index + 1) * bs).min(self.entries.len())];
        let (height, width) = self.batch_shapes[index];
        let loaded: Vec<(Vec<u8>, ValItem)> = entries.par_iter().map(|e| self.load_item(e, (height, width))).collect::<Result<_>>()?;
        let mut images = Vec::with_capacity(loaded.len() * 3 * height * width);
        let mut items = Vec::with_capacity(loaded.len());
        for (chw, item) in loaded {
            images.extend_from_slice(&chw);
            items.push(item);
        }
        Ok(ValBatch { images, batch: items.len(), height, width, items })
    }

    /// All batches in order, loaded on the calling thread.
    pub fn batches(&self) -> impl Iterator<Item = Result<ValBatch>> + '_ {
        (0..self.num_batches()).map(|i| self.load_batch(i))
    }

    /// All batches in order, loaded `depth` ahead by a background thread.
    pub fn prefetch(&self, depth: usize) -> Prefetch {
        let (tx, rx) = sync_channel(depth.max(1));
        let set = self.clone();
        let handle = std::thread::spawn(move || {
            for i in 0..set.num_batches() {
                if tx.send(set.load_batch(i)).is_err() {
                    break; // consumer dropped
                }
            }
        });
        Prefetch { rx: Some(rx), handle: Some(handle) }
    }

    fn load_item(&self, e: &ValEntry, canvas: (usize, usize)) -> Result<(Vec<u8>, ValItem)> {
        let img = decode_rgb8(&e.path)?;
        if img.hw() != e.orig_hw {
            bail!("{}: image changed size since the set was loaded", e.path.display());
        }
        let resized = load_image_resize(img, self.options.imgsz, false);
        let lb = letterbox(&resized, canvas, false);
        let ratio = (resized.height as f64 / e.orig_hw.0 as f64, resized.width as f64 / e.orig_hw.1 as f64);
        let geo = Geometry { resized_hw: resized.hw(), lb_ratio: lb.ratio, pad: lb.pad, canvas, gain: ratio.0, orig_hw: e.orig_hw };
        let labels = e.rows.iter().map(|r| Label { class: r.class, xyxy: geo.round_trip(r) }).collect();
        let segments = e.segments.iter().map(|poly| geo.polygon_to_canvas(poly)).collect();
        let item = ValItem { path: e.path.clone(), orig_hw: e.orig_hw, ratio, pad: lb.pad, labels, segments };
        Ok((lb.image.to_chw(), item))
    }
}

/// Iterator over prefetched batches; dropping it stops the loader thread.
pub struct Prefetch {
    rx: Option<Receiver<Result<ValBatch>>>,
    handle: Option<JoinHandle<()>>,
}

impl Iterator for Prefetch {
    type Item = Result<ValBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        self.rx.as_ref()?.recv().ok()
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        drop(self.rx.take());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn show_paths(p: &[PathBuf]) -> String {
    p.iter().map(|x| x.display().to_string()).collect::<Vec<_>>().join(", ")
}

fn aspect(e: &ValEntry) -> f64 {
    e.orig_hw.0 as f64 / e.orig_hw.1 as f64
}

/// Image files of every source, sorted and deduplicated like upstream's im_files; a file
/// reached by two names (links, `./x` and `x` in a list) counts once, under its first name.
fn list_images(sources: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut seen_dirs = HashSet::new();
    for p in sources {
        if p.is_dir() {
            walk(p, &mut files, &mut seen_dirs).with_context(|| format!("cannot list {}", p.display()))?;
        } else if p.is_file() {
            files.extend(read_list(p)?);
        } else {
            bail!("{} does not exist", p.display());
        }
    }
    let mut names: Vec<String> = files
        .into_iter()
        .map(|f| f.to_string_lossy().into_owned())
        .filter(|s| s.rsplit_once('.').is_some_and(|(_, ext)| IMG_FORMATS.contains(&ext.to_lowercase().as_str())))
        .collect();
    names.sort();
    names.dedup();
    let mut seen_files = HashSet::new();
    names.retain(|n| std::fs::metadata(n).map_or(true, |m| seen_files.insert((m.dev(), m.ino()))));
    Ok(names.into_iter().map(PathBuf::from).collect())
}

/// Recursive listing of files with a '.' in their name, skipping hidden entries (Python glob
/// `**/*.*`). Symlinked folders are followed as glob does, but each folder (device, inode)
/// is walked once, so a link loop (`loop -> .`) ends and a folder linked twice counts once.
fn walk(dir: &Path, out: &mut Vec<PathBuf>, seen: &mut HashSet<(u64, u64)>) -> std::io::Result<()> {
    let meta = std::fs::metadata(dir)?;
    if !seen.insert((meta.dev(), meta.ino())) {
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?.map(|e| e.map(|e| e.path())).collect::<std::io::Result<_>>()?;
    entries.sort();
    for path in entries {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            walk(&path, out, seen)?;
        } else if name.contains('.') {
            out.push(path);
        }
    }
    Ok(())
}

/// A `.txt` image list: `./x` is relative to the list's folder, other relative paths to the cwd (upstream).
fn read_list(list: &Path) -> Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string(list).with_context(|| format!("cannot read image list {}", list.display()))?;
    let parent = list.parent().unwrap_or(Path::new(""));
    Ok(text
        .trim()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| l.strip_prefix("./").map_or_else(|| PathBuf::from(l), |rest| parent.join(rest)))
        .collect())
}

/// Upstream `verify_image_label` (decoding fully, so a corrupt image is caught here).
fn verify(path: &Path, nc: usize) -> Result<(ValEntry, Vec<String>), String> {
    let corrupt = |why: String| format!("{}: ignoring corrupt image/label: {why}", path.display());
    let img = decode_rgb8(path).map_err(|e| corrupt(e.reason))?;
    if img.width < 10 || img.height < 10 {
        return Err(corrupt(format!("image size ({}, {}) <10 pixels", img.width, img.height)));
    }
    let label_path = label_path_for(path);
    let file = read_label_file(&label_path, nc).map_err(|why| corrupt(format!("{}: {why}", label_path.display())))?;
    let warnings = file.warnings.iter().map(|w| format!("{}: {w}", label_path.display())).collect();
    Ok((ValEntry { path: path.to_path_buf(), orig_hw: img.hw(), rows: file.rows, segments: file.segments }, warnings))
}

/// Rectangular batch shapes (h, w) from the sorted aspect ratios.
fn rect_shapes(entries: &[ValEntry], o: &ValSetOptions) -> Vec<(usize, usize)> {
    let to_px = |s: f64| ((s * o.imgsz as f64 / o.stride as f64 + o.pad).ceil() as usize) * o.stride;
    entries
        .chunks(o.batch_size)
        .map(|chunk| {
            let ars: Vec<f64> = chunk.iter().map(aspect).collect();
            let mini = ars.iter().copied().fold(f64::INFINITY, f64::min);
            let maxi = ars.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let (sh, sw) = if maxi < 1.0 {
                (maxi, 1.0)
            } else if mini > 1.0 {
                (1.0, 1.0 / mini)
            } else {
                (1.0, 1.0)
            };
            (to_px(sh), to_px(sw))
        })
        .collect()
}

/// Everything upstream's label round trip depends on.
struct Geometry {
    resized_hw: (usize, usize),
    lb_ratio: (f64, f64),
    pad: (f64, f64),
    canvas: (usize, usize),
    gain: f64,
    orig_hw: (usize, usize),
}

impl Geometry {
    /// normalized xywh -> letterboxed xyxy (numpy f32, `xywhn2xyxy`) -> clipped,
    /// normalized to the canvas (`xyxy2xywhn(clip=True, eps=1e-3)`) -> pixels -> xyxy
    /// (torch f32) -> scale_boxes back to the original.
    fn round_trip(&self, row: &LabelRow) -> [f32; 4] {
        let (sw, sh) = (self.lb_ratio.0 * self.resized_hw.1 as f64, self.lb_ratio.1 * self.resized_hw.0 as f64);
        let canvas = row.to_pixels(sw, sh, self.pad.0, self.pad.1);
        let [ncx, ncy, nw, nh] = canvas.to_normalized_clipped(self.canvas.1 as f64, self.canvas.0 as f64, 1e-3).xywhn;
        let (cw, ch) = (self.canvas.1 as f32, self.canvas.0 as f32);
        let (pcx, pcy, pw2, ph2) = (ncx * cw, ncy * ch, nw * cw, nh * ch);
        let xyxy = [pcx - pw2 / 2.0, pcy - ph2 / 2.0, pcx + pw2 / 2.0, pcy + ph2 / 2.0];
        scale_box_to_original(xyxy, self.gain, self.pad, self.orig_hw)
    }

    /// Upstream `xyn2xy(segment, ratio[0] * w, ratio[1] * h, padw, padh)` on a float32
    /// polygon: scale and pad are Python floats that numpy applies in f32.
    fn polygon_to_canvas(&self, poly: &[[f32; 2]]) -> Vec<[f32; 2]> {
        let sw = (self.lb_ratio.0 * self.resized_hw.1 as f64) as f32;
        let sh = (self.lb_ratio.1 * self.resized_hw.0 as f64) as f32;
        let (pw, ph) = (self.pad.0 as f32, self.pad.1 as f32);
        poly.iter().map(|&[x, y]| [sw * x + pw, sh * y + ph]).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(h: usize, w: usize) -> ValEntry {
        ValEntry { path: PathBuf::new(), orig_hw: (h, w), rows: vec![], segments: vec![] }
    }

    #[test]
    fn rect_shapes_follow_extreme_aspect_ratios() {
        let o = ValSetOptions { imgsz: 320, batch_size: 2, ..Default::default() };
        // batch 0: both wide (max h/w 0.75); batch 1: straddles 1; batch 2: both tall (min 1.25)
        let e = [entry(300, 400), entry(200, 400), entry(400, 400), entry(300, 200), entry(500, 400), entry(600, 400)];
        // 0.75*10+0.5 = 8 -> 256; 1*10+0.5 -> 11 -> 352; 1/1.25*10+0.5 = 8.5 -> 9 -> 288
        assert_eq!(rect_shapes(&e[..2], &o), vec![(256, 352)]);
        assert_eq!(rect_shapes(&e[2..4], &o), vec![(352, 352)]);
        assert_eq!(rect_shapes(&e[4..], &o), vec![(352, 288)]);
    }

    #[test]
    fn label_round_trip_matches_numpy_torch_f32() {
        // 508x368 at imgsz 320 -> 320x232, canvas 352x352, pad (16, 60).
        let geo = Geometry { resized_hw: (232, 320), lb_ratio: (1.0, 1.0), pad: (16.0, 60.0), canvas: (352, 352), gain: 232.0 / 368.0, orig_hw: (368, 508) };
        // Reference values from numpy 2.4 / torch 2.11 running upstream's formulas in f32.
        let row = |xywhn| LabelRow { class: 0, xywhn };
        assert_eq!(geo.round_trip(&row([0.251401, 0.566144, 0.085241, 0.101888])), [105.97409, 189.59358, 149.24126, 227.08835]);
        assert_eq!(geo.round_trip(&row([0.95, 0.5, 0.1, 0.4])), [456.82758, 110.4, 507.58618, 257.59998]);
    }
}
