//! PTQ/QAT on the CPU: placement and ties on gelan-c-mini, calibration, a short
//! QAT run that lowers the loss, and the sensitivity sweep's bookkeeping.

use std::path::Path;
use tch::{Device, Kind, Tensor};
use yolo_qat::data::config::DataConfig;
use yolo_qat::data::hyp::Hyp;
use yolo_qat::data::train_loader::TrainLoader;
use yolo_qat::data::val_set::{ValSet, ValSetOptions};
use yolo_qat::detector::load;
use yolo_qat::detector::Detector;
use yolo_qat::eval::validate::{evaluate, EvalOptions};
use yolo_qat::model::graph::Op;
use yolo_qat::quant::calibrate::{calibrate, prepare, prepare_with, PrepareOptions};
use yolo_qat::quant::objective::Objective;
use yolo_qat::quant::qat::{Qat, Supervision};
use yolo_qat::quant::sensitivity::analyze;
use yolo_qat::quant::task_loss::gt_boxes;
use yolo_qat::quant::tying::TieScope;
use yolo_qat::quant::CalibMethod;

const MINI: &str = "../shared/fixtures/gelan-c-mini.pt";
const TRAINED: &str = "../shared/fixtures/yolov9-t-shapes-converted.pt";
const DATA: &str = "../shared/data/shapes-mini/shapes.yaml";
const SEG: &str = "../shared/fixtures/gelan-t-dseg-shapes.pt";
const SEG_DATA: &str = "../shared/data/shapes-mini-seg/shapes-seg.yaml";

fn loader(imgsz: usize, batch: usize) -> TrainLoader {
    loader_of(DATA, imgsz, batch)
}

fn loader_of(data: &str, imgsz: usize, batch: usize) -> TrainLoader {
    let data = DataConfig::load(Path::new(data)).unwrap();
    let set = ValSet::load(&data.train, 6, ValSetOptions { imgsz, batch_size: batch, rect: false, ..Default::default() }).unwrap();
    let samples = set.entries.into_iter().map(|e| (e.path, e.rows.iter().map(|r| (r.class, r.xywhn)).collect())).collect();
    TrainLoader::new(samples, imgsz, batch, Hyp::scratch_high(), 57, 1)
}

/// The polygon-labelled loader: every label comes with its mask.
fn seg_loader(imgsz: usize, batch: usize) -> TrainLoader {
    let data = DataConfig::load(Path::new(SEG_DATA)).unwrap();
    let set = ValSet::load(&data.train, 6, ValSetOptions { imgsz, batch_size: batch, rect: false, ..Default::default() }).unwrap();
    let segments = set.entries.iter().map(|e| e.segments.clone()).collect();
    let samples = set.entries.into_iter().map(|e| (e.path, e.rows)).collect();
    TrainLoader::new(samples, imgsz, batch, Hyp::scratch_high(), 57, 1).with_segments(segments)
}

fn batches(l: &TrainLoader, n: usize) -> impl Iterator<Item = Tensor> + '_ {
    l.iter_forever(0).take(n).map(|b| Tensor::from_slice(&b.images).view([b.batch as i64, 3, b.size as i64, b.size as i64]).to_kind(Kind::Float) / 255.0)
}

/// Layers of the model's yaml with this module.
fn modules(m: &Detector, module: &str) -> usize {
    m.cfg.layers.iter().filter(|l| l.module == module).count()
}

/// Quantizers placed before any tying.
fn placed(path: &str) -> usize {
    let mut m = load(Path::new(path)).unwrap();
    yolo_qat::quant::placement::place(&mut m.graph).len()
}

/// Quantizers removed by ties: all members of a group but the survivor.
fn merged(groups: &[yolo_qat::quant::tying::TieGroup]) -> usize {
    groups.iter().map(|g| g.members.len() - 1).sum()
}

fn quantized(path: &str, imgsz: usize) -> Detector {
    let mut m = load(Path::new(path)).unwrap();
    prepare(&mut m, &[], CalibMethod::Mse).unwrap();
    let l = loader(imgsz, 4);
    assert_eq!(calibrate(&mut m, batches(&l, 2), CalibMethod::Mse).unwrap(), 0, "every quantizer saw data");
    m
}

