//! The augmented training loader (upstream `LoadImagesAndLabels` with
//! `augment=True, rect=False`), used for PTQ calibration and QAT batches.
//!
//! Per sample, as upstream `__getitem__`:
//! * with probability `hyp.mosaic`: a 4-image mosaic ([`crate::data::mosaic`]),
//!   then with probability `hyp.mixup` a mixup with a second mosaic;
//! * otherwise: `load_image` (long side to `imgsz`), letterbox to
//!   `imgsz x imgsz`, `random_perspective` without border;
//! * labels to normalized `cx cy w h` (clipped), `augment_hsv`, up-down flip
//!   (`hyp.flipud`), left-right flip (`hyp.fliplr`).
//!
//! With polygon labels ([`TrainLoader::with_segments`]) the polygons go through the same
//! mosaic, warp and mixup (the boxes then come from the warped polygons, as upstream's
//! loaders do when an image has segments), and every label gets its mask, drawn at full
//! size and shrunk by the mask ratio (upstream `utils/segment/dataloaders.py`,
//! `overlap=False`, as upstream's segmentation training command runs), flipped with the image.
//!
//! Not reproduced: albumentations (optional upstream, only when installed) and
//! segment copy-paste.
//!
//! Determinism: epoch `e` visits the images in a permutation drawn from
//! `(seed, e)`; the sample at position `p` draws all its randomness from an
//! RNG keyed by `(seed, e, p)`, so results do not depend on thread scheduling
//! or on the number of workers.
//!
//! Bad images (unreadable, or smaller than 10 px like upstream's check) are
//! reported once on stderr and never decoded again; a sample whose image (or
//! one of its mosaic tiles) is bad is replaced by a deterministic redraw.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;

use anyhow::{anyhow, bail, Result};

use crate::data::flip::{flip_lr_with_labels, flip_ud_with_labels};
use crate::data::hsv::augment_hsv;
use crate::data::hyp::Hyp;
use crate::data::image_io::{decode_rgb8, RgbImage};
use crate::data::labels::{Label, LabelRow};
use crate::data::letterbox::letterbox;
use crate::data::mixup::mixup;
use crate::data::mosaic::{load_mosaic, Loaded};
use crate::data::perspective::{random_perspective, WarpParams};
use crate::data::resize::load_image_resize;
use crate::data::rng::Rng;
use crate::data::segments::{flip_masks_lr, flip_masks_ud, polygon_mask_downsampled, Polygon};

/// Normalized YOLO labels of one image, as its label file holds them.
pub type ImageLabels = Vec<LabelRow>;

/// One batch of augmented training images.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainBatch {
    /// `batch x 3 x size x size`, RGB, CHW, `u8` (divide by 255 for the model).
    pub images: Vec<u8>,
    /// Number of images (the last batch of a pass may be short).
    pub batch: usize,
    /// Square side in pixels (`imgsz`).
    pub size: usize,
    /// `(image in batch, class, [cx, cy, w, h] normalized)`.
    pub labels: Vec<(usize, usize, [f32; 4])>,
    /// Dataset index of each image's primary sample (mosaics hold others too).
    pub indices: Vec<usize>,
    /// With polygon labels: one `mask_size x mask_size` 0/1 mask per entry of `labels`, in
    /// that order, row-major, concatenated; empty otherwise.
    pub masks: Vec<u8>,
    /// `size / mask ratio` with polygon labels, else 0.
    pub mask_size: usize,
}

/// How many times a sample is redrawn when its images fail to load.
const MAX_ATTEMPTS: u64 = 16;
/// RNG key part that separates the epoch permutation from sample streams.
const PERM_TAG: u64 = 0x5045_524D_5045_524D;
/// Letterbox labels to normalized form, as upstream (`eps=1e-3`).
const CLIP_EPS: f64 = 1e-3;
/// Masks are drawn at `imgsz / MASK_RATIO` (upstream `--mask-ratio`, default 4).
pub const MASK_RATIO: usize = 4;

