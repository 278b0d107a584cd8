//! The training loader with polygon labels (`../shared/data/shapes-mini-seg`): every label
//! gets a mask at `imgsz / 4`, drawn from the same warped polygon its box comes from, and
//! the flips mirror masks with the image (upstream `utils/segment/dataloaders.py`).

mod common;

use yolo_qat::data::config::DataConfig;
use yolo_qat::data::hyp::Hyp;
use yolo_qat::data::train_loader::TrainLoader;
use yolo_qat::data::val_set::{ValSet, ValSetOptions};

fn seg_loader(imgsz: usize, batch: usize, hyp: Hyp, seed: u64) -> TrainLoader {
    let data = DataConfig::load(&common::require(common::SEG_DATA)).unwrap();
    let opts = ValSetOptions { imgsz, batch_size: batch, rect: false, ..ValSetOptions::default() };
    let set = ValSet::load(&data.train, data.nc(), opts).unwrap();
    assert!(set.entries.iter().all(|e| e.segments.len() == e.rows.len() && !e.rows.is_empty()), "shapes-mini-seg has a polygon per label");
    let segments = set.entries.iter().map(|e| e.segments.clone()).collect();
    let samples = set.entries.into_iter().map(|e| (e.path, e.rows)).collect();
    TrainLoader::new(samples, imgsz, batch, hyp, seed, 2).with_segments(segments)
}

#[test]
fn every_label_has_a_mask_inside_its_box() {
    let (imgsz, ms) = (160usize, 40usize);
    let loader = seg_loader(imgsz, 4, Hyp::scratch_high(), 3);
    assert_eq!(loader.mask_size(), ms);
    let (mut labels, mut empty) = (0usize, 0usize);
    for b in loader.iter(0).chain(loader.iter(1)) {
        assert_eq!(b.mask_size, ms);
        assert_eq!(b.masks.len(), b.labels.len() * ms * ms, "one mask per label");
        for (k, &(_, _, [cx, cy, w, h])) in b.labels.iter().enumerate() {
            let m = &b.masks[k * ms * ms..(k + 1) * ms * ms];
            labels += 1;
            if m.iter().all(|&v| v == 0) {
                empty += 1;
                continue;
            }
            // Mask cell (x, y) samples source pixels 4x+1..4x+2: inside the box (in cells) up to one cell.
            let s = ms as f32;
            let (x1, y1, x2, y2) = ((cx - w / 2.0) * s - 1.0, (cy - h / 2.0) * s - 1.0, (cx + w / 2.0) * s + 1.0, (cy + h / 2.0) * s + 1.0);
            for (i, &v) in m.iter().enumerate() {
                if v == 1 {
                    let (x, y) = ((i % ms) as f32 + 0.5, (i / ms) as f32 + 0.5);
                    assert!(x >= x1 && x <= x2 && y >= y1 && y <= y2, "mask cell ({x}, {y}) outside its box ({x1}, {y1}, {x2}, {y2})");
                }
            }
        }
    }
    println!("{labels} labels, {empty} with an empty mask (thinner than the mask grid)");
    assert!(labels > 50);
    assert!(empty * 10 <= labels, "{empty} of {labels} masks empty");
}

#[test]
fn flips_mirror_the_masks_with_the_image() {
    let plain = Hyp { fliplr: 0.0, flipud: 0.0, ..Hyp::no_augment() };
    let lr = Hyp { fliplr: 1.0, ..plain.clone() };
    let ud = Hyp { flipud: 1.0, ..plain.clone() };
    let (imgsz, ms) = (128usize, 32usize);
    let sample = |h: &Hyp| seg_loader(imgsz, 1, h.clone(), 5).sample_with_masks(0, 2).unwrap();
    let (img, labels, masks, _) = sample(&plain);
    let (img_lr, labels_lr, masks_lr, _) = sample(&lr);
    let (_, labels_ud, masks_ud, _) = sample(&ud);
    assert!(!labels.is_empty());
    assert_eq!(masks.len(), labels.len() * ms * ms);
    assert!(masks.contains(&1));
    // The image, the labels' centres and the masks are mirrored together.
    assert_eq!(img_lr.data[..3], img.data[(imgsz - 1) * 3..imgsz * 3]);
    for (k, (a, b)) in labels.iter().zip(&labels_lr).enumerate() {
        assert!((a.xywhn[0] - (1.0 - b.xywhn[0])).abs() < 1e-6);
        for y in 0..ms {
            for x in 0..ms {
                let o = k * ms * ms + y * ms;
                assert_eq!(masks[o + x], masks_lr[o + ms - 1 - x], "label {k} cell ({x}, {y}) left-right");
                assert_eq!(masks[o + x], masks_ud[k * ms * ms + (ms - 1 - y) * ms + x], "label {k} cell ({x}, {y}) up-down");
            }
        }
    }
    assert_eq!(labels_ud.len(), labels.len());
}

#[test]
fn box_only_images_keep_their_labels_with_box_masks() {
    // The same images, every polygon dropped (as a box-only label file reads): no label is
    // lost to the polygon path, and each mask is its box filled.
    let data = DataConfig::load(&common::require(common::SEG_DATA)).unwrap();
    let opts = ValSetOptions { imgsz: 128, batch_size: 1, rect: false, ..ValSetOptions::default() };
    let set = ValSet::load(&data.train, data.nc(), opts).unwrap();
    let segments = set.entries.iter().map(|e| vec![Vec::new(); e.rows.len()]).collect();
    let samples: Vec<_> = set.entries.into_iter().map(|e| (e.path, e.rows)).collect();
    let hyp = Hyp { fliplr: 0.0, flipud: 0.0, ..Hyp::no_augment() };
    let plain = TrainLoader::new(samples.clone(), 128, 1, hyp.clone(), 5, 0);
    let boxes = TrainLoader::new(samples, 128, 1, hyp, 5, 0).with_segments(segments);
    let (_, want, _) = plain.sample(0, 2).unwrap();
    let (_, labels, masks, _) = boxes.sample_with_masks(0, 2).unwrap();
    assert_eq!(labels, want, "the labels are the box loader's");
    let ms = 32usize;
    assert_eq!(masks.len(), labels.len() * ms * ms);
    for (k, l) in labels.iter().enumerate() {
        let [cx, cy, w, h] = l.xywhn;
        // The box's centre cell is set, a cell well outside is not.
        let (x, y) = ((cx * ms as f32) as usize, (cy * ms as f32) as usize);
        if w * ms as f32 >= 2.0 && h * ms as f32 >= 2.0 {
            assert_eq!(masks[k * ms * ms + y * ms + x], 1, "label {k}: centre of its box");
        }
    }
}