#[test]
fn placement_and_ties_on_gelan_c_mini() {
    let mut m = load(Path::new(MINI)).unwrap();
    let convs = m.graph.convs().count();
    let ties = prepare(&mut m, &[], CalibMethod::Mse).unwrap();
    let q = m.quant.as_ref().unwrap();
    // Every conv: a per-channel weight quantizer and an input quantizer.
    for n in &m.graph.nodes {
        if let Op::Conv(_) = n.op {
            let w = n.quant.weight.expect("weight slot");
            assert!(q.table.quantizers[w.quant].per_channel, "{}", n.name);
            assert!(n.quant.inputs[0].is_some(), "{} input", n.name);
        }
    }
    let weights = q.table.quantizers.iter().filter(|x| x.per_channel).count();
    assert_eq!(weights, convs);
    // One tie per junction of the yaml: each RepNCSPELAN4's concat, SPPELAN's pools and
    // concat, and each top-level Concat layer; each tie leaves one of its members.
    assert_eq!(ties.len(), modules(&m, "RepNCSPELAN4") + modules(&m, "SPPELAN") + modules(&m, "Concat"));
    assert_eq!(q.table.len(), placed(MINI) - merged(&q.groups));
    let spp = q.groups.iter().find(|g| g.members.iter().any(|s| s.starts_with("model.9.cv2.m"))).expect("SPPELAN tied");
    for member in ["model.9.cv2.m input", "model.9.cv3.m input", "model.9.cv4.m input", "model.9.cv5 input"] {
        assert!(spp.members.iter().any(|s| s == member), "{member} in {:?}", spp.members);
    }
    // Residual adds read through their bottleneck's cv1 input quantizer.
    let by_name = |name: &str| m.graph.nodes.iter().find(|n| n.name == name).unwrap();
    let add = by_name("model.2.cv2.0.m.0.add");
    let cv1 = by_name("model.2.cv2.0.m.0.cv1");
    assert_eq!(add.quant.inputs[0].unwrap().quant, cv1.quant.inputs[0].unwrap().quant);
    assert_eq!(add.quant.inputs[1].unwrap().quant, cv1.quant.inputs[0].unwrap().quant);
    // ADown: the avg-pool output quantizer is cv1's input quantizer.
    let pool = by_name("model.3.avg_pool");
    assert_eq!(pool.quant.output.unwrap().quant, by_name("model.3.cv1").quant.inputs[0].unwrap().quant);
}

#[test]
fn reference_tie_scope_ties_only_block_concats() {
    let mut m = load(Path::new(MINI)).unwrap();
    let ties = prepare_with(&mut m, &PrepareOptions { ties: TieScope::Reference, ..PrepareOptions::new(CalibMethod::Mse) }).unwrap();
    // The RepNCSPELAN4 concats only; not SPPELAN (its pools are not conv inputs) and not
    // the neck Concat layers' own input quantizers.
    assert_eq!(ties.len(), modules(&m, "RepNCSPELAN4"), "{ties:#?}");
    let q = m.quant.as_ref().unwrap();
    // Each block's 5 conv inputs (cv2's and cv3's chains read the split, cv4 the concat) become one.
    assert!(q.groups.iter().all(|g| g.members.len() == 5), "{:?}", q.groups);
    assert_eq!(q.table.len(), placed(MINI) - merged(&q.groups));
    for g in &q.groups {
        assert!(g.members.iter().all(|s| s.ends_with(" input") && s.contains(".cv")), "{:?}", g.members);
        assert!(g.members.iter().any(|s| s.ends_with(".cv4 input")), "major is the block's cv4: {:?}", g.members);
    }
    assert!(TieScope::parse("some").unwrap_err().to_string().contains("--ties some"));
}