struct Inner {
    items: Vec<(PathBuf, Arc<ImageLabels>)>,
    imgsz: usize,
    batch: usize,
    hyp: Hyp,
    seed: u64,
    workers: usize,
    prefetch: usize,
    cache: Option<Vec<OnceLock<Arc<RgbImage>>>>,
    bad: Mutex<HashMap<usize, String>>,
    /// Normalized polygons per image (one per label row) when masks are wanted.
    segments: Option<Vec<Arc<Vec<Polygon>>>>,
    mask_ratio: usize,
}

/// One augmented sample: the image, its normalized labels and (with polygon labels) a
/// mask per label.
struct Augmented {
    img: RgbImage,
    labels: ImageLabels,
    masks: Vec<u8>,
}

/// Augmented, shuffled, multi-threaded training loader. Cheap to clone
/// (shared state).
#[derive(Clone)]
pub struct TrainLoader {
    inner: Arc<Inner>,
}

impl TrainLoader {
    /// `samples`: image paths with their normalized labels ([`LabelRow`]s, or
    /// `(class, [cx, cy, w, h])` pairs). `imgsz` must be even (upstream uses multiples
    /// of 32). `workers == 0` builds batches on the calling thread. Panics on an empty
    /// dataset, `batch == 0` or an odd `imgsz`.
    pub fn new<L: Into<LabelRow>>(samples: Vec<(PathBuf, Vec<L>)>, imgsz: usize, batch: usize, hyp: Hyp, seed: u64, workers: usize) -> Self {
        assert!(!samples.is_empty(), "TrainLoader: no images");
        assert!(batch > 0, "TrainLoader: batch size must be positive");
        assert!(imgsz >= 2 && imgsz.is_multiple_of(2), "TrainLoader: imgsz must be even, got {imgsz}");
        TrainLoader {
            inner: Arc::new(Inner {
                items: samples.into_iter().map(|(p, l)| (p, Arc::new(l.into_iter().map(Into::into).collect()))).collect(),
                imgsz,
                batch,
                hyp,
                seed,
                workers,
                prefetch: 2,
                cache: None,
                bad: Mutex::new(HashMap::new()),
                segments: None,
                mask_ratio: MASK_RATIO,
            }),
        }
    }

    /// Like [`TrainLoader::new`], labels looked up per image by `labels_for`.
    pub fn from_paths(
        images: Vec<PathBuf>,
        labels_for: impl Fn(&Path) -> ImageLabels,
        imgsz: usize,
        batch: usize,
        hyp: Hyp,
        seed: u64,
        workers: usize,
    ) -> Self {
        let samples = images.into_iter().map(|p| {
            let l = labels_for(&p);
            (p, l)
        });
        Self::new(samples.collect(), imgsz, batch, hyp, seed, workers)
    }

    fn inner_mut(&mut self) -> &mut Inner {
        Arc::get_mut(&mut self.inner).expect("configure the TrainLoader before cloning it")
    }

    /// Batches built ahead of the consumer (default 2, at least 1). Memory is
    /// about `(prefetch + 1) * batch * 3 * imgsz^2` bytes.
    pub fn with_prefetch(mut self, batches: usize) -> Self {
        self.inner_mut().prefetch = batches.max(1);
        self
    }

    /// Keep every decoded, resized image in memory (upstream `--cache ram`):
    /// later epochs skip decoding. Off by default.
    pub fn with_cache(mut self, on: bool) -> Self {
        let n = self.inner.items.len();
        self.inner_mut().cache = on.then(|| (0..n).map(|_| OnceLock::new()).collect());
        self
    }

