//! Upstream's other segmentation heads (issue 15): `Segment` with its `Proto` module
//! (gelan-c-seg.yaml) and `DualDSegment` (yolov9-c-dseg.yaml), and `reparameterize` of a
//! `DualDSegment` model into its `DSegment` main branch. No upstream checkpoint of these
//! exists here: the parameter shapes are derived from upstream's module definitions
//! (`models/yolo.py` `Detect`, `Segment`, `DualDSegment`; `models/common.py` `Proto`), and the
//! reparameterized model must compute exactly what the dual model's eval output is.

mod common;

use common::{require, SEG};
use std::collections::BTreeMap;
use std::path::Path;
use tch::{Kind, Tensor};
use yolo_qat::model::forward::NoQuant;
use yolo_qat::model::parse::build;
use yolo_qat::model::reparam::{infer_target, map_names};
use yolo_qat::model::weights::{StateDict, WeightSource};
use yolo_qat::model::{Graph, ModelConfig};

/// Random parameters, each recorded under its upstream name in the fused layout that
/// `StateDict` reads (conv weight + bias), so a model can be rebuilt from what it was built from.
#[derive(Default)]
struct Recorder {
    tensors: BTreeMap<String, Tensor>,
}

impl Recorder {
    fn random(&mut self, name: &str, shape: [i64; 4], bias: bool, prefix: &str) -> (Tensor, Option<Tensor>) {
        let fan_in = (shape[1] * shape[2] * shape[3]) as f64;
        let w = Tensor::randn(shape, (Kind::Float, tch::Device::Cpu)) * (1.0 / fan_in).sqrt();
        let b = bias.then(|| Tensor::randn([shape[0]], (Kind::Float, tch::Device::Cpu)) * 0.1);
        self.tensors.insert(format!("{name}{prefix}weight"), w.shallow_clone());
        if let Some(b) = &b {
            self.tensors.insert(format!("{name}{prefix}bias"), b.shallow_clone());
        }
        (w, b)
    }
}

impl WeightSource for Recorder {
    fn conv_bn(&mut self, name: &str, shape: [i64; 4]) -> anyhow::Result<(Tensor, Tensor)> {
        let (w, b) = self.random(name, shape, true, ".conv.");
        Ok((w, b.unwrap()))
    }
    fn rep_conv(&mut self, name: &str, shape: [i64; 4]) -> anyhow::Result<(Tensor, Tensor)> {
        self.conv_bn(name, shape)
    }
    fn plain_conv(&mut self, name: &str, shape: [i64; 4], bias: bool) -> anyhow::Result<(Tensor, Option<Tensor>)> {
        Ok(self.random(name, shape, bias, "."))
    }
    fn fixed(&mut self, name: &str, default: Tensor) -> anyhow::Result<Tensor> {
        self.tensors.insert(name.to_string(), default.shallow_clone());
        Ok(default)
    }
}

fn shape_of(rec: &Recorder, key: &str) -> Vec<i64> {
    rec.tensors.get(key).unwrap_or_else(|| panic!("no parameter `{key}`")).size()
}

/// (output, proto) of the eval forward pass.
fn outputs(g: &Graph, x: &Tensor) -> (Tensor, Tensor) {
    let mut v = g.run(x, &mut NoQuant, &[g.output, g.proto.expect("a segmentation model")]);
    (v.take(g.output), v.take(g.proto.unwrap()))
}