#[test]
fn dfl_input_takes_unit_amax_unless_calibrated() {
    let dfl_amax = |m: &Detector| {
        let q = m.quant.as_ref().unwrap();
        let slot = m.graph.nodes.iter().find_map(|n| matches!(n.op, Op::Detect(_)).then_some(n.quant.internal).flatten()).unwrap();
        q.table.quantizers[slot.quant].amax_f64().unwrap()
    };
    let m = quantized(TRAINED, 160);
    assert_eq!(dfl_amax(&m), 1.0);
    let mut m = load(Path::new(TRAINED)).unwrap();
    prepare_with(&mut m, &PrepareOptions { dfl_unit_range: false, ..PrepareOptions::new(CalibMethod::Mse) }).unwrap();
    calibrate(&mut m, batches(&loader(160, 4), 2), CalibMethod::Mse).unwrap();
    let calibrated = dfl_amax(&m);
    assert!(calibrated > 0.0 && calibrated < 1.0, "MSE on softmax probabilities clips below 1: {calibrated}");
}

#[test]
fn calibrated_model_round_trips_through_our_checkpoint() {
    let m = quantized(MINI, 128);
    let x = Tensor::rand([1, 3, 96, 128], (Kind::Float, Device::Cpu));
    let y = m.forward(&x);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ptq.safetensors");
    m.save(&path, serde_json::json!({})).unwrap();
    let back = load(&path).unwrap();
    assert!(back.is_quantized());
    let y2 = back.forward(&x);
    assert_eq!(f64::try_from((y - y2).abs().max()).unwrap(), 0.0);
    // Ranges known by construction (the DFL input's 1) stay known, so QAT keeps them fixed.
    let known = |m: &Detector| -> Vec<Option<f64>> { m.quant.as_ref().unwrap().table.quantizers.iter().map(|q| q.known_amax).collect() };
    assert!(known(&m).iter().any(Option::is_some), "the DFL input has a known range");
    assert_eq!(known(&back), known(&m));
}

#[test]
fn two_qat_steps_lower_the_loss() {
    let mut m = quantized(TRAINED, 160);
    let l = loader(160, 4);
    let x = batches(&l, 3).last().unwrap();
    let mut qat = Qat::new(&mut m, None, Supervision::recipe(1), false);
    let first = qat.step(&mut m, &x, 1e-4).double_value(&[]);
    let _ = qat.step(&mut m, &x, 1e-4);
    let third = qat.step(&mut m, &x, 1e-4).double_value(&[]);
    assert!(first > 0.0, "fake quantization changes the layer outputs");
    assert!(third < first, "loss {first} -> {third}");
    // CUDA graphs are for CUDA tensors: on the CPU a clear error, and eager steps go on.
    let err = qat.capture(&mut m, &x, None).unwrap_err().to_string();
    assert!(err.contains("CUDA"), "{err}");
    assert!(qat.step(&mut m, &x, 1e-4).double_value(&[]) > 0.0);
}

#[test]
fn task_loss_qat_on_shapes_mini_lowers_the_loss() {
    let mut m = quantized(TRAINED, 160);
    let b = loader(160, 4).iter_forever(0).nth(2).unwrap();
    assert!(!b.labels.is_empty(), "the batch has labels");
    let x = Tensor::from_slice(&b.images).view([4, 3, 160, 160]).to_kind(Kind::Float) / 255.0;
    let gt = gt_boxes(&b.labels, 4, (160, 160), 0, Device::Cpu);
    let mut qat = Qat::new(&mut m, None, Supervision::recipe(1), false);
    qat.set_objective(&m, Objective::task());
    qat.enable_ema(0.9, 1.0);
    let losses: Vec<f64> = (0..4).map(|_| qat.step_with(&mut m, &x, Some(&gt), 1e-4).double_value(&[])).collect();
    assert!(losses[3] < losses[0], "loss {losses:?}");
    let parts: Vec<f32> = Vec::try_from(&qat.parts).unwrap();
    assert!(parts[..3].iter().all(|&p| p > 0.0) && parts[3] == 0.0 && parts[4] == 0.0, "box, cls, dfl > 0, no mask term, no distillation: {parts:?}");
    // Evaluation binds the weight average, which lags the trained weights.
    let w = |m: &Detector| m.graph.convs().next().unwrap().1.weight.copy();
    let trained = w(&m);
    qat.bind_for_eval(&mut m);
    let averaged = w(&m);
    qat.bind_master(&mut m);
    assert!(f64::try_from((&trained - &averaged).abs().max()).unwrap() > 0.0);
    assert!(w(&m).equal(&trained));
}

