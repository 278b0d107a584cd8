//! Reparameterization: the dual-head yolov9-t fixture, reduced to its GELAN,
//! computes the dual model's main-branch `output`; it survives our checkpoint format.

use std::collections::BTreeMap;
use std::path::Path;
use tch::Tensor;
use yolo_qat::detector::Detector;
use yolo_qat::detector::{load, read_checkpoint};
use yolo_qat::model::parse::build;
use yolo_qat::model::reparam::{infer_target, map_names};
use yolo_qat::model::weights::StateDict;
use yolo_qat::model::ModelConfig;

const DUAL: &str = "../shared/fixtures/yolov9-t-dual.pt";

fn convert(cfg: Option<&str>) -> Detector {
    let ck = read_checkpoint(Path::new(DUAL)).unwrap();
    let target = match cfg {
        Some(p) => ModelConfig::from_file(Path::new(p)).unwrap().with_nc(ck.cfg.nc).unwrap(),
        None => infer_target(&ck.cfg).unwrap(),
    };
    let tensors = map_names(&ck.cfg, &target, ck.state.tensors).unwrap();
    let eps = map_names(&ck.cfg, &target, ck.state.bn_eps).unwrap();
    let mut sd = StateDict::new(tensors, eps);
    let graph = build(&target, &mut sd).unwrap();
    assert!(sd.unused().is_empty(), "unused {:?}", sd.unused());
    Detector { cfg: target, names: ck.names, graph, quant: None, source: DUAL.into() }
}

fn refs() -> BTreeMap<String, Tensor> {
    Tensor::read_safetensors("../shared/fixtures/yolov9-t-dual.ref.safetensors").unwrap().into_iter().collect()
}

fn rel_err(a: &Tensor, b: &Tensor) -> f64 {
    f64::try_from((a - b).abs().max()).unwrap() / f64::try_from(b.abs().max()).unwrap()
}

#[test]
fn inferred_gelan_reproduces_the_dual_main_branch() {
    let m = convert(None);
    assert!(!m.graph.is_dual());
    assert_eq!(m.graph.layers.len(), 23);
    let r = refs();
    let err = rel_err(&m.forward(&r["input"]), &r["output"]);
    assert!(err <= 1e-4, "rel err {err}");
}

#[test]
fn upstream_gelan_t_yaml_gives_the_same_model() {
    let m = convert(Some("configs/gelan-t.yaml"));
    let r = refs();
    assert!(rel_err(&m.forward(&r["input"]), &r["output"]) <= 1e-4);
}

#[test]
fn converted_model_round_trips_through_safetensors() {
    let m = convert(None);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("converted.safetensors");
    m.save(&path, serde_json::json!({})).unwrap();
    let back = load(&path).unwrap();
    let r = refs();
    assert!(rel_err(&back.forward(&r["input"]), &r["output"]) <= 1e-4);
}

#[test]
fn single_head_models_are_refused() {
    let ck = read_checkpoint(Path::new("../shared/fixtures/gelan-c-mini.pt")).unwrap();
    let e = infer_target(&ck.cfg).unwrap_err().to_string();
    assert!(e.contains("not a dual-head model"), "{e}");
}
