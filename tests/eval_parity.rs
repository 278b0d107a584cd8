//! `eval` reproduces upstream val.py on shapes-mini (the fixture README's row:
//! imgsz 320, CPU fp32, batch 16): P 0.8813, R 0.6996, mAP50 0.7927, mAP 0.6361.

use std::path::Path;
use yolo_qat::checkpoint::load::load;
use yolo_qat::data::config::DataConfig;
use yolo_qat::data::val_set::{ValSet, ValSetOptions};
use yolo_qat::eval::validate::{evaluate, EvalOptions};

#[test]
fn shapes_mini_matches_upstream_val_py() {
    let model = load(Path::new("../shared/fixtures/yolov9-t-shapes-converted.pt")).unwrap();
    let data = DataConfig::load(Path::new("../shared/data/shapes-mini/shapes.yaml")).unwrap();
    let set = ValSet::load(&data.val, data.nc(), ValSetOptions { imgsz: 320, batch_size: 16, ..Default::default() }).unwrap();
    let mut opts = EvalOptions::new(320, 16, tch::Device::Cpu);
    opts.progress = false;
    let r = evaluate(&model, &set, &opts).unwrap();
    println!("P {:.4} R {:.4} mAP50 {:.4} mAP {:.4}", r.precision, r.recall, r.map50, r.map);
    assert_eq!((r.images, r.instances), (16, 92));
    assert!((r.precision - 0.8813).abs() <= 0.01, "P {}", r.precision);
    assert!((r.recall - 0.6996).abs() <= 0.01, "R {}", r.recall);
    assert!((r.map50 - 0.7927).abs() <= 0.002, "mAP50 {}", r.map50);
    assert!((r.map - 0.6361).abs() <= 0.002, "mAP {}", r.map);
}
