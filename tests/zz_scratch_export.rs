use std::path::Path;
use tch::{Kind, Tensor};
use yolo_qat::checkpoint::load::load;
use yolo_qat::quant::calibrate::{calibrate, prepare};
use yolo_qat::quant::CalibMethod;
use yolo_qat::export::ort::{OnnxModel, OrtOptions, OrtOptimization};
use yolo_qat::export::ExportOptions;

#[test]
fn scratch() {
    let name = "yolov9-t-shapes-converted";
    let mut m = load(&Path::new("../shared/fixtures").join(format!("{name}.pt"))).unwrap();
    let refs: std::collections::BTreeMap<String, Tensor> = Tensor::read_safetensors(format!("../shared/fixtures/{name}.ref.safetensors")).unwrap().into_iter().collect();
    let x = refs["input"].shallow_clone();
    prepare(&mut m, &[], CalibMethod::Mse).unwrap();
    tch::manual_seed(7);
    let mut batches = vec![x.shallow_clone()];
    for _ in 0..3 { batches.push(Tensor::rand(x.size(), (Kind::Float, tch::Device::Cpu))); }
    calibrate(&mut m, batches.into_iter(), CalibMethod::Mse).unwrap();
    let a = m.forward(&x);
    let conf = a.narrow(1, 4, 6).amax([1], false).gt(0.25);
    let path = Path::new("/tmp/scratch/t.onnx");
    yolo_qat::export::export(&m, &ExportOptions { imgsz: (192, 256), batch: 2, ..Default::default() }, path).unwrap();
    let o = OnnxModel::load_with(path, &OrtOptions { optimization: OrtOptimization::Basic, threads: None }).unwrap();
    let y = o.run(&x).unwrap()[0].shallow_clone();
    let stats = |what: &str, b: &Tensor| {
        let b = b.to_kind(Kind::Float);
        let sd = (a.narrow(1,4,6) - b.narrow(1,4,6)).abs().amax([1], false).masked_select(&conf);
        let bd = (a.narrow(1,0,4) - b.narrow(1,0,4)).abs().amax([1], false).masked_select(&conf);
        println!("{what}: n {} score>0.02: {} box>1px: {} max score {:.4} max box {:.3}; overall max {:.3}", sd.numel(), sd.gt(0.02).sum(Kind::Int64).int64_value(&[]), bd.gt(1.0).sum(Kind::Int64).int64_value(&[]), sd.max().double_value(&[]), bd.max().double_value(&[]), (&a - &b).abs().max().double_value(&[]));
    };
    stats("ORT vs fq f32", &y);
    m.to(tch::Device::Cpu, Kind::Double);
    let z = m.forward(&x.to_kind(Kind::Double));
    stats("fq f64 vs fq f32", &z);
    stats("ORT vs fq f64 (as a)", &y);
    let _ = &z;
}