    /// Polygon labels, one list per image (normalized, one polygon per label row), to carry
    /// through the augmentations and to draw each label's mask from. An image whose label
    /// file holds boxes (no polygon) keeps its boxes, and its masks are the boxes filled.
    /// Panics when the counts disagree with the images' or their label rows'.
    pub fn with_segments(mut self, segments: Vec<Vec<Polygon>>) -> Self {
        assert_eq!(segments.len(), self.inner.items.len(), "TrainLoader::with_segments: one polygon list per image");
        for (i, (s, item)) in segments.iter().zip(&self.inner.items).enumerate() {
            assert!(s.is_empty() || s.len() == item.1.len(), "TrainLoader::with_segments: image {i} has {} rows but {} polygons", item.1.len(), s.len());
        }
        let boxes_only = |s: &Vec<Polygon>| s.iter().all(Vec::is_empty);
        self.inner_mut().segments = Some(segments.into_iter().map(|s| Arc::new(if boxes_only(&s) { Vec::new() } else { s })).collect());
        self
    }

    /// Side of the masks with polygon labels: `imgsz / ratio` (upstream `--mask-ratio`, 4).
    pub fn mask_size(&self) -> usize {
        if self.inner.segments.is_some() {
            self.inner.imgsz / self.inner.mask_ratio
        } else {
            0
        }
    }

    pub fn len(&self) -> usize {
        self.inner.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.items.is_empty()
    }

    pub fn imgsz(&self) -> usize {
        self.inner.imgsz
    }

    pub fn batch_size(&self) -> usize {
        self.inner.batch
    }

    pub fn hyp(&self) -> &Hyp {
        &self.inner.hyp
    }

    /// Batches in one pass: `ceil(len / batch)` (the last may be short).
    pub fn batches_per_epoch(&self) -> usize {
        self.inner.items.len().div_ceil(self.inner.batch)
    }

    /// Images found unreadable so far, with the reason.
    pub fn bad_images(&self) -> Vec<(PathBuf, String)> {
        let bad = lock(&self.inner.bad);
        let mut v: Vec<_> = bad.iter().map(|(&i, m)| (self.inner.items[i].0.clone(), m.clone())).collect();
        v.sort();
        v
    }

    /// The order in which epoch `epoch` visits the dataset.
    pub fn permutation(&self, epoch: u64) -> Vec<usize> {
        let mut perm: Vec<usize> = (0..self.len()).collect();
        Rng::from_parts(&[self.inner.seed, epoch, PERM_TAG]).shuffle(&mut perm);
        perm
    }

    /// One augmented sample: the image at `position` of epoch `epoch`'s
    /// order, as an `imgsz x imgsz` RGB image with normalized labels, and the
    /// dataset index it was drawn for. `None` if no redraw could be loaded.
    pub fn sample(&self, epoch: u64, position: usize) -> Option<(RgbImage, ImageLabels, usize)> {
        self.sample_with_masks(epoch, position).map(|(img, labels, _, index)| (img, labels, index))
    }

    /// [`sample`](Self::sample) with the labels' masks (see [`TrainBatch::masks`]).
    pub fn sample_with_masks(&self, epoch: u64, position: usize) -> Option<(RgbImage, ImageLabels, Vec<u8>, usize)> {
        let perm = self.permutation(epoch);
        self.inner.sample(epoch, position, perm[position % perm.len()]).map(|(a, index)| (a.img, a.labels, a.masks, index))
    }

    /// One pass over the dataset in epoch `epoch`'s order:
    /// [`batches_per_epoch`](Self::batches_per_epoch) batches, built on
    /// `workers` threads at most `prefetch` batches ahead. Dropping the
    /// iterator stops the workers.
    pub fn iter(&self, epoch: u64) -> EpochIter {
        EpochIter::new(self.inner.clone(), epoch)
    }

