//! The validation set on the shapes-mini fixture and on broken data sets.

use std::fs;
use std::path::{Path, PathBuf};

use yolo_qat::data::config::DataConfig;
use yolo_qat::data::val_set::{ValSet, ValSetOptions};

const MINI: &str = "../shared/data/shapes-mini";

fn options(imgsz: usize, batch_size: usize) -> ValSetOptions {
    ValSetOptions { imgsz, batch_size, ..Default::default() }
}

fn mini_val(batch_size: usize) -> ValSet {
    let cfg = DataConfig::load(&Path::new(MINI).join("shapes.yaml")).unwrap();
    assert_eq!(cfg.nc(), 6);
    ValSet::load(&cfg.val, cfg.nc(), options(320, batch_size)).unwrap()
}

fn stem(p: &Path) -> String {
    p.file_stem().unwrap().to_string_lossy().into_owned()
}

#[test]
fn shapes_mini_images_labels_and_order() {
    let set = mini_val(16);
    // Counted from the files themselves: one entry per image, one label per label-file row.
    let images =
        std::fs::read_dir(Path::new(MINI).join("images/val")).unwrap().filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "jpg")).count();
    let rows: usize = std::fs::read_dir(Path::new(MINI).join("labels/val"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap().lines().filter(|l| !l.trim().is_empty()).count())
        .sum();
    assert!(images > 0 && rows > 0);
    assert_eq!(set.len(), images);
    assert!(set.warnings.is_empty(), "{:?}", set.warnings);
    assert_eq!(set.num_labels(), rows);
    // sorted by h/w: val_000000 (368/508) first, val_000009 (474/344) last
    let order: Vec<String> = set.entries.iter().map(|e| stem(&e.path)).collect();
    assert_eq!(order[..3], ["val_000000", "val_000012", "val_000006"]);
    assert_eq!(order[15], "val_000009");
    let counts: Vec<usize> = set.entries.iter().map(|e| e.rows.len()).collect();
    assert_eq!(counts, [1, 7, 9, 10, 8, 4, 5, 5, 2, 5, 9, 8, 8, 2, 8, 1]);
    assert_eq!(set.entries[0].orig_hw, (368, 508));
}

#[test]
fn shapes_mini_batch_shapes() {
    assert_eq!(mini_val(16).batch_shapes, vec![(352, 352)]);
    assert_eq!(mini_val(4).batch_shapes, vec![(320, 352), (352, 352), (352, 352), (352, 288)]);
    assert_eq!(mini_val(5).batch_shapes, vec![(320, 352), (352, 352), (352, 320), (352, 256)]);
}

#[test]
fn shapes_mini_batch_contents() {
    let set = mini_val(16);
    let b = set.load_batch(0).unwrap();
    assert_eq!((b.batch, b.height, b.width), (16, 352, 352));
    assert_eq!(b.images.len(), 16 * 3 * 352 * 352);
    let first = &b.items[0];
    // 508x368 -> 320x231 (upstream yolov9: int(231.8)), letterboxed into 352x352
    assert_eq!(first.orig_hw, (368, 508));
    assert_eq!(first.ratio, (231.0 / 368.0, 320.0 / 508.0));
    assert_eq!(first.pad, (16.0, 60.5));
    assert_eq!(first.labels.len(), 1);
    let l = first.labels[0];
    assert_eq!(l.class, 0);
    // label 0.251401 0.566144 0.085241 0.101888 of a 508x368 image. val.py maps
    // labels back with one gain, h/h0 = 231/368, for both axes while x was scaled
    // by 320/508: x comes back 0.35% large, as upstream's does.
    let gx = (320.0 / 508.0) / (231.0 / 368.0);
    let expect = [
        (0.251401 - 0.085241 / 2.0) * 508.0 * gx,
        (0.566144 - 0.101888 / 2.0) * 368.0,
        (0.251401 + 0.085241 / 2.0) * 508.0 * gx,
        (0.566144 + 0.101888 / 2.0) * 368.0,
    ];
    for (got, want) in l.xyxy.iter().zip(expect) {
        assert!((*got as f64 - want).abs() < 0.2, "{:?} vs {:?}", l.xyxy, expect);
    }
    // grey border above the image in every channel, image content below it
    let plane = 352 * 352;
    assert!((0..3).all(|c| b.images[c * plane..c * plane + 60 * 352].iter().all(|&v| v == 114)));
    assert!(b.images[60 * 352 + 16..60 * 352 + 336].iter().any(|&v| v != 114));
}

