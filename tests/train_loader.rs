//! Integration tests of the augmented training loader on
//! `../shared/data/shapes-mini` and on synthetic images.

mod common;

use std::path::{Path, PathBuf};
use std::time::Instant;

use yolo_qat::data::hyp::Hyp;
use yolo_qat::data::labels::LabelRow;
use yolo_qat::data::train_loader::{ImageLabels, TrainBatch, TrainLoader};
use yolo_qat::data::RgbImage;

/// YOLO label file for an image: `/images/` -> `/labels/`, extension `.txt`.
fn read_labels(img: &Path) -> ImageLabels {
    let s = img.to_string_lossy();
    let i = s.rfind("/images/").expect("images dir");
    let lp = format!("{}/labels/{}", &s[..i], &s[i + 8..]);
    let lp = Path::new(&lp).with_extension("txt");
    let text = std::fs::read_to_string(&lp).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let v: Vec<f32> = l.split_whitespace().map(|x| x.parse().unwrap()).collect();
            (v.len() == 5).then(|| LabelRow { class: v[0] as usize, xywhn: [v[1], v[2], v[3], v[4]] })
        })
        .collect()
}

/// The shapes-mini training images; panics (naming the folder) when they are missing.
fn shapes_images() -> Vec<PathBuf> {
    common::images_in(common::TRAIN_IMAGES)
}

fn shapes_loader(imgsz: usize, batch: usize, hyp: Hyp, seed: u64, workers: usize) -> TrainLoader {
    TrainLoader::from_paths(shapes_images(), read_labels, imgsz, batch, hyp, seed, workers)
}

fn check_batch(b: &TrainBatch, imgsz: usize) {
    assert_eq!(b.size, imgsz);
    assert_eq!(b.images.len(), b.batch * 3 * imgsz * imgsz);
    assert_eq!(b.indices.len(), b.batch);
    for &(i, _c, [cx, cy, w, h]) in &b.labels {
        assert!(i < b.batch);
        assert!(w > 0.0 && h > 0.0, "{cx} {cy} {w} {h}");
        assert!(cx - w / 2.0 >= -1e-5 && cx + w / 2.0 <= 1.0 + 1e-5, "x out of image: {cx} {w}");
        assert!(cy - h / 2.0 >= -1e-5 && cy + h / 2.0 <= 1.0 + 1e-5, "y out of image: {cy} {h}");
    }
}

#[test]
fn shapes_batches_have_the_right_shape_and_labels_inside() {
    let loader = shapes_loader(320, 8, Hyp::scratch_high(), 57, 2);
    assert_eq!(loader.len(), 32);
    assert_eq!(loader.batches_per_epoch(), 4);
    let batches: Vec<TrainBatch> = loader.iter(0).collect();
    assert_eq!(batches.len(), 4);
    let mut nlabels = 0;
    for b in &batches {
        assert_eq!(b.batch, 8);
        check_batch(b, 320);
        nlabels += b.labels.len();
    }
    assert!(nlabels > 32, "mosaics should carry many labels, got {nlabels}");
    // every image visited once per epoch
    let mut idx: Vec<usize> = batches.iter().flat_map(|b| b.indices.clone()).collect();
    idx.sort();
    assert_eq!(idx, (0..32).collect::<Vec<_>>());
    assert!(loader.bad_images().is_empty());
}

#[test]
fn short_last_batch_and_epochs_differ() {
    let loader = shapes_loader(128, 5, Hyp::scratch_high(), 1, 2);
    let b0: Vec<TrainBatch> = loader.iter(0).collect();
    assert_eq!(b0.len(), 7);
    assert_eq!(b0.last().unwrap().batch, 2);
    for b in &b0 {
        check_batch(b, 128);
    }
    let b1: Vec<TrainBatch> = loader.iter(1).collect();
    assert_ne!(b0[0].indices, b1[0].indices);
    // the endless iterator crosses epochs
    let n = loader.iter_forever(0).take(15).count();
    assert_eq!(n, 15);
}