    /// Endless batches: epoch `start_epoch`, then the next, and so on.
    pub fn iter_forever(&self, start_epoch: u64) -> impl Iterator<Item = TrainBatch> {
        let loader = self.clone();
        (start_epoch..).flat_map(move |e| loader.iter(e))
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Inner {
    fn n(&self) -> usize {
        self.items.len()
    }

    /// Decoded image `index`, long side resized to `imgsz` (upstream
    /// `load_image`), with its labels.
    fn load(&self, index: usize) -> Result<Loaded> {
        let labels = self.items[index].1.clone();
        let polys = self.segments.as_ref().map_or_else(|| Arc::new(Vec::new()), |s| s[index].clone());
        if let Some(c) = &self.cache {
            if let Some(img) = c[index].get() {
                return Ok((img.clone(), labels, polys));
            }
        }
        if let Some(msg) = lock(&self.bad).get(&index) {
            bail!("{msg}");
        }
        let path = &self.items[index].0;
        let img = match decode_rgb(path) {
            Ok(img) => Arc::new(load_image_resize(img, self.imgsz, true)),
            Err(e) => {
                let msg = format!("{:#}", e);
                if let Entry::Vacant(e) = lock(&self.bad).entry(index) {
                    eprintln!("WARNING: skipping bad training image {}: {msg}", path.display());
                    e.insert(msg.clone());
                }
                bail!("{msg}");
            }
        };
        if let Some(c) = &self.cache {
            return Ok((c[index].get_or_init(|| img).clone(), labels, polys));
        }
        Ok((img, labels, polys))
    }

    /// Upstream `__getitem__` for dataset index `index` with randomness `rng`.
    fn augmented(&self, index: usize, rng: &mut Rng) -> Result<Augmented> {
        let hyp = &self.hyp;
        let s = self.imgsz;
        let (mut img, labels, polys) = if rng.f64() < hyp.mosaic {
            self.mosaic_mixup(index, rng)?
        } else {
            let (im, norm, norm_polys) = self.load(index)?;
            let lb = letterbox(&im, (s, s), true);
            let (w, h) = (im.width as f64 * lb.ratio.0, im.height as f64 * lb.ratio.1);
            let px: Vec<Label> = norm.iter().map(|row| row.to_pixels(w, h, lb.pad.0, lb.pad.1)).collect();
            // Upstream `xyn2xy(segment, ratio[0] * w, ratio[1] * h, padw, padh)`, f32 like its arrays.
            let (wf, hf, pw, ph) = (w as f32, h as f32, lb.pad.0 as f32, lb.pad.1 as f32);
            let px_polys: Vec<Polygon> = norm_polys.iter().map(|p| p.iter().map(|&[x, y]| [wf * x + pw, hf * y + ph]).collect()).collect();
            random_perspective(&lb.image, &px, &px_polys, &WarpParams::from(hyp), (0, 0), rng)
        };
        let (w, h) = (img.width as f64, img.height as f64);
        let mut out: ImageLabels = labels.iter().map(|l| l.to_normalized_clipped(w, h, CLIP_EPS)).collect();
        let mut masks = self.masks(&labels, &polys, img.height, img.width);
        let (mh, mw) = (img.height / self.mask_ratio, img.width / self.mask_ratio);
        augment_hsv(&mut img, hyp.hsv_h, hyp.hsv_s, hyp.hsv_v, rng);
        if rng.f64() < hyp.flipud {
            flip_ud_with_labels(&mut img, &mut out);
            flip_masks_ud(&mut masks, mh, mw);
        }
        if rng.f64() < hyp.fliplr {
            flip_lr_with_labels(&mut img, &mut out);
            flip_masks_lr(&mut masks, mw);
        }
        if img.width != s || img.height != s {
            return Err(anyhow!("internal: sample is {}x{}, expected {s}x{s}", img.width, img.height));
        }
        Ok(Augmented { img, labels: out, masks })
    }

    /// A mosaic, then with probability `hyp.mixup` a mixup with a second one.
    fn mosaic_mixup(&self, index: usize, rng: &mut Rng) -> Result<(RgbImage, Vec<Label>, Vec<Polygon>)> {
        let (n, s, hyp) = (self.n(), self.imgsz, &self.hyp);
        let (mut img, mut labels, mut polys) = load_mosaic(index, n, s, hyp, rng, |i| self.load(i))?;
        if rng.f64() < hyp.mixup {
            let j = rng.below(n);
            let (img2, labels2, polys2) = load_mosaic(j, n, s, hyp, rng, |i| self.load(i))?;
            mixup(&mut img, &mut labels, &mut polys, &img2, &labels2, &polys2, rng);
        }
        Ok((img, labels, polys))
    }

    /// Each label's mask (upstream `polygons2masks`), when the loader has polygon labels; a
    /// label without a polygon (box-only rows mixed in) is drawn as its box.
    fn masks(&self, labels: &[Label], polys: &[Polygon], h: usize, w: usize) -> Vec<u8> {
        if self.segments.is_none() {
            return Vec::new();
        }
        let r = self.mask_ratio;
        labels
            .iter()
            .enumerate()
            .flat_map(|(i, l)| match polys.get(i).filter(|_| polys.len() == labels.len()) {
                Some(p) => polygon_mask_downsampled(h, w, p, r),
                None => {
                    let [x1, y1, x2, y2] = l.xyxy;
                    polygon_mask_downsampled(h, w, &[[x1, y1], [x2, y1], [x2, y2], [x1, y2]], r)
                }
            })
            .collect()
    }

    /// Sample at `position` of epoch `epoch` whose first choice is dataset
    /// index `first`; redraws deterministically when images fail to load.
    fn sample(&self, epoch: u64, position: usize, first: usize) -> Option<(Augmented, usize)> {
        for attempt in 0..MAX_ATTEMPTS {
            let mut rng = Rng::from_parts(&[self.seed, epoch, position as u64, attempt]);
            let index = if attempt == 0 { first } else { rng.below(self.n()) };
            if let Ok(a) = self.augmented(index, &mut rng) {
                return Some((a, index));
            }
        }
        eprintln!("WARNING: training sample {position} of epoch {epoch} dropped: {MAX_ATTEMPTS} draws hit unreadable images");
        None
    }
}

/// Decodes an image file to RGB8 (EXIF orientation applied, via
/// [`crate::data::image_io::decode_rgb8`]); images under 10 px on a side are
/// rejected like upstream's `verify_image_label`.
fn decode_rgb(path: &Path) -> Result<RgbImage> {
    let img = decode_rgb8(path)?;
    if img.width < 10 || img.height < 10 {
        bail!("image size {}x{} <10 pixels", img.width, img.height);
    }
    Ok(img)
}

// ---------------------------------------------------------------------------
// Parallel epoch iterator
// ---------------------------------------------------------------------------

type Sample = Option<(Vec<u8>, ImageLabels, Vec<u8>, usize)>; // CHW bytes, labels, masks, index

struct Slot {
    len: usize,
    filled: usize,
    images: Vec<u8>,
    samples: Vec<Option<(ImageLabels, Vec<u8>, usize)>>,
}

struct State {
    next_pos: usize,
    consumed: usize,
    slots: HashMap<usize, Slot>,
    panic: Option<Box<dyn std::any::Any + Send>>,
}

struct Shared {
    inner: Arc<Inner>,
    epoch: u64,
    perm: Vec<usize>,
    nb: usize,
    state: Mutex<State>,
    work_cv: Condvar,
    done_cv: Condvar,
    stop: AtomicBool,
}

impl Shared {
    fn batch_len(&self, b: usize) -> usize {
        let bs = self.inner.batch;
        bs.min(self.perm.len() - b * bs)
    }

    fn build_sample(&self, pos: usize) -> Sample {
        let s = self.inner.imgsz;
        self.inner.sample(self.epoch, pos, self.perm[pos]).map(|(a, index)| {
            let mut chw = vec![0u8; 3 * s * s];
            a.img.write_chw(&mut chw);
            (chw, a.labels, a.masks, index)
        })
    }

    fn worker(&self) {
        let bs = self.inner.batch;
        loop {
            let pos = {
                let mut st = lock(&self.state);
                loop {
                    if self.stop.load(Ordering::Relaxed) || st.next_pos >= self.perm.len() {
                        return;
                    }
                    if st.next_pos / bs < st.consumed + self.inner.prefetch {
                        break;
                    }
                    st = self.work_cv.wait(st).unwrap_or_else(|e| e.into_inner());
                }
                st.next_pos += 1;
                st.next_pos - 1
            };
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.build_sample(pos)));
            let mut st = lock(&self.state);
            match result {
                Ok(sample) => self.store(&mut st, pos, sample),
                Err(payload) => {
                    st.panic.get_or_insert(payload);
                    self.stop.store(true, Ordering::Relaxed);
                }
            }
            drop(st);
            self.done_cv.notify_all();
        }
    }