#[test]
fn prefetch_matches_direct_loading() {
    let set = mini_val(5);
    let direct: Vec<_> = set.batches().map(|b| b.unwrap()).collect();
    let fetched: Vec<_> = set.prefetch(2).map(|b| b.unwrap()).collect();
    assert_eq!(direct.len(), 4);
    assert_eq!(fetched.len(), 4);
    for (a, b) in direct.iter().zip(&fetched) {
        assert_eq!((a.batch, a.height, a.width), (b.batch, b.height, b.width));
        assert_eq!(a.items, b.items);
        assert!(a.images == b.images);
    }
    // dropping a prefetcher early stops its thread
    let mut p = set.prefetch(1);
    assert!(p.next().is_some());
    drop(p);
}

/// A small data set: `n` shapes-mini val images with their labels.
fn small_dataset(n: usize) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    for d in ["images/val", "labels/val"] {
        fs::create_dir_all(t.path().join(d)).unwrap();
    }
    for i in 0..n {
        let name = format!("val_{i:06}");
        fs::copy(Path::new(MINI).join(format!("images/val/{name}.jpg")), t.path().join(format!("images/val/{name}.jpg"))).unwrap();
        fs::copy(Path::new(MINI).join(format!("labels/val/{name}.txt")), t.path().join(format!("labels/val/{name}.txt"))).unwrap();
    }
    fs::write(t.path().join("data.yaml"), "path: .\nval: images/val\nnames: [circle, square, triangle, star, cross, ring]\n").unwrap();
    t
}

fn load(dir: &Path) -> anyhow::Result<ValSet> {
    let cfg = DataConfig::load(&dir.join("data.yaml"))?;
    ValSet::load(&cfg.val, cfg.nc(), options(320, 16))
}

#[test]
fn missing_val_folder_is_a_clear_error() {
    let t = small_dataset(0);
    fs::write(t.path().join("data.yaml"), "path: .\nval: images/missing\nnames: [a]\n").unwrap();
    let e = load(t.path()).unwrap_err().to_string();
    assert!(e.starts_with("data.yaml: val folder images/missing does not exist"), "{e}");
}

#[test]
fn empty_val_set_is_a_clear_error() {
    let t = small_dataset(0);
    let e = load(t.path()).unwrap_err().to_string();
    assert!(e.starts_with("no images found in "), "{e}");
    assert!(e.contains("images/val"), "{e}");
}

#[test]
fn corrupt_jpeg_is_skipped_with_a_warning() {
    let t = small_dataset(2);
    let bad: PathBuf = t.path().join("images/val/broken.jpg");
    fs::write(&bad, b"\xff\xd8 this is not a jpeg").unwrap();
    let set = load(t.path()).unwrap();
    assert_eq!(set.len(), 2);
    assert_eq!(set.warnings.len(), 1, "{:?}", set.warnings);
    let w = &set.warnings[0];
    assert!(w.starts_with(&format!("{}: ignoring corrupt image/label:", bad.display())), "{w}");
}

#[test]
fn class_outside_names_is_dropped_with_a_warning() {
    let t = small_dataset(2);
    let label = t.path().join("labels/val/val_000001.txt");
    let mut text = fs::read_to_string(&label).unwrap();
    text.push_str("9 0.5 0.5 0.1 0.1\n");
    fs::write(&label, text).unwrap();
    let set = load(t.path()).unwrap();
    assert_eq!(set.len(), 2);
    assert_eq!(set.num_labels(), 1 + 8);
    assert_eq!(set.warnings, vec![format!("{}: class 9 outside [0, 6), label dropped", label.display())]);
}

#[test]
fn invalid_label_file_drops_its_image_like_upstream() {
    let t = small_dataset(2);
    let label = t.path().join("labels/val/val_000000.txt");
    fs::write(&label, "0 0.5 0.5 0.1\n").unwrap();
    let set = load(t.path()).unwrap();
    assert_eq!(set.len(), 1);
    assert!(set.warnings[0].contains("labels require 5 columns, 4 columns detected"), "{:?}", set.warnings);
}