#[test]
fn channels_last_qat_computes_what_nchw_does() {
    let x = batches(&loader(160, 2), 2).last().unwrap();
    let x_cl = yolo_qat::model::graph::channels_last(&x);
    assert_eq!(x_cl.size(), x.size());
    assert_eq!(x_cl.stride(), [3 * 160 * 160, 1, 160 * 3, 3], "NHWC in memory");
    // The FP model: the same numbers up to summation order.
    let m = load(Path::new(TRAINED)).unwrap();
    let mut g = m.graph.deep_clone();
    g.weights_channels_last();
    let (y, y_cl) = tch::no_grad(|| (m.graph.forward(&x), g.forward(&x_cl)));
    let rel = f64::try_from((&y - &y_cl).abs().max()).unwrap() / f64::try_from(y.abs().max()).unwrap();
    assert!(rel < 1e-5, "FP forward NCHW vs NHWC: rel {rel}");
    // QAT: int8 rounding flips amplify those differences (and each Adam step moves every
    // weight by about lr, whichever the gradient's sign), so only the first loss is compared.
    let run = |cl: bool| {
        let mut m = quantized(TRAINED, 160);
        let mut qat = Qat::new(&mut m, None, Supervision::recipe(1), false);
        qat.set_channels_last(&mut m, cl);
        (0..3).map(|_| qat.step(&mut m, &x, 1e-4).double_value(&[])).collect::<Vec<f64>>()
    };
    let (nchw, nhwc) = (run(false), run(true));
    assert!((nchw[0] - nhwc[0]).abs() <= 0.01 * nchw[0], "first loss {nchw:?} vs {nhwc:?}");
    assert!(nhwc[2] < nhwc[0], "channels-last QAT lowers the loss: {nhwc:?}");
}

/// Training's fake-quant hook; `share` lets the forward pass quantize a value once for all
/// readers of one quantizer, and a Concat read through a quantizer quantize its parts.
struct CountingQuant<'a> {
    table: &'a yolo_qat::quant::quantizer::QuantTable,
    share: bool,
    elements: i64,
}

impl yolo_qat::model::forward::QuantHook for CountingQuant<'_> {
    fn activation(&mut self, q: yolo_qat::model::graph::QuantId, x: &Tensor) -> Tensor {
        self.elements += x.numel() as i64;
        match &self.table.quantizers[q].params {
            Some(yolo_qat::quant::fake_quant::QParams::PerTensor { amax }) => yolo_qat::quant::fake_quant::train_fake_quant(x, *amax),
            Some(p) => p.apply(x),
            None => x.shallow_clone(),
        }
    }
    fn weight(&mut self, _: yolo_qat::model::graph::QuantId, w: &Tensor) -> Tensor {
        w.shallow_clone()
    }
    fn shares_quantized_values(&self) -> bool {
        self.share
    }
}