    fn store(&self, st: &mut State, pos: usize, sample: Sample) {
        let bs = self.inner.batch;
        let (b, j) = (pos / bs, pos % bs);
        let plane = 3 * self.inner.imgsz * self.inner.imgsz;
        let len = self.batch_len(b);
        let slot = st.slots.entry(b).or_insert_with(|| Slot { len, filled: 0, images: vec![0u8; len * plane], samples: vec![None; len] });
        if let Some((chw, labels, masks, index)) = sample {
            slot.images[j * plane..(j + 1) * plane].copy_from_slice(&chw);
            slot.samples[j] = Some((labels, masks, index));
        }
        slot.filled += 1;
    }

    fn finish(&self, slot: Slot) -> TrainBatch {
        let plane = 3 * self.inner.imgsz * self.inner.imgsz;
        let mut images = slot.images;
        let (mut labels, mut indices, mut masks) = (Vec::new(), Vec::new(), Vec::new());
        let mut k = 0;
        for (j, s) in slot.samples.into_iter().enumerate() {
            let Some((ls, ms, index)) = s else { continue };
            if k != j {
                images.copy_within(j * plane..(j + 1) * plane, k * plane);
            }
            labels.extend(ls.into_iter().map(|l| (k, l.class, l.xywhn)));
            masks.extend(ms);
            indices.push(index);
            k += 1;
        }
        images.truncate(k * plane);
        let mask_size = if self.inner.segments.is_some() { self.inner.imgsz / self.inner.mask_ratio } else { 0 };
        TrainBatch { images, batch: k, size: self.inner.imgsz, labels, indices, masks, mask_size }
    }
}