#[test]
fn deterministic_for_a_seed_whatever_the_workers() {
    let a = shapes_loader(160, 4, Hyp::scratch_high(), 123, 0);
    let b = shapes_loader(160, 4, Hyp::scratch_high(), 123, 3);
    let c = shapes_loader(160, 4, Hyp::scratch_high(), 124, 2);
    let ba: Vec<TrainBatch> = a.iter(2).take(3).collect();
    let bb: Vec<TrainBatch> = b.iter(2).take(3).collect();
    let bc: Vec<TrainBatch> = c.iter(2).take(3).collect();
    assert_eq!(ba, bb);
    assert_ne!(ba, bc);
    // and the same loader again (cached or not)
    let again: Vec<TrainBatch> = b.iter(2).take(3).collect();
    assert_eq!(ba, again);
    let cached = shapes_loader(160, 4, Hyp::scratch_high(), 123, 2).with_cache(true);
    let c1: Vec<TrainBatch> = cached.iter(2).take(3).collect();
    let c2: Vec<TrainBatch> = cached.iter(2).take(3).collect();
    assert_eq!(ba, c1);
    assert_eq!(ba, c2);
}

#[test]
fn dropping_the_iterator_early_stops_cleanly() {
    let loader = shapes_loader(320, 4, Hyp::scratch_high(), 0, 2);
    let mut it = loader.iter(0);
    let first = it.next().unwrap();
    check_batch(&first, 320);
    drop(it); // joins the workers
}

/// Synthetic image: black background, one coloured box.
fn synthetic(dir: &Path) -> (PathBuf, ImageLabels) {
    let (w, h) = (96u32, 64u32);
    let mut img = image::RgbImage::from_pixel(w, h, image::Rgb([0, 0, 0]));
    for y in 16..40 {
        for x in 10..50 {
            img.put_pixel(x, y, image::Rgb([255, 0, 0]));
        }
    }
    let p = dir.join("synthetic.png");
    img.save(&p).unwrap();
    (p, vec![LabelRow { class: 4, xywhn: [30.0 / 96.0, 28.0 / 64.0, 40.0 / 96.0, 24.0 / 64.0] }])
}

/// Bounding box of the red pixels, normalized, from a CHW batch image.
fn red_bbox(b: &TrainBatch, k: usize) -> Option<[f32; 4]> {
    let s = b.size;
    let plane = s * s;
    let img = &b.images[k * 3 * plane..(k + 1) * 3 * plane];
    let (mut x1, mut y1, mut x2, mut y2) = (usize::MAX, usize::MAX, 0, 0);
    for y in 0..s {
        for x in 0..s {
            let (r, g, bl) = (img[y * s + x], img[plane + y * s + x], img[2 * plane + y * s + x]);
            if r > 150 && g < 90 && bl < 90 {
                x1 = x1.min(x);
                y1 = y1.min(y);
                x2 = x2.max(x + 1);
                y2 = y2.max(y + 1);
            }
        }
    }
    (x2 > 0).then(|| {
        let f = s as f32;
        [(x1 + x2) as f32 / 2.0 / f, (y1 + y2) as f32 / 2.0 / f, (x2 - x1) as f32 / f, (y2 - y1) as f32 / f]
    })
}

fn assert_label_matches_pixels(b: &TrainBatch, tol_px: f32) {
    assert_eq!(b.batch, 1);
    assert_eq!(b.labels.len(), 1, "{:?}", b.labels);
    let (_, cls, lab) = b.labels[0];
    assert_eq!(cls, 4);
    let px = red_bbox(b, 0).expect("red box visible");
    let tol = tol_px / b.size as f32;
    for (l, p) in lab.iter().zip(px) {
        assert!((l - p).abs() <= tol, "label {lab:?} vs drawn {px:?}");
    }
}