/// Quantizing a concatenation's parts instead of the whole (and each value once for all its
/// readers) gives the same values and the same straight-through gradient, for less work.
#[test]
fn quantized_concat_parts_equal_the_quantized_concat() {
    let m = quantized(TRAINED, 160);
    let table = &m.quant.as_ref().unwrap().table;
    let x = batches(&loader(160, 2), 1).last().unwrap();
    let g = &m.graph;
    let keep = [g.output];
    let run = |share: bool| {
        let xg = x.detach().set_requires_grad(true);
        let mut hook = CountingQuant { table, share, elements: 0 };
        let y = g.run(&xg, &mut hook, &keep).take(g.output);
        let weights = Tensor::linspace(-1.0, 1.0, y.numel() as i64, (Kind::Float, Device::Cpu)).view_as(&y);
        (&y * weights).sum(Kind::Float).backward();
        (y.detach(), xg.grad(), hook.elements)
    };
    let (y0, g0, n0) = run(false);
    let (y1, g1, n1) = run(true);
    assert!(y0.equal(&y1), "values differ: max {}", f64::try_from((&y0 - &y1).abs().max()).unwrap());
    let rel = f64::try_from((&g0 - &g1).abs().max()).unwrap() / f64::try_from(g0.abs().max()).unwrap();
    assert!(rel < 1e-5, "input gradients differ: rel {rel}");
    // Every ELAN concatenation was quantized whole before; its parts are no bigger, and
    // parts read by a conv through the same quantizer are quantized once.
    assert!(n1 < n0, "quantized elements with sharing {n1}, without {n0}");
}

/// A channels-last student keeps its weights (and Adam's moments, and their average) in
/// another order in the flat buffer; what it binds for evaluation and what it saves for a
/// resume must not show it.
#[test]
fn channels_last_state_and_weights_read_as_nchw() {
    let x = batches(&loader(160, 2), 1).last().unwrap();
    let mut m = quantized(TRAINED, 160);
    let mut a = Qat::new(&mut m, None, Supervision::recipe(1), false);
    a.enable_ema(0.9, 1.0);
    let _ = a.step(&mut m, &x, 1e-3);
    let saved = a.optimizer_state();
    a.bind_for_eval(&mut m);
    let averaged: Vec<Tensor> = m.graph.convs().map(|(_, c)| c.weight.copy()).collect();
    a.bind_master(&mut m);
    let master: Vec<Tensor> = m.graph.convs().map(|(_, c)| c.weight.copy()).collect();

    let mut m2 = quantized(TRAINED, 160);
    let mut b = Qat::new(&mut m2, None, Supervision::recipe(1), false);
    b.enable_ema(0.9, 1.0);
    let weights = |m: &Detector| -> Vec<Tensor> { m.graph.convs().map(|(_, c)| c.weight.shallow_clone()).collect() };
    let before: Vec<Tensor> = weights(&m2).iter().map(Tensor::copy).collect();
    b.set_channels_last(&mut m2, true);
    for (w, want) in weights(&m2).iter().zip(&before) {
        assert!(w.is_contiguous() && w.equal(want), "the relaid buffer is bound again");
    }
    b.load_optimizer_state(&saved, 1).unwrap();
    for ((n, t), (n2, t2)) in saved.iter().zip(b.optimizer_state()) {
        assert_eq!(n, &n2);
        assert!(t.equal(&t2), "{n} differs after a channels-last round trip");
    }
    b.bind_master(&mut m2);
    for (w, want) in weights(&m2).iter().zip(&master) {
        assert!(w.is_contiguous() && w.equal(want), "master weights read back NCHW");
    }
    b.bind_for_eval(&mut m2);
    for (w, want) in weights(&m2).iter().zip(&averaged) {
        assert!(w.is_contiguous() && w.equal(want), "averaged weights read back NCHW");
    }
    // The buffer really is channels-last: a 3x3 conv's views have NHWC strides while training.
    let _ = b.step(&mut m2, &x, 1e-3);
    let w = m2.graph.convs().map(|(_, c)| c.weight.shallow_clone()).find(|w| w.size()[2] == 3).unwrap();
    let z = w.size();
    assert_eq!(w.stride(), [z[1] * 9, 1, 3 * z[1], z[1]], "training binds channels-last views");
}