/// Iterator over one epoch's batches; see [`TrainLoader::iter`].
pub struct EpochIter {
    shared: Arc<Shared>,
    handles: Vec<JoinHandle<()>>,
    next: usize,
}

impl EpochIter {
    fn new(inner: Arc<Inner>, epoch: u64) -> Self {
        let mut perm: Vec<usize> = (0..inner.items.len()).collect();
        Rng::from_parts(&[inner.seed, epoch, PERM_TAG]).shuffle(&mut perm);
        let nb = perm.len().div_ceil(inner.batch);
        let workers = inner.workers;
        let shared = Arc::new(Shared {
            inner,
            epoch,
            perm,
            nb,
            state: Mutex::new(State { next_pos: 0, consumed: 0, slots: HashMap::new(), panic: None }),
            work_cv: Condvar::new(),
            done_cv: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let handles = (0..workers)
            .map(|w| {
                let sh = shared.clone();
                std::thread::Builder::new().name(format!("train-loader-{w}")).spawn(move || sh.worker()).expect("spawning a train loader thread")
            })
            .collect();
        EpochIter { shared, handles, next: 0 }
    }

    /// Batches left in this pass.
    pub fn remaining(&self) -> usize {
        self.shared.nb - self.next
    }
}

impl Iterator for EpochIter {
    type Item = TrainBatch;

    fn next(&mut self) -> Option<TrainBatch> {
        let sh = &self.shared;
        if self.next >= sh.nb {
            return None;
        }
        let b = self.next;
        let slot = if self.handles.is_empty() {
            // synchronous: build this batch's samples here
            let bs = sh.inner.batch;
            let mut st = lock(&sh.state);
            for pos in b * bs..b * bs + sh.batch_len(b) {
                let sample = sh.build_sample(pos);
                sh.store(&mut st, pos, sample);
            }
            st.slots.remove(&b).expect("batch just built")
        } else {
            let mut st = lock(&sh.state);
            loop {
                if let Some(p) = st.panic.take() {
                    drop(st);
                    std::panic::resume_unwind(p);
                }
                if st.slots.get(&b).is_some_and(|s| s.filled == s.len) {
                    break;
                }
                st = sh.done_cv.wait(st).unwrap_or_else(|e| e.into_inner());
            }
            let slot = st.slots.remove(&b).expect("checked above");
            st.consumed = b + 1;
            drop(st);
            sh.work_cv.notify_all();
            slot
        };
        self.next += 1;
        let batch = sh.finish(slot);
        if batch.batch == 0 {
            eprintln!("WARNING: training batch {b} of epoch {} is empty: no loadable images", sh.epoch);
        }
        Some(batch)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining(), Some(self.remaining()))
    }
}

impl ExactSizeIterator for EpochIter {}

impl Drop for EpochIter {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        {
            let _guard = lock(&self.shared.state);
            self.shared.work_cv.notify_all();
        }
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_png(dir: &Path, name: &str, w: u32, h: u32, boxes: &[(u32, u32, u32, u32, [u8; 3])]) -> PathBuf {
        let mut img = image::RgbImage::from_pixel(w, h, image::Rgb([0, 0, 0]));
        for &(x1, y1, x2, y2, c) in boxes {
            for y in y1..y2 {
                for x in x1..x2 {
                    img.put_pixel(x, y, image::Rgb(c));
                }
            }
        }
        let p = dir.join(name);
        img.save(&p).unwrap();
        p
    }