#[test]
fn flips_move_labels_with_the_pixels() {
    let dir = tempfile::tempdir().unwrap();
    let (p, labels) = synthetic(dir.path());
    for (ud, lr) in [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (1.0, 1.0)] {
        let mut hyp = Hyp::no_augment();
        hyp.flipud = ud;
        hyp.fliplr = lr;
        let loader = TrainLoader::new(vec![(p.clone(), labels.clone())], 128, 1, hyp, 5, 0);
        let b = loader.iter(0).next().unwrap();
        assert_label_matches_pixels(&b, 1.01);
        let (_, _, l) = b.labels[0];
        // unflipped: 96x64 -> 128x85 (+ letterbox), box centre x = 30/96*128 = 40
        let cx = if lr == 1.0 { 1.0 - 40.0 / 128.0 } else { 40.0 / 128.0 };
        assert!((l[0] - cx).abs() < 1e-3, "{l:?} (ud {ud}, lr {lr})");
    }
}

#[test]
fn geometric_augment_keeps_labels_on_the_box() {
    let dir = tempfile::tempdir().unwrap();
    let (p, labels) = synthetic(dir.path());
    let mut hyp = Hyp::no_augment();
    hyp.translate = 0.1;
    hyp.scale = 0.5;
    hyp.fliplr = 0.5;
    hyp.flipud = 0.5;
    let loader = TrainLoader::new(vec![(p, labels)], 128, 1, hyp, 9, 2);
    let mut seen = 0;
    for e in 0..12 {
        let b = loader.iter(e).next().unwrap();
        if b.labels.is_empty() {
            continue; // box pushed out / too small after scaling: dropped like upstream
        }
        assert_label_matches_pixels(&b, 1.5);
        seen += 1;
    }
    assert!(seen >= 6, "only {seen} samples kept their box");
}

#[test]
fn mosaic_of_one_image_labels_match_pixels() {
    let dir = tempfile::tempdir().unwrap();
    let (p, labels) = synthetic(dir.path());
    let mut hyp = Hyp::no_augment();
    hyp.mosaic = 1.0;
    hyp.scale = 0.3;
    hyp.translate = 0.1;
    let loader = TrainLoader::new(vec![(p, labels)], 128, 1, hyp, 2, 0);
    // with one image every tile is the same; check every label box is red
    for e in 0..8 {
        let b = loader.iter(e).next().unwrap();
        check_batch(&b, 128);
        let s = b.size;
        let plane = s * s;
        for &(_, c, [cx, cy, w, h]) in &b.labels {
            assert_eq!(c, 4);
            // the centre pixel of every kept box is red
            let (x, y) = (((cx * s as f32) as usize).min(s - 1), ((cy * s as f32) as usize).min(s - 1));
            let px = [b.images[y * s + x], b.images[plane + y * s + x], b.images[2 * plane + y * s + x]];
            assert!(px[0] > 150 && px[1] < 90, "label {cx},{cy},{w},{h} centre pixel {px:?}");
        }
    }
}

fn bench(imgsz: usize, workers: usize) -> f64 {
    let loader = shapes_loader(imgsz, 8, Hyp::scratch_high(), 0, workers);
    let t = Instant::now();
    let mut n = 0;
    for b in loader.iter_forever(0).take(12) {
        n += b.batch;
    }
    n as f64 / t.elapsed().as_secs_f64()
}

/// `cargo test --release --test train_loader -- --ignored --nocapture bench`
#[test]
#[ignore]
fn bench_images_per_second() {
    let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    for imgsz in [320, 640] {
        let one = bench(imgsz, 1);
        let all = bench(imgsz, workers);
        println!("imgsz {imgsz}: {one:.1} images/s on 1 worker, {all:.1} images/s on {workers} workers");
    }
}

#[test]
fn rgb_image_chw_layout() {
    let img = RgbImage::from_raw(2, 1, vec![1, 2, 3, 4, 5, 6]).unwrap();
    let mut out = vec![0; 6];
    img.write_chw(&mut out);
    assert_eq!(out, vec![1, 4, 2, 5, 3, 6]);
}
