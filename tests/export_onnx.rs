//! ONNX export: the TensorRT rules check, onnx's own full checker (project venv),
//! ONNX Runtime against `Detector::forward` (FP and fake-quantized PTQ), dynamic
//! shapes, the EfficientNMS_TRT end2end node, the plain-ONNX NMS, and a
//! hand-broken model that the check must reject. CPU only.

mod common;

use common::reference_nms::reference_nms;
use onnx_protobuf::{Message, ModelProto};
use std::path::{Path, PathBuf};
use std::process::Command;
use tch::{Kind, Tensor};
use yolo_qat::detector::load;
use yolo_qat::detector::Detector;
use yolo_qat::export::onnx_builder::{attr_f, attr_i, attr_s, tensor_values};
use yolo_qat::export::ort::{OnnxModel, OrtOptimization, OrtOptions};
use yolo_qat::export::{check_file, check_model, export, End2End, ExportOptions, Nms};
use yolo_qat::quant::calibrate::{calibrate, prepare};
use yolo_qat::quant::CalibMethod;

const FIXTURES: &str = "../shared/fixtures";

fn fixture(name: &str) -> Detector {
    load(&Path::new(FIXTURES).join(format!("{name}.pt"))).unwrap()
}

fn ref_input(name: &str) -> Tensor {
    let refs: std::collections::BTreeMap<String, Tensor> =
        Tensor::read_safetensors(format!("{FIXTURES}/{name}.ref.safetensors")).unwrap().into_iter().collect();
    refs["input"].shallow_clone()
}

/// PTQ on a few batches: the fixture input and seeded uniform noise.
fn ptq(name: &str) -> Detector {
    let mut m = fixture(name);
    prepare(&mut m, &[], CalibMethod::Mse).unwrap();
    tch::manual_seed(7);
    let x = ref_input(name);
    let mut batches = vec![x.shallow_clone()];
    for _ in 0..3 {
        batches.push(Tensor::rand(x.size(), (Kind::Float, tch::Device::Cpu)));
    }
    let missing = calibrate(&mut m, batches.into_iter(), CalibMethod::Mse).unwrap();
    assert_eq!(missing, 0, "every activation quantizer saw data");
    m
}

fn opts(imgsz: (i64, i64), batch: i64) -> ExportOptions {
    ExportOptions { imgsz, batch, ..Default::default() }
}

fn out_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn venv_python() -> PathBuf {
    let home = std::env::var_os("YOLO_QAT_HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/yolo-qat"));
    home.join("venv/bin/python")
}