    #[test]
    fn letterbox_path_keeps_box_on_the_drawn_pixels() {
        let dir = tempfile::tempdir().unwrap();
        // 80x40 image, red box at x 20..40, y 10..30
        let p = write_png(dir.path(), "a.png", 80, 40, &[(20, 10, 40, 30, [255, 0, 0])]);
        let labels = vec![LabelRow { class: 2, xywhn: [30.0 / 80.0, 20.0 / 40.0, 20.0 / 80.0, 20.0 / 40.0] }];
        let mut hyp = Hyp::no_augment();
        hyp.fliplr = 1.0; // always mirror
        let loader = TrainLoader::new(vec![(p, labels)], 64, 1, hyp, 1, 0);
        let (img, l, _) = loader.sample(0, 0).unwrap();
        assert_eq!((img.width, img.height), (64, 64));
        // scale 64/80 = 0.8 -> 64x32 image letterboxed with dh = 16;
        // box x 16..32 mirrored -> 32..48, y 8+16..24+16 = 24..40
        assert_eq!(l.len(), 1);
        let LabelRow { class: c, xywhn: b } = l[0];
        assert_eq!(c, 2);
        let want = [40.0 / 64.0, 32.0 / 64.0, 16.0 / 64.0, 16.0 / 64.0];
        for (g, w) in b.iter().zip(want) {
            assert!((g - w).abs() < 1e-4, "{b:?} vs {want:?}");
        }
        assert_eq!(img.get(40, 32), [255, 0, 0]);
        assert_eq!(img.get(20, 32), [0, 0, 0]);
        assert_eq!(img.get(40, 10), [114, 114, 114]);
    }

    #[test]
    fn bad_images_are_reported_once_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let good = write_png(dir.path(), "good.png", 32, 32, &[(4, 4, 20, 20, [0, 255, 0])]);
        let bad = dir.path().join("bad.jpg");
        std::fs::write(&bad, b"not an image").unwrap();
        let samples = vec![(bad.clone(), vec![]), (good, vec![LabelRow { class: 0, xywhn: [0.375, 0.375, 0.5, 0.5] }])];
        let loader = TrainLoader::new(samples, 32, 2, Hyp::no_augment(), 3, 2);
        for e in 0..3 {
            let batches: Vec<_> = loader.iter(e).collect();
            assert_eq!(batches.len(), 1);
            assert_eq!(batches[0].batch, 2);
            assert!(batches[0].indices.iter().all(|&i| i == 1));
        }
        let badlist = loader.bad_images();
        assert_eq!(badlist.len(), 1);
        assert_eq!(badlist[0].0, bad);
    }
}