#[test]
fn learned_amax_moves_the_ranges_and_lowers_the_loss() {
    let mut m = quantized(TRAINED, 160);
    let x = batches(&loader(160, 4), 3).last().unwrap();
    let amax_of = |m: &Detector| -> Vec<f64> { m.quant.as_ref().unwrap().table.quantizers.iter().map(|q| q.amax_f64().unwrap_or(-1.0)).collect() };
    let before = amax_of(&m);
    let mut qat = Qat::new(&mut m, None, Supervision::recipe(1), false);
    qat.learn_amax(&m, 1e-2);
    let losses: Vec<f64> = (0..4).map(|_| qat.step(&mut m, &x, 1e-5).double_value(&[])).collect();
    assert!(losses[3] < losses[0], "loss {losses:?}");
    assert_eq!(amax_of(&m), before, "the table changes only on write-back");
    qat.bind_for_eval(&mut m);
    let after = amax_of(&m);
    let t = &m.quant.as_ref().unwrap().table;
    let mut moved = 0;
    for ((q, b), a) in t.quantizers.iter().zip(&before).zip(&after) {
        if q.per_channel || q.known_amax.is_some() {
            assert_eq!(a, b, "{}: weights and known ranges are not learned", q.label);
        } else if *b > 0.0 {
            // Four Adam steps of 1e-2 on log amax: at most ~4 % either way.
            assert!((a / b).ln().abs() <= 0.041, "{}: {b} -> {a}", q.label);
            moved += usize::from(a != b);
            match &q.params {
                Some(yolo_qat::quant::fake_quant::QParams::PerTensor { amax }) => assert!((amax - a).abs() < 1e-6, "params refreshed"),
                p => panic!("{}: {p:?}", q.label),
            }
        }
    }
    assert!(moved > 10, "only {moved} activation ranges moved");
}

#[test]
fn sensitivity_switches_one_layer_at_a_time_and_restores_ptq() {
    let mut m = quantized(MINI, 128);
    let data = DataConfig::load(Path::new(DATA)).unwrap();
    let val = ValSet::load(&data.val, 6, ValSetOptions { imgsz: 128, batch_size: 16, ..Default::default() }).unwrap();
    let mut opts = EvalOptions::new(Device::Cpu);
    opts.progress = false;
    let before: Vec<bool> = m.graph.nodes.iter().flat_map(|n| n.quant.all().map(|s| s.enabled).collect::<Vec<_>>()).collect();
    let mut calls = Vec::new();
    let s = analyze(&mut m, |model, name| {
        let off: Vec<usize> = model.graph.nodes.iter().filter(|n| n.quant.all().any(|s| !s.enabled)).map(|n| n.layer).collect();
        calls.push((name.to_string(), off));
        let r = evaluate(model, &val, &opts)?;
        Ok((r.map, r.map50))
    })
    .unwrap();
    let quantized_layers = 23; // every layer of gelan-c-mini holds quantizers (concat/upsample inputs included)
    assert_eq!(s.layers.len(), quantized_layers);
    assert_eq!(calls[0], ("PTQ".to_string(), vec![]));
    for (name, off) in &calls[1..] {
        let layer: usize = name.trim_start_matches("model.").parse().unwrap();
        assert!(!off.is_empty() && off.iter().all(|&l| l == layer), "{name}: disabled in layers {off:?}");
    }
    let after: Vec<bool> = m.graph.nodes.iter().flat_map(|n| n.quant.all().map(|s| s.enabled).collect::<Vec<_>>()).collect();
    assert_eq!(before, after, "nothing left disabled");
    let again = evaluate(&m, &val, &opts).unwrap();
    assert_eq!(again.map, s.ptq_map, "PTQ reproduced after the sweep");
    let summary = s.seed_summary();
    assert_eq!(summary[0][1], "PTQ");
    assert_eq!(summary.as_array().unwrap().len(), quantized_layers + 1);
}

