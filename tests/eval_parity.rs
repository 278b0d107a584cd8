//! `eval` reproduces upstream val.py on shapes-mini (the fixture README's row:
//! imgsz 320, CPU fp32, batch 16): P 0.8813, R 0.6996, mAP50 0.7927, mAP 0.6361.

use std::path::Path;
use yolo_qat::data::config::DataConfig;
use yolo_qat::data::val_set::{ValSet, ValSetOptions};
use yolo_qat::detector::load;
use yolo_qat::eval::validate::{evaluate, EvalOptions};

#[test]
fn shapes_mini_matches_upstream_val_py() {
    let model = load(Path::new("../shared/fixtures/yolov9-t-shapes-converted.pt")).unwrap();
    let data = DataConfig::load(Path::new("../shared/data/shapes-mini/shapes.yaml")).unwrap();
    let set = ValSet::load(&data.val, data.nc(), ValSetOptions { imgsz: 320, batch_size: 16, ..Default::default() }).unwrap();
    let mut opts = EvalOptions::new(tch::Device::Cpu);
    opts.progress = false;
    let r = evaluate(&model, &set, &opts).unwrap();
    println!("P {:.4} R {:.4} mAP50 {:.4} mAP {:.4}", r.precision, r.recall, r.map50, r.map);
    assert_eq!((r.images, r.instances), (16, 92));
    assert!((r.precision - 0.8813).abs() <= 0.01, "P {}", r.precision);
    assert!((r.recall - 0.6996).abs() <= 0.01, "R {}", r.recall);
    assert!((r.map50 - 0.7927).abs() <= 0.002, "mAP50 {}", r.map50);
    assert!((r.map - 0.6361).abs() <= 0.002, "mAP {}", r.map);
}

/// `eval` reproduces upstream segment/val.py (conf 0.001, NMS IoU 0.6, max_det 300)
/// on shapes-mini-seg (the fixture README's row: imgsz 320, CPU fp32, batch 8):
/// Box P 0.855, R 0.557, mAP50 0.661, mAP50-95 0.511;
/// Mask P 0.828, R 0.542, mAP50 0.642, mAP50-95 0.411 (printed with 3 digits).
#[test]
fn shapes_mini_seg_matches_upstream_segment_val_py() {
    let model = load(Path::new("../shared/fixtures/gelan-t-dseg-shapes.pt")).unwrap();
    let data = DataConfig::load(Path::new("../shared/data/shapes-mini-seg/shapes-seg.yaml")).unwrap();
    let set = ValSet::load(&data.val, data.nc(), ValSetOptions { imgsz: 320, batch_size: 8, ..Default::default() }).unwrap();
    let mut opts = EvalOptions::new(tch::Device::Cpu);
    opts.progress = false;
    assert_eq!(opts.seg_iou_thres, 0.6, "segment/val.py's NMS IoU for segmentation models");
    let r = evaluate(&model, &set, &opts).unwrap();
    let mask = r.mask.as_ref().expect("a segmentation model gives mask metrics");
    println!("box P {:.4} R {:.4} mAP50 {:.4} mAP {:.4}", r.precision, r.recall, r.map50, r.map);
    println!("mask P {:.4} R {:.4} mAP50 {:.4} mAP {:.4}", mask.precision, mask.recall, mask.map50, mask.map);
    assert_eq!((r.images, r.instances), (8, 47));
    let close = |what: &str, got: f64, want: f64, tol: f64| assert!((got - want).abs() <= tol, "{what} {got} (upstream {want})");
    close("box P", r.precision, 0.855, 0.01);
    close("box R", r.recall, 0.557, 0.01);
    close("box mAP50", r.map50, 0.661, 0.003);
    close("box mAP", r.map, 0.511, 0.003);
    close("mask P", mask.precision, 0.828, 0.01);
    close("mask R", mask.recall, 0.542, 0.01);
    close("mask mAP50", mask.map50, 0.642, 0.003);
    close("mask mAP", mask.map, 0.411, 0.003);
}
