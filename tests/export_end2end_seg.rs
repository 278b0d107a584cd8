//! End-to-end export of a segmentation model (issue 15): the TensorRT variant's nodes
//! (EfficientNMSX_TRT + ROIAlign_TRT, as the reference patch writes them), and the ONNX-ops
//! variant run by ONNX Runtime against a reference NMS, a reference RoIAlign written from the
//! ONNX operator definition, and eval's own masks (upstream `process_mask`). CPU only.

mod common;

use common::reference_nms::reference_nms;
use common::{require, venv_python, SEG};
use onnx_protobuf::{Message, ModelProto};
use std::path::Path;
use tch::{Kind, Tensor};
use yolo_qat::detector::{load, Detector};
use yolo_qat::eval::masks::predicted_masks;
use yolo_qat::eval::nms::Detection;
use yolo_qat::export::onnx_builder::{attr_f, attr_i, attr_s};
use yolo_qat::export::ort::OnnxModel;
use yolo_qat::export::{export, End2End, ExportOptions, MaskPooling, Nms};

const NC: i64 = 6;
const NM: i64 = 32;

fn seg_model() -> Detector {
    load(&require(SEG)).unwrap()
}

/// The fixture's (2, 3, 192, 256) input: a letterboxed val image, then noise.
fn seg_input() -> Tensor {
    let refs: std::collections::BTreeMap<String, Tensor> =
        Tensor::read_safetensors(require("../shared/fixtures/gelan-t-dseg-shapes.ref.safetensors")).unwrap().into_iter().collect();
    refs["input"].shallow_clone()
}

fn e2e_opts(e: End2End) -> ExportOptions {
    ExportOptions { end2end: Some(e), imgsz: (192, 256), ..Default::default() }
}

fn read_model(path: &Path) -> ModelProto {
    ModelProto::parse_from_bytes(&std::fs::read(path).unwrap()).unwrap()
}