/// Segmentation: the proto branch and the mask-coefficient convs are quantized by the
/// same rules (weight per channel + input), PTQ calibrates every quantizer from the
/// polygon-labelled training set, the quantized model evaluates box and mask AP close
/// to the FP model, saves and reloads, and the distillation QAT lowers its loss.
#[test]
fn segmentation_model_quantizes_calibrates_and_trains() {
    let mut m = load(Path::new(SEG)).unwrap();
    let data = DataConfig::load(Path::new(SEG_DATA)).unwrap();
    let val = ValSet::load(&data.val, 6, ValSetOptions { imgsz: 320, batch_size: 8, ..Default::default() }).unwrap();
    let mut opts = EvalOptions::new(Device::Cpu);
    opts.progress = false;
    let fp = evaluate(&m, &val, &opts).unwrap();
    prepare(&mut m, &[], CalibMethod::Mse).unwrap();
    let seg_convs: Vec<&str> =
        m.graph.nodes.iter().filter(|n| n.name.starts_with("model.25.cv4") || n.name == "model.25.proto").map(|n| n.name.as_str()).collect();
    assert_eq!(seg_convs.len(), 3 * 3 + 1, "three cv4 branches of three convs, and proto");
    for n in m.graph.nodes.iter().filter(|n| matches!(n.op, Op::Conv(_))) {
        assert!(n.quant.weight.is_some() && n.quant.inputs[0].is_some(), "{} is quantized", n.name);
    }
    let l = loader_of(SEG_DATA, 160, 4);
    assert_eq!(calibrate(&mut m, batches(&l, 2), CalibMethod::Mse).unwrap(), 0, "every quantizer saw data");
    let ptq = evaluate(&m, &val, &opts).unwrap();
    let (fm, pm) = (fp.mask.as_ref().unwrap(), ptq.mask.as_ref().expect("mask metrics after PTQ"));
    println!("FP box {:.4} mask {:.4}; PTQ box {:.4} mask {:.4}", fp.map, fm.map, ptq.map, pm.map);
    assert!(ptq.map > fp.map - 0.1 && pm.map > fm.map - 0.1, "PTQ keeps most of the accuracy");
    // our checkpoint keeps the quantized segmentation model
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ptq-seg.safetensors");
    m.save(&path, serde_json::json!({})).unwrap();
    let back = load(&path).unwrap();
    let x = Tensor::rand([1, 3, 96, 128], (Kind::Float, Device::Cpu));
    let (g, gb) = (&m.graph, &back.graph);
    let (mut a, mut b) = (m.run(&x, &[g.output, g.proto.unwrap()]), back.run(&x, &[gb.output, gb.proto.unwrap()]));
    assert_eq!(f64::try_from((a.take(g.output) - b.take(gb.output)).abs().max()).unwrap(), 0.0);
    assert_eq!(f64::try_from((a.take(g.proto.unwrap()) - b.take(gb.proto.unwrap())).abs().max()).unwrap(), 0.0);
    // distillation QAT on the CPU
    let x = batches(&l, 3).last().unwrap();
    let mut qat = Qat::new(&mut m, None, Supervision::recipe(1), false);
    let losses: Vec<f64> = (0..4).map(|_| qat.step(&mut m, &x, 1e-5).double_value(&[])).collect();
    println!("QAT loss {losses:?}");
    assert!(losses[0] > 0.0 && losses[3] < losses[0], "loss {losses:?}");
    // task-loss QAT with the mask term, on the loader's polygon masks
    let b = seg_loader(160, 4).iter_forever(0).nth(1).unwrap();
    assert_eq!((b.mask_size, b.masks.len()), (40, b.labels.len() * 40 * 40));
    let x = Tensor::from_slice(&b.images).view([4, 3, 160, 160]).to_kind(Kind::Float) / 255.0;
    let mut gt = gt_boxes(&b.labels, 4, (160, 160), 0, Device::Cpu);
    let slots = gt.boxes.size()[1] as usize;
    gt.masks = Some(yolo_qat::quant::mask_loss::gt_masks(&b.labels, &b.masks, 40, 4, slots, Device::Cpu));
    qat.set_objective(&m, Objective::task());
    let losses: Vec<f64> = (0..4).map(|_| qat.step_with(&mut m, &x, Some(&gt), 1e-4).double_value(&[])).collect();
    let parts: Vec<f32> = Vec::try_from(&qat.parts).unwrap();
    println!("task QAT loss {losses:?}, parts {parts:?}");
    assert!(parts[..4].iter().all(|&p| p > 0.0) && parts[4] == 0.0, "box, cls, dfl, mask > 0, no distillation: {parts:?}");
    assert!(losses[3] < losses[0], "loss {losses:?}");
}