#[test]
fn segment_head_has_upstreams_layout_and_outputs() {
    tch::manual_seed(1);
    let cfg = ModelConfig::from_file(Path::new("configs/gelan-c-seg.yaml")).unwrap();
    let mut rec = Recorder::default();
    let g = build(&cfg, &mut rec).unwrap();
    assert!(g.is_segmentation() && !g.is_dual());
    // Segment(nc=80, nm=32, npr=256) over P3–P5 of 256, 512, 512 channels (layers 15, 18, 21).
    // Proto(ch[0]=256, c_=256, c2=32): cv1 Conv 3x3, upsample, cv2 Conv 3x3, cv3 Conv 1x1.
    let p = "model.22";
    assert_eq!(shape_of(&rec, &format!("{p}.proto.cv1.conv.weight")), [256, 256, 3, 3]);
    assert_eq!(shape_of(&rec, &format!("{p}.proto.cv2.conv.weight")), [256, 256, 3, 3]);
    assert_eq!(shape_of(&rec, &format!("{p}.proto.cv3.conv.weight")), [32, 256, 1, 1]);
    // Detect: c2 = max(256 // 4, 16 * 4, 16) = 64, no groups; c3 = max(256, min(80 * 2, 128)) = 256.
    for (i, c) in [256, 512, 512].into_iter().enumerate() {
        assert_eq!(shape_of(&rec, &format!("{p}.cv2.{i}.0.conv.weight")), [64, c, 3, 3]);
        assert_eq!(shape_of(&rec, &format!("{p}.cv2.{i}.1.conv.weight")), [64, 64, 3, 3], "Detect's box branch is not grouped");
        assert_eq!(shape_of(&rec, &format!("{p}.cv2.{i}.2.weight")), [64, 64, 1, 1]);
        assert_eq!(shape_of(&rec, &format!("{p}.cv3.{i}.0.conv.weight")), [256, c, 3, 3]);
        assert_eq!(shape_of(&rec, &format!("{p}.cv3.{i}.2.weight")), [80, 256, 1, 1]);
        // cv4: c4 = max(ch[0] // 4, nm) = 64 for every level.
        assert_eq!(shape_of(&rec, &format!("{p}.cv4.{i}.0.conv.weight")), [64, c, 3, 3]);
        assert_eq!(shape_of(&rec, &format!("{p}.cv4.{i}.1.conv.weight")), [64, 64, 3, 3]);
        assert_eq!(shape_of(&rec, &format!("{p}.cv4.{i}.2.weight")), [32, 64, 1, 1]);
    }
    let x = Tensor::rand([1, 3, 128, 96], (Kind::Float, tch::Device::Cpu));
    let (out, proto) = outputs(&g, &x);
    let anchors = 16 * 12 + 8 * 6 + 4 * 3;
    assert_eq!(out.size(), [1, 4 + 80 + 32, anchors]);
    assert_eq!(proto.size(), [1, 32, 32, 24], "prototypes at 1/4 of the input (P3 upsampled 2×)");
    // Class scores are sigmoids; the coefficient rows are conv outputs (any sign).
    let cls = out.narrow(1, 4, 80);
    assert!(cls.min().double_value(&[]) >= 0.0 && cls.max().double_value(&[]) <= 1.0);
    assert!(out.narrow(1, 84, 32).min().double_value(&[]) < 0.0);
}

/// A dual model's eval outputs equal those of the `DSegment` model `reparameterize` makes of it.
fn assert_reparameterizes(dual_cfg: &ModelConfig, size: (i64, i64)) -> ModelConfig {
    tch::manual_seed(2);
    let mut rec = Recorder::default();
    let dual = build(dual_cfg, &mut rec).unwrap();
    assert!(dual.is_segmentation() && dual.is_dual());
    let target = infer_target(dual_cfg).unwrap();
    assert_eq!(target.layers.last().unwrap().module, "DSegment");
    let mut sd = StateDict::new(map_names(dual_cfg, &target, rec.tensors).unwrap(), BTreeMap::new());
    let gelan = build(&target, &mut sd).unwrap();
    assert!(sd.unused().is_empty(), "parameters the GELAN did not take: {:?}", sd.unused());
    assert!(gelan.is_segmentation() && !gelan.is_dual());
    let x = Tensor::rand([2, 3, size.0, size.1], (Kind::Float, tch::Device::Cpu));
    let (want_out, want_proto) = outputs(&dual, &x);
    let (out, proto) = outputs(&gelan, &x);
    assert_eq!(out.size(), want_out.size());
    assert_eq!(proto.size(), want_proto.size());
    let diff = |a: &Tensor, b: &Tensor| (a - b).abs().max().double_value(&[]);
    assert_eq!((diff(&out, &want_out), diff(&proto, &want_proto)), (0.0, 0.0), "the same computation, bit for bit");
    target
}

#[test]
fn dual_dsegment_reparameterizes_into_the_fixtures_dsegment_layout() {
    let dual_cfg = ModelConfig::from_file(Path::new("tests/data/yolov9-t-dseg.yaml")).unwrap().with_nc(6).unwrap();
    let target = assert_reparameterizes(&dual_cfg, (96, 128));
    // The main branch, renumbered past the auxiliary layers, is upstream-trained gelan-t-dseg's layout.
    let fixture = ModelConfig::from_file(&require(Path::new(SEG).with_file_name("cfg/gelan-t-dseg.yaml"))).unwrap().with_nc(6).unwrap();
    assert_eq!(target.layers.len(), fixture.layers.len());
    for (i, (a, b)) in target.layers.iter().zip(&fixture.layers).enumerate() {
        assert_eq!((&a.from, a.repeats, &a.module, &a.args), (&b.from, b.repeats, &b.module, &b.args), "layer {i}");
    }
}

#[test]
fn yolov9_c_dseg_reparameterizes_into_its_main_branch() {
    let dual_cfg = ModelConfig::from_file(Path::new("configs/yolov9-c-dseg.yaml")).unwrap().with_nc(3).unwrap();
    let target = assert_reparameterizes(&dual_cfg, (64, 64));
    // Layers 1–22 and the main prototype branch 41–43 (after the leading Silence): 25 + head.
    assert_eq!(target.layers.len(), 26);
    let last = target.layers.last().unwrap();
    assert_eq!(last.from, [15, 18, 21, 24]);
    assert_eq!(target.layers[22].from, [15], "layer 41 read layer 16, now 15");
}