/// `onnx.checker.check_model(full_check=True)` in the project venv.
fn onnx_full_check(path: &Path) {
    let code = format!("import onnx; onnx.checker.check_model(onnx.load({:?}), full_check=True)", path.display().to_string());
    let out = std::process::Command::new(venv_python()).args(["-c", &code]).output().expect("the project venv's python (scripts/setup.sh)");
    assert!(out.status.success(), "onnx checker: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn trt_variant_has_efficient_nmsx_and_roialign_as_the_reference_writes_them() {
    let m = seg_model();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seg-e2e-trt.onnx");
    let rep = export(&m, &e2e_opts(End2End::default()), &path).unwrap();
    println!("{rep}");
    assert_eq!(rep.opset, 16);
    let outs: Vec<String> = rep.outputs.iter().map(|o| o.to_string()).collect();
    assert_eq!(
        outs,
        [
            "num_dets (batch, 1) int32",
            "det_boxes (batch, 100, 4) float32",
            "det_scores (batch, 100) float32",
            "det_classes (batch, 100) int32",
            "det_masks (batch, 100, 25600) float32"
        ]
    );
    assert_eq!(rep.check.outputs, outs);
    let proto = read_model(&path);
    let g = proto.graph.as_ref().unwrap();
    let of = |op: &str| g.node.iter().filter(|n| n.op_type == op).collect::<Vec<_>>();
    assert!(of("EfficientNMS_TRT").is_empty(), "segmentation uses the X variant");
    let nms = of("EfficientNMSX_TRT");
    assert_eq!(nms.len(), 1);
    let n = nms[0];
    assert_eq!(n.domain, "TRT");
    for (k, v) in [("background_class", -1), ("box_coding", 1), ("max_output_boxes", 100), ("score_activation", 0)] {
        assert_eq!(attr_i(n, k), Some(v), "{k}");
    }
    assert_eq!((attr_f(n, "iou_threshold"), attr_f(n, "score_threshold")), (Some(0.45), Some(0.25)));
    assert_eq!(attr_s(n, "plugin_version").as_deref(), Some("1"));
    assert_eq!(n.output.len(), 5, "num_dets, boxes, scores, classes, indices");
    assert_eq!(&n.output[..4], ["num_dets", "det_boxes", "det_scores", "det_classes"]);
    let roi = of("ROIAlign_TRT");
    assert_eq!(roi.len(), 1);
    let r = roi[0];
    assert_eq!(r.domain, "TRT");
    for (k, v) in [("coordinate_transformation_mode", 1), ("mode", 1), ("output_height", 160), ("output_width", 160), ("sampling_ratio", 0)] {
        assert_eq!(attr_i(r, k), Some(v), "{k}");
    }
    assert_eq!(attr_f(r, "spatial_scale"), Some(0.25));
    // ROIAlign pools the prototypes (the lowered `output1`) inside the NMS's boxes.
    let producer = |name: &str| g.node.iter().find(|p| p.output.iter().any(|o| o == name)).unwrap();
    assert_eq!(producer(&r.input[0]).output[0], "output1");
    assert_eq!(producer(&r.input[1]).input[0], "det_boxes");
    assert_eq!(rep.check.plugins.len(), 2);
    assert!(rep.check.plugins[0].contains("EfficientNMSX_TRT") && rep.check.plugins[0].contains("not in TensorRT's own plugin library"));
    assert!(rep.check.plugins[1].contains("ROIAlign_TRT") && !rep.check.plugins[1].contains("not in TensorRT"));
    onnx_full_check(&path);
    let meta: Vec<(String, String)> = proto.metadata_props.iter().map(|p| (p.key.clone(), p.value.clone())).collect();
    assert!(meta.contains(&("model type".into(), "Segmentation".into())));
    // Opsets before 16 have no half-pixel RoiAlign: a clear error, nothing written.
    let p13 = dir.path().join("seg-e2e-13.onnx");
    let err = export(&m, &ExportOptions { opset: Some(13), ..e2e_opts(End2End::default()) }, &p13).unwrap_err().to_string();
    assert!(err.contains("--opset 13") && err.contains("16"), "{err}");
    assert!(!p13.exists());
}

/// Bilinear sample of one (H, W) plane as the ONNX RoiAlign definition does (0 outside
/// [-1, H] × [-1, W], clamped at the edges).
fn bilinear(plane: &[f32], (h, w): (usize, usize), y: f64, x: f64) -> f64 {
    if y < -1.0 || y > h as f64 || x < -1.0 || x > w as f64 {
        return 0.0;
    }
    let (y, x) = (y.max(0.0), x.max(0.0));
    let (mut y0, mut x0) = (y.floor() as usize, x.floor() as usize);
    let (y1, x1, ly, lx);
    if y0 >= h - 1 {
        y0 = h - 1;
        (y1, ly) = (h - 1, 0.0);
    } else {
        (y1, ly) = (y0 + 1, y - y0 as f64);
    }
    if x0 >= w - 1 {
        x0 = w - 1;
        (x1, lx) = (w - 1, 0.0);
    } else {
        (x1, lx) = (x0 + 1, x - x0 as f64);
    }
    let v = |r: usize, c: usize| plane[r * w + c] as f64;
    (1.0 - ly) * (1.0 - lx) * v(y0, x0) + (1.0 - ly) * lx * v(y0, x1) + ly * (1.0 - lx) * v(y1, x0) + ly * lx * v(y1, x1)
}

/// RoiAlign (opset 16, `half_pixel`, `avg`, adaptive sampling) of one box over `proto`
/// (nm, H, W), as the operator's definition states: (nm, R·R).
fn reference_roi_align(proto: &Tensor, b: [f32; 4], scale: f64, r: usize) -> Vec<Vec<f64>> {
    let s = proto.size();
    let (nm, h, w) = (s[0] as usize, s[1] as usize, s[2] as usize);
    let data = Vec::<f32>::try_from(proto.contiguous().view([-1])).unwrap();
    let [x1, y1, x2, y2] = b.map(|v| v as f64 * scale);
    let (x0, y0) = (x1 - 0.5, y1 - 0.5);
    let (bw, bh) = ((x2 - x1) / r as f64, (y2 - y1) / r as f64);
    let (gw, gh) = (((x2 - x1) / r as f64).ceil() as usize, ((y2 - y1) / r as f64).ceil() as usize);
    let count = (gw * gh).max(1) as f64;
    (0..nm)
        .map(|c| {
            let plane = &data[c * h * w..(c + 1) * h * w];
            let mut out = Vec::with_capacity(r * r);
            for ph in 0..r {
                for pw in 0..r {
                    let mut sum = 0.0;
                    for iy in 0..gh {
                        let y = y0 + ph as f64 * bh + (iy as f64 + 0.5) * bh / gh as f64;
                        for ix in 0..gw {
                            let x = x0 + pw as f64 * bw + (ix as f64 + 0.5) * bw / gw as f64;
                            sum += bilinear(plane, (h, w), y, x);
                        }
                    }
                    out.push(sum / count);
                }
            }
            out
        })
        .collect()
}

/// The R×R box mask brought back to the prototype grid: each cell of eval's crop (upstream
/// `crop_mask`: cell corner inside the box scaled to the prototypes) takes the box mask's
/// sample nearest to the cell's centre, thresholded as eval does (> 0.5).
fn pasted(mask: &[f32], r: usize, b: [f32; 4], scale: f32, (mh, mw): (usize, usize)) -> Vec<bool> {
    let [x1, y1, x2, y2] = b.map(|v| v * scale);
    let (bw, bh) = ((x2 - x1) / r as f32, (y2 - y1) / r as f32);
    let mut out = vec![false; mh * mw];
    for i in 0..mh {
        for j in 0..mw {
            let (cx, cy) = (j as f32, i as f32);
            if !(cx >= x1 && cx < x2 && cy >= y1 && cy < y2) {
                continue;
            }
            // Sample (pw, ph) sits at x1 - 0.5 + (pw + 0.5)·bw in pixel-index coordinates.
            let pw = (((cx - x1 + 0.5) / bw) - 0.5).round().clamp(0.0, r as f32 - 1.0) as usize;
            let ph = (((cy - y1 + 0.5) / bh) - 0.5).round().clamp(0.0, r as f32 - 1.0) as usize;
            out[i * mw + j] = mask[ph * r + pw] > 0.5;
        }
    }
    out
}

fn iou(a: &[bool], b: &[bool]) -> f64 {
    let inter = a.iter().zip(b).filter(|(x, y)| **x && **y).count() as f64;
    let union = a.iter().zip(b).filter(|(x, y)| **x || **y).count() as f64;
    if union == 0.0 {
        1.0
    } else {
        inter / union
    }
}

#[test]
fn onnx_variant_runs_in_ort_and_matches_reference_nms_roi_align_and_eval_masks() {
    let m = seg_model();
    let x = seg_input();
    let g = &m.graph;
    let mut v = m.run(&x, &[g.output, g.proto.unwrap()]);
    let (out, proto) = (v.take(g.output), v.take(g.proto.unwrap()));
    let (r, k) = (40usize, 30i64);
    let e = End2End { nms: Nms::Onnx, topk_all: k, masks: MaskPooling { resolution: r as i64, ..MaskPooling::default() }, ..End2End::default() };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seg-e2e-onnx.onnx");
    let rep = export(&m, &e2e_opts(e.clone()), &path).unwrap();
    assert!(rep.check.plugins.is_empty());
    onnx_full_check(&path);
    let ort = OnnxModel::load(&path).unwrap();
    assert_eq!(ort.output_names, ["num_dets", "det_boxes", "det_scores", "det_classes", "det_masks"]);
    let got = ort.run(&x).unwrap();
    assert_eq!(got[4].size(), [2, k, (r * r) as i64]);
    let (mut worst_mask, mut ious) = (0f64, Vec::new());
    for b in 0..2i64 {
        let ob = out.get(b);
        let want = reference_nms(&ob.narrow(0, 0, 4 + NC), e.conf_thres as f32, e.iou_thres as f32, k as usize, false);
        let n = got[0].int64_value(&[b, 0]) as usize;
        assert_eq!(n, want.len(), "image {b}: detection count");
        let (mut dets, mut coeffs) = (Vec::new(), Vec::new());
        for (i, (wb, ws, wc, anchor)) in want.iter().enumerate() {
            let i = i as i64;
            assert!((got[2].double_value(&[b, i]) - *ws as f64).abs() < 1e-4, "image {b} det {i}: score");
            assert_eq!(got[3].int64_value(&[b, i]), *wc, "image {b} det {i}: class");
            let boxed: [f32; 4] = std::array::from_fn(|c| got[1].double_value(&[b, i, c as i64]) as f32);
            for c in 0..4 {
                assert!((boxed[c] - wb[c]).abs() < 1e-2, "image {b} det {i}: box");
            }
            // The mask: sigmoid(coefficients of that anchor · RoIAlign of the prototypes in the box).
            let c = Vec::<f32>::try_from(ob.narrow(0, 4 + NC, NM).select(1, *anchor as i64)).unwrap();
            let pooled = reference_roi_align(&proto.get(b), boxed, 0.25, r);
            let mask = Vec::<f32>::try_from(got[4].get(b).get(i)).unwrap();
            for (q, &mv) in mask.iter().enumerate() {
                let logit: f64 = c.iter().zip(&pooled).map(|(&cc, p)| cc as f64 * p[q]).sum();
                worst_mask = worst_mask.max((mv as f64 - 1.0 / (1.0 + (-logit).exp())).abs());
            }
            let ps = proto.size();
            let eval_mask = predicted_masks(&proto.get(b), &c, &[Detection { xyxy: boxed, conf: *ws, class: *wc as usize }], (192, 256));
            let ours = pasted(&mask, r, boxed, 0.25, (ps[2] as usize, ps[3] as usize));
            ious.push(iou(&eval_mask.data[0], &ours));
            dets.push(boxed);
            coeffs.push(c);
        }
        // Padding rows: zero boxes, scores and masks.
        if n < k as usize {
            let pad = |t: &Tensor| t.get(b).narrow(0, n as i64, k - n as i64).abs().sum(Kind::Float).double_value(&[]);
            assert_eq!((pad(&got[1]), pad(&got[2]), pad(&got[4])), (0.0, 0.0, 0.0), "image {b}: padding");
        }
    }
    let mean_iou = ious.iter().sum::<f64>() / ious.len() as f64;
    let min_iou = ious.iter().cloned().fold(1.0, f64::min);
    println!(
        "{} detections; mask vs reference RoIAlign: max |diff| {worst_mask:.2e}; vs eval's process_mask: mean IoU {mean_iou:.4}, min {min_iou:.4}",
        ious.len()
    );
    assert!(got[0].int64_value(&[0, 0]) >= 1, "the trained model finds shapes in the val image");
    assert!(worst_mask < 1e-4, "ORT's masks differ from the RoIAlign definition by {worst_mask}");
    // Both threshold the same logit field (coefficients · prototypes, linear in the prototypes):
    // they differ only where the sample grid and the cell grid disagree near the contour.
    assert!(mean_iou >= 0.9, "end-to-end masks vs eval's: mean IoU {mean_iou}");
}