/// `onnx.checker.check_model(full_check=True)` in the project venv (CI installs it).
fn onnx_full_check(path: &Path) {
    let py = venv_python();
    assert!(py.exists(), "{} is missing: run scripts/setup.sh", py.display());
    let out = Command::new(&py)
        .args([
            "-c",
            "import onnx, sys; onnx.checker.check_model(onnx.load(sys.argv[1]), full_check=True); print('onnx full check ok')",
            path.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "onnx.checker rejects {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
}

fn read_model(path: &Path) -> ModelProto {
    ModelProto::parse_from_bytes(&std::fs::read(path).unwrap()).unwrap()
}

/// How ORT's output0 compares with the forward pass.
struct Diff {
    max_abs: f64,
    rel: f64,
    confident: i64,
    score_ok: i64,
    box_ok: i64,
    max_score: f64,
    max_box: f64,
}

/// Per (image, anchor) with max class score > `floor` in the reference (0.25; below 0 for all
/// anchors, for random-weight models that score nothing high): scores within 0.02, boxes within 1 px.
fn compare(ours: &Tensor, want: &Tensor, floor: f64) -> Diff {
    assert_eq!(ours.size(), want.size());
    let d = (ours - want).abs();
    let max_abs = d.max().double_value(&[]);
    let rel = max_abs / want.abs().max().double_value(&[]);
    let (box_d, score_d) = (d.narrow(1, 0, 4), d.narrow(1, 4, want.size()[1] - 4));
    let conf = want.narrow(1, 4, want.size()[1] - 4).amax([1], false).gt(floor); // (B, A)
    let score_err = score_d.amax([1], false); // (B, A)
    let box_err = box_d.amax([1], false);
    let count = |t: &Tensor| t.to_kind(Kind::Int64).sum(Kind::Int64).int64_value(&[]);
    let confident = count(&conf);
    Diff {
        max_abs,
        rel,
        confident,
        score_ok: count(&(score_err.le(0.02).logical_and(&conf))),
        box_ok: count(&(box_err.le(1.0).logical_and(&conf))),
        max_score: if confident > 0 { score_err.masked_select(&conf).max().double_value(&[]) } else { 0.0 },
        max_box: if confident > 0 { box_err.masked_select(&conf).max().double_value(&[]) } else { 0.0 },
    }
}

/// Which anchors a quantized comparison looks at: score > 0.25 on the trained fixture, all on random weights.
fn floor_for(name: &str) -> f64 {
    if name.contains("shapes") {
        0.25
    } else {
        -1.0
    }
}

fn assert_fp_parity(what: &str, ours: &Tensor, want: &Tensor) {
    let d = compare(ours, want, -1.0);
    println!("{what}: max |diff| {:.4e}, relative to max |ref| {:.3e}", d.max_abs, d.rel);
    assert!(d.rel <= 1e-3, "{what}: relative error {:.3e} > 1e-3", d.rel);
}

#[test]
fn fp_export_passes_checks_and_matches_forward() {
    let m = fixture("gelan-c-mini");
    let x = ref_input("gelan-c-mini");
    let dir = out_dir();
    let path = dir.path().join("fp.onnx");
    let rep = export(&m, &opts((192, 256), 2), &path).unwrap();
    println!("{rep}");
    assert!(!rep.quantized && !rep.check.quantized);
    assert_eq!((rep.opset, rep.ir_version), (13, 7));
    assert_eq!(rep.outputs[0].to_string(), "output0 (2, 10, 1008) float32");
    assert!(rep.check.notes.is_empty(), "{:?}", rep.check.notes);
    onnx_full_check(&path);
    let proto = read_model(&path);
    let meta: std::collections::BTreeMap<_, _> = proto.metadata_props.iter().map(|p| (p.key.as_str(), p.value.as_str())).collect();
    assert_eq!(meta["stride"], "32");
    assert_eq!(meta["imgsz"], "[192, 256]");
    assert!(meta["names"].starts_with("{0: 'class0', 1: 'class1'"), "{}", meta["names"]);
    // Static shapes: constants only, no shape arithmetic.
    let ops: Vec<&str> = proto.graph.node.iter().map(|n| n.op_type.as_str()).collect();
    assert!(!ops.iter().any(|o| matches!(*o, "Shape" | "Gather" | "Range")), "static export has shape ops");

    let ort = OnnxModel::load(&path).unwrap();
    assert_eq!(ort.input_size(), Some((192, 256)));
    assert!(!ort.is_dynamic());
    let got = ort.run(&x).unwrap();
    assert_eq!(got.len(), 1);
    assert_fp_parity("FP static", &got[0], &m.forward(&x));
}

/// Activation Q/DQ pairs the export must write: one per (value, scale), where a read of a
/// value whose producer already quantizes its output with that scale needs none; and the
/// number of enabled slot reads served by an existing pair.
fn expected_pairs(m: &Detector) -> (usize, usize) {
    let g = &m.graph;
    let table = &m.quant.as_ref().unwrap().table;
    let needed = yolo_qat::export::shapes::needed_nodes(g);
    let producers = g.producers();
    let bits = |s: Option<yolo_qat::model::graph::QuantSlot>| {
        s.filter(|s| s.enabled).and_then(|s| table.quantizers[s.quant].amax.as_ref()).map(|a| yolo_qat::export::qdq::scale_of(a.double_value(&[])).to_bits())
    };
    let mut pairs = std::collections::HashSet::new();
    let mut reads = 0;
    for (i, n) in g.nodes.iter().enumerate().filter(|(i, _)| needed[*i]) {
        for (k, s) in n.quant.inputs.iter().enumerate() {
            let Some(b) = bits(*s) else { continue };
            reads += 1;
            let v = n.inputs[k];
            if producers[v].is_some_and(|p| bits(g.nodes[p].quant.output) == Some(b)) {
                continue;
            }
            pairs.insert((v as i64, b));
        }
        if let Some(b) = bits(n.quant.output) {
            reads += 1;
            pairs.insert((n.outputs[0] as i64, b));
        }
        if let Some(b) = bits(n.quant.internal) {
            reads += 1;
            pairs.insert((-(i as i64) - 1, b));
        }
    }
    (pairs.len(), reads - pairs.len())
}

/// Fake-quant parity. The bar: scores within 0.02 and boxes within 1 px for ≥ 99.9% of the
/// anchors with score > 0.25 (`floor`; random-weight fixtures score nothing that high, so they
/// compare every anchor). Where a fixture misses the bar it must be for the reason two correct
/// fake-quant implementations differ: one rounding flip at a quantizer moves later activations by
/// whole quantization steps. The model's own f64 and f32 forward passes measure that spread, and
/// ONNX Runtime may then disagree with f32 no more than twice as much.
fn assert_parity(what: &str, ours: &Tensor, m: &mut Detector, x: &Tensor, floor: f64) {
    let want = m.forward(x);
    m.to(tch::Device::Cpu, Kind::Double);
    let own = m.forward(&x.to_kind(Kind::Double)).to_kind(Kind::Float);
    m.to(tch::Device::Cpu, Kind::Float);
    let nc = m.graph.nc as i64;
    let conf = want.narrow(1, 4, nc).amax([1], false).gt(floor);
    let n = conf.to_kind(Kind::Int64).sum(Kind::Int64).int64_value(&[]);
    assert!(n >= 10, "{what}: too few anchors to compare");
    // (fraction within the bar, mean, max) of per-anchor score and box errors.
    let stats = |t: &Tensor, off: i64, len: i64, bar: f64| {
        let e = (t - &want).narrow(1, off, len).abs().amax([1], false).masked_select(&conf);
        let ok = e.le(bar).to_kind(Kind::Float).mean(Kind::Float).double_value(&[]);
        (ok, e.mean(Kind::Float).double_value(&[]), e.max().double_value(&[]))
    };
    let (s, own_s) = (stats(ours, 4, nc, 0.02), stats(&own, 4, nc, 0.02));
    let (b, own_b) = (stats(ours, 0, 4, 1.0), stats(&own, 0, 4, 1.0));
    println!(
        "{what}: {n} anchors (score > {floor}); ORT vs f32 fake-quant: scores within 0.02 {:.2}% (mean {:.4}, max {:.4}), boxes within 1 px {:.2}% (mean {:.4}, max {:.3} px); the model's own f64 vs f32: scores {:.2}% (mean {:.4}, max {:.4}), boxes {:.2}% (max {:.3} px)",
        100.0 * s.0, s.1, s.2, 100.0 * b.0, b.1, b.2, 100.0 * own_s.0, own_s.1, own_s.2, 100.0 * own_b.0, own_b.2
    );
    let scores_ok = s.0 >= 0.999 || (s.1 <= 2.0 * own_s.1 + 0.005 && s.2 <= (2.0 * own_s.2).max(0.02));
    let boxes_ok = b.0 >= 0.999 || (b.1 <= 2.0 * own_b.1 + 0.05 && b.2 <= (2.0 * own_b.2).max(1.0));
    assert!(scores_ok, "{what}: scores disagree beyond the bar and beyond the model's own precision");
    assert!(boxes_ok, "{what}: boxes disagree beyond the bar and beyond the model's own precision");
}

#[test]
fn ptq_export_is_qdq_and_matches_fake_quant() {
    for name in ["gelan-c-mini", "gelan-c-mini-relu", "yolov9-t-shapes-converted"] {
        let mut m = ptq(name);
        let x = ref_input(name);
        let dir = out_dir();
        let path = dir.path().join("ptq.onnx");
        let rep = export(&m, &opts((192, 256), 2), &path).unwrap();
        println!("{name}:\n{rep}");
        assert!(rep.quantized && rep.check.quantized);
        let convs = m.graph.convs().count();
        assert_eq!(rep.check.convs, convs + 1, "model convs + the DFL conv");
        assert_eq!(rep.check.int8_convs, convs + 1, "every conv, the DFL's included, reads activation and weight through DQ");
        assert!(rep.check.fp_convs.is_empty(), "no conv stays FP: {:?}", rep.check.fp_convs);
        assert_eq!(rep.qdq.weight_pairs, convs + 1, "model convs + the DFL's exact scale-1 weight pair");
        let (pairs, shared) = expected_pairs(&m);
        assert_eq!((rep.qdq.activation_pairs, rep.qdq.shared_reads), (pairs, shared), "activation pairs, shared reads");
        assert!(shared > 0, "shared quantizers reuse one pair");
        onnx_full_check(&path);

        // One Q/DQ pair per (value, scale); weight scales per channel on axis 0; no unused initializers.
        let proto = read_model(&path);
        let g = proto.graph.as_ref().unwrap();
        let inits: std::collections::HashMap<&str, _> = g.initializer.iter().map(|t| (t.name.as_str(), t)).collect();
        let mut seen = std::collections::HashSet::new();
        for n in g.node.iter().filter(|n| n.op_type == "QuantizeLinear") {
            let scale = tensor_values(inits[n.input[1].as_str()]).unwrap();
            let key = (n.input[0].clone(), scale.iter().map(|s| s.to_bits()).collect::<Vec<_>>());
            assert!(seen.insert(key), "redundant Q/DQ on `{}`", n.input[0]);
            if let Some(w) = inits.get(n.input[0].as_str()) {
                assert_eq!(attr_i(n, "axis"), Some(0));
                assert_eq!(scale.len() as i64, w.dims[0]);
            }
        }
        assert_eq!(seen.len(), rep.qdq.activation_pairs + rep.qdq.weight_pairs);
        let read: std::collections::HashSet<&str> = g.node.iter().flat_map(|n| n.input.iter().map(String::as_str)).collect();
        assert!(g.initializer.iter().all(|t| read.contains(t.name.as_str())), "unused initializers");

        let want = m.forward(&x);
        let ort = OnnxModel::load(&path).unwrap();
        let got = ort.run(&x).unwrap().remove(0);
        assert_parity(&format!("{name} PTQ (ORT basic)"), &got, &mut m, &x, floor_for(name));
        // ORT's full optimizations fuse Q/DQ into integer kernels: reported, not asserted.
        let fused = OnnxModel::load_with(&path, &OrtOptions { optimization: OrtOptimization::All, threads: None }).unwrap();
        let d = compare(&fused.run(&x).unwrap()[0], &want, floor_for(name));
        println!(
            "{name} PTQ (ORT all optimizations, int8 kernels): max |diff| {:.4e}; compared {}, score ok {}, box ok {}; max score diff {:.4}, max box diff {:.3} px",
            d.max_abs, d.confident, d.score_ok, d.box_ok, d.max_score, d.max_box
        );
    }
}

#[test]
fn dynamic_export_runs_at_two_sizes_and_batches() {
    let m = fixture("gelan-c-mini");
    let mut q = ptq("gelan-c-mini");
    let dir = out_dir();
    let fp_path = dir.path().join("fp_dyn.onnx");
    let q_path = dir.path().join("ptq_dyn.onnx");
    let o = ExportOptions { dynamic: true, ..opts((192, 256), 1) };
    let rep = export(&m, &o, &fp_path).unwrap();
    assert_eq!(rep.input.to_string(), "images (batch, 3, height, width) float32");
    assert_eq!(rep.outputs[0].to_string(), "output0 (batch, 10, anchors) float32");
    export(&q, &o, &q_path).unwrap();
    onnx_full_check(&fp_path);
    onnx_full_check(&q_path);
    let fp = OnnxModel::load(&fp_path).unwrap();
    let qo = OnnxModel::load(&q_path).unwrap();
    assert!(fp.is_dynamic() && fp.batch().is_none());
    tch::manual_seed(3);
    let x = ref_input("gelan-c-mini");
    for (b, h, w) in [(1, 192, 256), (4, 256, 320), (1, 320, 224), (4, 192, 256)] {
        let input = if (b, h, w) == (1, 192, 256) { x.narrow(0, 0, 1) } else { Tensor::rand([b, 3, h, w], (Kind::Float, tch::Device::Cpu)) };
        let a = (h / 8) * (w / 8) + (h / 16) * (w / 16) + (h / 32) * (w / 32);
        let got = fp.run(&input).unwrap();
        assert_eq!(got[0].size(), [b, 10, a]);
        assert_fp_parity(&format!("FP dynamic b{b} {h}x{w}"), &got[0], &m.forward(&input));
        assert_parity(&format!("PTQ dynamic b{b} {h}x{w}"), &qo.run(&input).unwrap()[0], &mut q, &input, -1.0);
    }
}

#[test]
fn end2end_trt_node_is_as_specified() {
    let m = ptq("gelan-c-mini");
    let dir = out_dir();
    let path = dir.path().join("e2e.onnx");
    let o = ExportOptions { end2end: Some(End2End::default()), ..opts((192, 256), 1) };
    let rep = export(&m, &o, &path).unwrap();
    println!("{rep}");
    assert_eq!((rep.opset, rep.ir_version), (16, 8));
    onnx_full_check(&path);
    let proto = read_model(&path);
    assert!(proto.opset_import.iter().any(|o| o.domain == "TRT" && o.version == 1));
    assert!(proto.opset_import.iter().any(|o| o.domain.is_empty() && o.version == 16));
    let g = proto.graph.as_ref().unwrap();
    let nms: Vec<_> = g.node.iter().filter(|n| n.op_type == "EfficientNMS_TRT").collect();
    assert_eq!(nms.len(), 1);
    let n = nms[0];
    assert_eq!(n.domain, "TRT");
    assert_eq!(attr_i(n, "background_class"), Some(-1));
    assert_eq!(attr_i(n, "box_coding"), Some(1));
    assert_eq!(attr_f(n, "iou_threshold"), Some(0.45));
    assert_eq!(attr_i(n, "max_output_boxes"), Some(100));
    assert_eq!(attr_s(n, "plugin_version").as_deref(), Some("1"));
    assert_eq!(attr_i(n, "score_activation"), Some(0));
    assert_eq!(attr_f(n, "score_threshold"), Some(0.25));
    assert_eq!(n.attribute.len(), 7, "no class_agnostic attribute unless asked");
    assert_eq!(n.output, ["num_dets", "det_boxes", "det_scores", "det_classes"]);
    let outs: Vec<String> = rep.outputs.iter().map(|o| o.to_string()).collect();
    assert_eq!(outs, ["num_dets (batch, 1) int32", "det_boxes (batch, 100, 4) float32", "det_scores (batch, 100) float32", "det_classes (batch, 100) int32"]);
    assert_eq!(
        rep.check.outputs,
        ["num_dets (batch, 1) int32", "det_boxes (batch, 100, 4) float32", "det_scores (batch, 100) float32", "det_classes (batch, 100) int32"]
    );
    // NMS inputs: boxes (B, A, 4) and scores (B, A, nc) split from transposed output0.
    let producer = |name: &str| g.node.iter().find(|p| p.output.iter().any(|o| o == name)).unwrap();
    let split = producer(&n.input[0]);
    assert_eq!(split.op_type, "Split");
    assert_eq!(split.output, n.input);
    assert_eq!(producer(&split.input[0]).op_type, "Transpose");
    assert_eq!(rep.check.plugins.len(), 1);
    // class-agnostic adds the attribute.
    let o = ExportOptions { end2end: Some(End2End { class_agnostic: true, ..End2End::default() }), ..opts((192, 256), 1) };
    export(&m, &o, &path).unwrap();
    let proto = read_model(&path);
    let n = proto.graph.node.iter().find(|n| n.op_type == "EfficientNMS_TRT").unwrap();
    assert_eq!(attr_i(n, "class_agnostic"), Some(1));
}

#[test]
fn end2end_onnx_nms_runs_in_ort_and_matches_reference_nms() {
    let m = fixture("yolov9-t-shapes-converted");
    let x = ref_input("yolov9-t-shapes-converted");
    let want_out = m.forward(&x);
    let dir = out_dir();
    for agnostic in [false, true] {
        let e = End2End { nms: Nms::Onnx, class_agnostic: agnostic, topk_all: 50, ..End2End::default() };
        let path = dir.path().join(format!("e2e_onnx_{agnostic}.onnx"));
        let o = ExportOptions { end2end: Some(e.clone()), ..opts((192, 256), 1) };
        let rep = export(&m, &o, &path).unwrap();
        assert!(rep.check.plugins.is_empty());
        onnx_full_check(&path);
        let ort = OnnxModel::load(&path).unwrap();
        assert_eq!(ort.output_names, ["num_dets", "det_boxes", "det_scores", "det_classes"]);
        let got = ort.run(&x).unwrap();
        assert_eq!(got[0].size(), [2, 1]);
        assert_eq!(got[0].kind(), Kind::Int);
        assert_eq!(got[1].size(), [2, 50, 4]);
        assert_eq!(got[2].size(), [2, 50]);
        assert_eq!(got[3].kind(), Kind::Int);
        for b in 0..2 {
            let want = reference_nms(&want_out.get(b), e.conf_thres as f32, e.iou_thres as f32, e.topk_all as usize, agnostic);
            let n = got[0].int64_value(&[b, 0]) as usize;
            println!("agnostic={agnostic} image {b}: {n} detections (reference {})", want.len());
            assert_eq!(n, want.len(), "image {b}: detection count");
            for (i, (wb, ws, wc, _)) in want.iter().enumerate() {
                let i = i as i64;
                assert!((got[2].double_value(&[b, i]) - *ws as f64).abs() < 1e-4, "image {b} det {i}: score");
                assert_eq!(got[3].int64_value(&[b, i]), *wc, "image {b} det {i}: class");
                for (c, &v) in wb.iter().enumerate() {
                    assert!((got[1].double_value(&[b, i, c as i64]) - v as f64).abs() < 1e-2, "image {b} det {i}: box");
                }
            }
            // Padding is zero.
            if n < 50 {
                assert_eq!(got[2].get(b).narrow(0, n as i64, 50 - n as i64).abs().sum(Kind::Float).double_value(&[]), 0.0);
            }
        }
        // Sane: the trained model finds shapes in the letterboxed image.
        assert!(got[0].int64_value(&[0, 0]) >= 1, "no detections on the shapes image");
        // And batch 3 runs (dynamic batch).
        let x3 = Tensor::cat(&[x.shallow_clone(), x.narrow(0, 0, 1)], 0);
        let got3 = ort.run(&x3).unwrap();
        assert_eq!(got3[0].size(), [3, 1]);
        assert_eq!(got3[0].int64_value(&[2, 0]), got[0].int64_value(&[0, 0]));
    }
}

#[test]
fn check_rejects_a_hand_broken_model() {
    let m = ptq("gelan-c-mini");
    let dir = out_dir();
    let path = dir.path().join("ok.onnx");
    export(&m, &opts((192, 256), 1), &path).unwrap();
    assert!(check_file(&path).is_ok());
    let good = read_model(&path);

    // A zero activation scale.
    let mut bad = good.clone();
    let g = bad.graph.as_mut().unwrap();
    let q = g.node.iter().find(|n| n.op_type == "QuantizeLinear" && !n.input[1].contains("weight")).unwrap().input[1].clone();
    let t = g.initializer.iter_mut().find(|t| t.name == q).unwrap();
    t.raw_data = 0f32.to_le_bytes().to_vec();
    let bad_path = dir.path().join("zero_scale.onnx");
    std::fs::write(&bad_path, bad.write_to_bytes().unwrap()).unwrap();
    let err = check_file(&bad_path).unwrap_err().to_string();
    println!("zero scale: {err}");
    assert!(err.contains("zero_scale.onnx") && err.contains("scale") && err.contains("> 0") && !err.contains('\n'));

    // A non-zero zero point.
    let mut bad = good.clone();
    let g = bad.graph.as_mut().unwrap();
    let t = g.initializer.iter_mut().find(|t| t.data_type == 3 && t.dims.is_empty()).unwrap();
    t.raw_data = vec![3u8];
    let err = check_model(&bad).unwrap_err().to_string();
    println!("zero point: {err}");
    assert!(err.contains("zero point") && err.contains("not 0"));

    // A weight scale of the wrong length.
    let mut bad = good.clone();
    let g = bad.graph.as_mut().unwrap();
    let wq = g.node.iter().find(|n| n.op_type == "QuantizeLinear" && n.input[1].contains("weight")).unwrap().clone();
    let s = g.initializer.iter_mut().find(|t| t.name == wq.input[1]).unwrap();
    s.dims = vec![2];
    s.raw_data.truncate(8);
    let z = g.initializer.iter().find(|t| t.name == wq.input[2]).unwrap().clone();
    let mut z2 = z;
    z2.name = "zp2".into();
    z2.dims = vec![2];
    z2.raw_data = vec![0, 0];
    g.initializer.push(z2);
    for n in g.node.iter_mut().filter(|n| n.input.get(1) == Some(&wq.input[1])) {
        n.input[2] = "zp2".into();
    }
    let err = check_model(&bad).unwrap_err().to_string();
    println!("weight scale: {err}");
    assert!(err.contains("weight scale has 2 values"));

    // Q/DQ on a bias.
    let mut bad = good.clone();
    let g = bad.graph.as_mut().unwrap();
    let conv = g.node.iter().position(|n| n.op_type == "Conv" && n.input.len() == 3).unwrap();
    let bias = g.node[conv].input[2].clone();
    let (s, z) = {
        let q = g.node.iter().find(|n| n.op_type == "QuantizeLinear" && !n.input[1].contains("weight")).unwrap();
        (q.input[1].clone(), q.input[2].clone())
    };
    let mk = |op: &str, i: &str, o: &str| onnx_protobuf::NodeProto {
        op_type: op.into(),
        name: o.into(),
        input: vec![i.into(), s.clone(), z.clone()],
        output: vec![o.into()],
        ..Default::default()
    };
    g.node.insert(conv, mk("DequantizeLinear", "bias_q", "bias_dq"));
    g.node.insert(conv, mk("QuantizeLinear", &bias, "bias_q"));
    g.node[conv + 2].input[2] = "bias_dq".into();
    let err = check_model(&bad).unwrap_err().to_string();
    println!("bias: {err}");
    assert!(err.contains("bias"));

    // An op TensorRT does not parse.
    let mut bad = good;
    bad.graph.as_mut().unwrap().node[0].op_type = "ConvInteger".into();
    let err = check_model(&bad).unwrap_err().to_string();
    assert!(err.contains("ConvInteger") && err.contains("not supported"));
}

#[test]
fn missing_onnxruntime_is_a_clear_error() {
    // Run in a child so that this process's ONNX Runtime stays loadable for the other tests.
    if std::env::var_os("YOLO_QAT_ORT_MISSING_CHILD").is_some() {
        let err = yolo_qat::export::ort::library_path().unwrap_err().to_string();
        assert!(err.contains("ONNX Runtime library not found") && err.contains("/nowhere/venv/lib"), "{err}");
        assert!(!err.contains('\n'));
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let st = Command::new(exe)
        .args(["--exact", "missing_onnxruntime_is_a_clear_error", "--nocapture"])
        .env("YOLO_QAT_ORT_MISSING_CHILD", "1")
        .env("YOLO_QAT_HOME", "/nowhere")
        .env_remove("ORT_DYLIB_PATH")
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn skipped_layers_stay_fp_and_uncalibrated_quantizers_are_reported() {
    let mut m = fixture("gelan-c-mini");
    prepare(&mut m, &[2, 22], CalibMethod::Mse).unwrap();
    let x = ref_input("gelan-c-mini");
    calibrate(&mut m, std::iter::once(x.shallow_clone()), CalibMethod::Mse).unwrap();
    let dir = out_dir();
    let path = dir.path().join("skip.onnx");
    let rep = export(&m, &opts((192, 256), 2), &path).unwrap();
    println!("{rep}");
    assert!(rep.qdq.disabled_slots > 0);
    let fp: Vec<&str> = rep.check.fp_convs.iter().map(String::as_str).collect();
    assert!(fp.contains(&"model.2.cv1 (neither activation nor weight quantized)"), "{fp:?}");
    assert!(fp.iter().any(|c| c.starts_with("model.22.cv2.0.0 ")), "{fp:?}");
    assert!(fp.iter().all(|c| c.starts_with("model.2.") || c.starts_with("model.22.")), "{fp:?}");
    assert_eq!(rep.check.int8_convs + fp.len(), rep.check.convs);
    onnx_full_check(&path);
    let ort = OnnxModel::load(&path).unwrap();
    assert_parity("PTQ with model.2 and model.22 skipped", &ort.run(&x).unwrap()[0], &mut m, &x, -1.0);

    // Placed but never calibrated: weights are quantized (max per channel), activations are not.
    let mut m = fixture("gelan-c-mini");
    prepare(&mut m, &[], CalibMethod::Mse).unwrap();
    let rep = export(&m, &opts((192, 256), 1), &path).unwrap();
    let text = rep.to_string();
    assert!(text.contains("warning:") && text.contains("uncalibrated"), "{text}");
    assert_eq!(rep.qdq.activation_pairs, 0);
    assert_eq!(rep.check.int8_convs, 0);
}

#[test]
fn bad_options_are_clear_errors() {
    let m = fixture("gelan-c-mini");
    let dir = out_dir();
    let path = dir.path().join("x.onnx");
    let err = export(&m, &opts((200, 256), 1), &path).unwrap_err().to_string();
    assert!(err.contains("--imgsz 200 256") && err.contains("32"), "{err}");
    let err = export(&m, &ExportOptions { opset: Some(11), ..opts((192, 256), 1) }, &path).unwrap_err().to_string();
    assert!(err.contains("--opset 11"), "{err}");
    let e = End2End { iou_thres: 0.0, ..End2End::default() };
    let err = export(&m, &ExportOptions { end2end: Some(e), ..opts((192, 256), 1) }, &path).unwrap_err().to_string();
    assert!(err.contains("--iou-thres"), "{err}");
    assert!(!path.exists(), "nothing written on error");
}

#[test]
fn newer_opsets_and_dynamic_onnx_nms_run() {
    let m = fixture("yolov9-t-shapes-converted");
    let x = ref_input("yolov9-t-shapes-converted");
    let want = m.forward(&x);
    let dir = out_dir();
    for opset in [17, 18, 21] {
        let path = dir.path().join(format!("fp{opset}.onnx"));
        let rep = export(&m, &ExportOptions { opset: Some(opset), ..opts((192, 256), 2) }, &path).unwrap();
        assert_eq!(rep.check.opset, opset);
        onnx_full_check(&path);
        assert_fp_parity(&format!("FP opset {opset}"), &OnnxModel::load(&path).unwrap().run(&x).unwrap()[0], &want);
    }
    // Dynamic end2end with the ONNX NMS (class-agnostic, opset 18: ReduceMax takes axes as an input).
    let e = End2End { nms: Nms::Onnx, class_agnostic: true, ..End2End::default() };
    let path = dir.path().join("e2e_dyn.onnx");
    let rep = export(&m, &ExportOptions { dynamic: true, end2end: Some(e), opset: Some(18), ..opts((192, 256), 1) }, &path).unwrap();
    assert_eq!(rep.input.to_string(), "images (batch, 3, height, width) float32");
    onnx_full_check(&path);
    let ort = OnnxModel::load(&path).unwrap();
    let x2 = Tensor::cat(&[x.narrow(0, 0, 1).upsample_nearest2d([256, 320], None, None), Tensor::zeros([1, 3, 256, 320], (Kind::Float, tch::Device::Cpu))], 0);
    let got = ort.run(&x2).unwrap();
    let want2 = m.forward(&x2);
    for b in 0..2 {
        let r = reference_nms(&want2.get(b), 0.25, 0.45, 100, true);
        assert_eq!(got[0].int64_value(&[b, 0]) as usize, r.len(), "image {b}");
    }
    assert!(got[0].int64_value(&[0, 0]) >= 1);
}

#[test]
fn dual_head_model_exports_its_main_branch() {
    let m = fixture("yolov9-t-dual");
    let x = ref_input("yolov9-t-dual");
    let dir = out_dir();
    let resize_like = m.graph.nodes.iter().any(|n| matches!(n.op, yolo_qat::model::graph::Op::ResizeLike));
    for dynamic in [false, true] {
        let path = dir.path().join(format!("dual_{dynamic}.onnx"));
        let rep = export(&m, &ExportOptions { dynamic, ..opts((192, 256), 2) }, &path).unwrap();
        let resizes = rep.check.op_counts.get("Resize").copied().unwrap_or(0);
        println!("dual (dynamic={dynamic}): {} nodes, {resizes} Resize; the model has ResizeLike: {resize_like}", rep.nodes);
        onnx_full_check(&path);
        assert_fp_parity(&format!("dual FP dynamic={dynamic}"), &OnnxModel::load(&path).unwrap().run(&x).unwrap()[0], &m.forward(&x));
    }
}

/// A tiny layout whose main path resizes with CBLinear/CBFuse (nearest to another map's size).
const CBFUSE_YAML: &str = "nc: 3
depth_multiple: 1.0
width_multiple: 1.0
backbone:
  [
   [-1, 1, Conv, [16, 3, 2]],
   [-1, 1, Conv, [16, 3, 2]],
   [-1, 1, Conv, [32, 3, 2]],
   [-1, 1, Conv, [32, 3, 2]],
   [-1, 1, Conv, [32, 3, 2]],
   [4, 1, CBLinear, [[32, 32]]],
   [[5, 2], 1, CBFuse, [[0]]],
   [[5, 3], 1, CBFuse, [[1]]],
  ]
head:
  [
   [[6, 7, 4], 1, DDetect, [nc]],
  ]
";

#[test]
fn resize_to_another_maps_size_exports_static_and_dynamic() {
    let dir = out_dir();
    let cfg = dir.path().join("cbfuse.yaml");
    std::fs::write(&cfg, CBFUSE_YAML).unwrap();
    tch::manual_seed(1);
    let mut m = yolo_qat::detector::random(&cfg, None).unwrap();
    assert!(m.graph.nodes.iter().any(|n| matches!(n.op, yolo_qat::model::graph::Op::ResizeLike)));
    tch::manual_seed(2);
    let x = Tensor::rand([2, 3, 96, 128], (Kind::Float, tch::Device::Cpu));
    let want = m.forward(&x);
    let cases = [
        ("static", ExportOptions { imgsz: (96, 128), batch: 2, ..Default::default() }),
        ("dynamic", ExportOptions { dynamic: true, imgsz: (96, 128), ..Default::default() }),
        ("end2end (symbolic batch)", ExportOptions { end2end: Some(End2End { nms: Nms::Onnx, ..End2End::default() }), imgsz: (96, 128), ..Default::default() }),
    ];
    for (what, o) in cases {
        let path = dir.path().join("cbfuse.onnx");
        let rep = export(&m, &o, &path).unwrap();
        assert_eq!(rep.check.op_counts["Resize"], 2, "{what}");
        onnx_full_check(&path);
        let got = OnnxModel::load(&path).unwrap().run(&x).unwrap();
        if o.end2end.is_none() {
            assert_fp_parity(&format!("CBFuse {what}"), &got[0], &want);
        } else {
            assert_eq!(got[0].size(), [2, 1]);
        }
    }
    // And quantized.
    prepare(&mut m, &[], CalibMethod::Mse).unwrap();
    calibrate(&mut m, std::iter::once(x.shallow_clone()), CalibMethod::Mse).unwrap();
    let path = dir.path().join("cbfuse_q.onnx");
    export(&m, &ExportOptions { imgsz: (96, 128), batch: 2, ..Default::default() }, &path).unwrap();
    let got = OnnxModel::load(&path).unwrap().run(&x).unwrap();
    assert_parity("CBFuse PTQ", &got[0], &mut m, &x, -1.0);
}

#[test]
fn onnx_model_is_shareable_across_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<OnnxModel>();
}

/// The setting: the trained model calibrated on real images (shapes-mini train, rect
/// off, 320 px), exported, and run by ONNX Runtime on the 16 val images. Both sides agree to fp32
/// rounding at the first layer; beyond it, a rounding flip at one quantizer moves later
/// activations by whole steps (see docs/results.md), so the bar is judged against the model's
/// own f64-vs-f32 spread as in `assert_parity`, and the numbers are printed.
#[test]
fn ptq_export_of_the_trained_model_on_real_images() {
    use yolo_qat::data::config::DataConfig;
    use yolo_qat::data::val_set::{ValSet, ValSetOptions};
    let data = DataConfig::load(Path::new("../shared/data/shapes-mini/shapes.yaml")).unwrap();
    let options = ValSetOptions { imgsz: 320, batch_size: 8, rect: false, ..Default::default() };
    let (train, val) = (ValSet::load(&data.train, data.nc(), options).unwrap(), ValSet::load(&data.val, data.nc(), options).unwrap());
    let as_tensor = |set: &ValSet, i: usize| {
        let b = set.load_batch(i).unwrap();
        Tensor::from_slice(&b.images).view([b.batch as i64, 3, b.height as i64, b.width as i64]).to_kind(Kind::Float) / 255.0
    };
    let mut m = fixture("yolov9-t-shapes-converted");
    prepare(&mut m, &[], CalibMethod::Mse).unwrap();
    assert_eq!(calibrate(&mut m, (0..2).map(|i| as_tensor(&train, i)), CalibMethod::Mse).unwrap(), 0);
    let x = Tensor::cat(&[as_tensor(&val, 0), as_tensor(&val, 1)], 0);
    let dir = out_dir();
    let path = dir.path().join("real.onnx");
    let rep = export(&m, &opts((320, 320), 16), &path).unwrap();
    assert!(rep.check.fp_convs.is_empty());
    let got = OnnxModel::load(&path).unwrap().run(&x).unwrap().remove(0);
    assert_parity("yolov9-t-shapes PTQ on real images (ORT basic)", &got, &mut m, &x, 0.25);
}

#[test]
fn segmentation_export_has_protos_and_matches_forward() {
    let name = "gelan-t-dseg-shapes";
    let x = ref_input(name);
    let dir = out_dir();
    // FP: output0 and output1 equal the forward pass (and upstream's fixture through it)
    let m = fixture(name);
    let path = dir.path().join("fp-seg.onnx");
    let rep = export(&m, &opts((192, 256), 2), &path).unwrap();
    println!("{rep}");
    assert_eq!(rep.outputs.iter().map(|o| o.to_string()).collect::<Vec<_>>(), ["output0 (2, 42, 1008) float32", "output1 (2, 32, 48, 64) float32"]);
    onnx_full_check(&path);
    let got = OnnxModel::load(&path).unwrap().run(&x).unwrap();
    let g = &m.graph;
    let mut want = m.run(&x, &[g.output, g.proto.unwrap()]);
    assert_fp_parity("FP seg output0", &got[0], &want.take(g.output));
    assert_fp_parity("FP seg output1", &got[1], &want.take(g.proto.unwrap()));

    // PTQ: every conv INT8 (proto and coefficient convs included), ORT agrees with fake quantization
    let m = ptq(name);
    let path = dir.path().join("ptq-seg.onnx");
    let rep = export(&m, &opts((192, 256), 2), &path).unwrap();
    let convs = m.graph.convs().count();
    assert_eq!((rep.check.convs, rep.check.int8_convs), (convs + 1, convs + 1), "every conv INT8, the DFL's included");
    assert!(rep.check.fp_convs.is_empty(), "{:?}", rep.check.fp_convs);
    onnx_full_check(&path);
    let mut m = m;
    let got = OnnxModel::load(&path).unwrap().run(&x).unwrap();
    // boxes and scores: as for detection (the bar, or the model's own f64-vs-f32 spread)
    assert_parity("PTQ seg output0 (ORT basic)", &got[0], &mut m, &x, floor_for(name));
    // coefficients and prototypes: mean error no more than twice the model's own f64-vs-f32 spread
    let protos = |m: &Detector, x: &Tensor| {
        let g = &m.graph;
        let mut v = m.run(x, &[g.output, g.proto.unwrap()]);
        (v.take(g.output).narrow(1, 4 + 6, 32).to_kind(Kind::Float), v.take(g.proto.unwrap()).to_kind(Kind::Float))
    };
    let (coef, proto) = protos(&m, &x);
    m.to(tch::Device::Cpu, Kind::Double);
    let (own_coef, own_proto) = protos(&m, &x.to_kind(Kind::Double));
    m.to(tch::Device::Cpu, Kind::Float);
    let mean_err = |a: &Tensor, b: &Tensor| (a - b).abs().mean(Kind::Float).double_value(&[]);
    let (ort_c, own_c) = (mean_err(&got[0].narrow(1, 4 + 6, 32), &coef), mean_err(&own_coef, &coef));
    let (ort_p, own_p) = (mean_err(&got[1], &proto), mean_err(&own_proto, &proto));
    println!("PTQ seg mean |error| vs f32 fake quant: coefficients ORT {ort_c:.4e} (own f64 {own_c:.4e}), prototypes ORT {ort_p:.4e} (own f64 {own_p:.4e})");
    let (c_range, p_range) = (coef.abs().max().double_value(&[]), proto.abs().max().double_value(&[]));
    assert!(ort_c <= 2.0 * own_c + 1e-3 * c_range, "coefficients disagree beyond the model's own precision");
    assert!(ort_p <= 2.0 * own_p + 1e-3 * p_range, "prototypes disagree beyond the model's own precision");
}

/// `eval --weights x.onnx` on a segmentation export gives the box and mask mAPs of the
/// PyTorch-side eval (upstream's segment/val.py figures on shapes-mini-seg).
#[test]
fn segmentation_onnx_eval_matches_model_eval() {
    use yolo_qat::data::config::DataConfig;
    use yolo_qat::eval::validate::EvalOptions;
    let m = fixture("gelan-t-dseg-shapes");
    let dir = out_dir();
    let path = dir.path().join("seg-dynamic.onnx");
    export(&m, &ExportOptions { dynamic: true, ..opts((320, 320), 1) }, &path).unwrap();
    let data = DataConfig::load(Path::new("../shared/data/shapes-mini-seg/shapes-seg.yaml")).unwrap();
    let mut o = EvalOptions::new(tch::Device::Cpu);
    o.progress = false;
    let r = yolo_qat::export::onnx_eval::evaluate_onnx(&path, &data, 320, 8, &o).unwrap();
    let mask = r.mask.as_ref().expect("output1 gives mask metrics");
    println!("ONNX: box mAP50 {:.4} mAP {:.4}; mask mAP50 {:.4} mAP {:.4}", r.map50, r.map, mask.map50, mask.map);
    for (what, got, want) in [("box mAP50", r.map50, 0.661), ("box mAP", r.map, 0.511), ("mask mAP50", mask.map50, 0.642), ("mask mAP", mask.map, 0.411)] {
        assert!((got - want).abs() <= 0.003, "{what} {got} vs upstream {want}");
    }
}
