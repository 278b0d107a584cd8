//! Pictures checked against the numbers they show: the plotted precision
//! envelopes integrate to the reported AP50, the curves pass through the reported P and R,
//! the confusion matrix's diagonal equals the true positives at its thresholds, and every
//! picture is written, decodes and has its size. Data: shapes-mini with the trained fixture
//! (the setting of tests/eval_parity.rs: 320 px, one batch of all 16 images).

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use yolo_qat::data::config::DataConfig;
use yolo_qat::data::val_set::{ValSet, ValSetOptions};
use yolo_qat::detector::load;
use yolo_qat::eval::matching::box_iou;
use yolo_qat::eval::metrics::smooth;
use yolo_qat::eval::validate::{evaluate, EvalOptions, EvalResult};
use yolo_qat::plots::confusion::CONFUSION_SIZE;
use yolo_qat::plots::curves::{area_101, pr_lines, CURVE_SIZE};
use yolo_qat::plots::mosaic::mosaic_size;
use yolo_qat::plots::results::{EpochRecord, Level, RESULTS_SIZE};
use yolo_qat::plots::sensitivity::SENSITIVITY_SIZE;
use yolo_qat::quant::sensitivity::{LayerSensitivity, Sensitivity};

const WEIGHTS: &str = "../shared/fixtures/yolov9-t-shapes-converted.pt";
const DATA: &str = "../shared/data/shapes-mini/shapes.yaml";

fn data() -> DataConfig {
    DataConfig::load(Path::new(DATA)).unwrap()
}

/// One evaluation with plots on, shared by the tests.
fn result() -> &'static EvalResult {
    static R: OnceLock<EvalResult> = OnceLock::new();
    R.get_or_init(|| {
        let model = load(Path::new(WEIGHTS)).unwrap();
        let d = data();
        let set = ValSet::load(&d.val, d.nc(), ValSetOptions { imgsz: 320, batch_size: 16, ..Default::default() }).unwrap();
        let mut opts = EvalOptions::new(tch::Device::Cpu);
        opts.progress = false;
        opts.plots = true;
        evaluate(&model, &set, &opts).unwrap()
    })
}

fn size_of(path: &Path) -> (u32, u32) {
    let img = image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (img.width(), img.height())
}

#[test]
fn plotted_precision_envelope_integrates_to_the_reported_ap50() {
    let r = result();
    assert_eq!(r.per_class.len(), 6, "every shapes class has labels in the val split");
    let lines = pr_lines(&r.curves);
    assert_eq!(lines.len(), r.per_class.len() + 1, "one line per class and 'all classes'");
    for (line, c) in lines.iter().zip(&r.per_class) {
        let area = area_101(&line.points);
        assert!((area - c.map50).abs() <= 1e-3, "{}: area {area} vs AP50 {}", c.name, c.map50);
        assert!(line.label.as_deref().unwrap().starts_with(&c.name), "legend order follows the classes");
    }
    let mean_area = lines[..r.per_class.len()].iter().map(|l| area_101(&l.points)).sum::<f64>() / r.per_class.len() as f64;
    assert!((mean_area - r.map50).abs() <= 1e-3, "mean area {mean_area} vs mAP50 {}", r.map50);
}

#[test]
fn confidence_curves_pass_through_the_reported_p_and_r() {
    // val.py reports P and R where the mean F1 curve, smoothed (fraction 0.1), peaks.
    let c = &result().curves;
    let n = c.f1.len() as f64;
    let mean_f1: Vec<f64> = (0..c.px.len()).map(|k| c.f1.iter().map(|f| f[k]).sum::<f64>() / n).collect();
    let s = smooth(&mean_f1, 0.1);
    let best = (0..s.len()).fold(0, |b, i| if s[i] > s[b] { i } else { b });
    for (i, m) in result().per_class.iter().enumerate() {
        assert!((c.p[i][best] - m.precision).abs() < 1e-12 && (c.r[i][best] - m.recall).abs() < 1e-12, "{}", m.name);
        let f1 = 2.0 * m.precision * m.recall / (m.precision + m.recall + 1e-16);
        assert!((c.f1[i][best] - f1).abs() < 1e-9, "{}", m.name);
    }
}

#[test]
fn confusion_diagonal_equals_true_positives_at_iou_045_conf_025() {
    let r = result();
    let cm = r.confusion.as_ref().unwrap();
    // Every label lands in exactly one cell of its column.
    for m in &r.per_class {
        let column: u64 = cm.matrix.iter().map(|row| row[m.class]).sum();
        assert_eq!(column, m.instances as u64, "{}", m.name);
    }
    // True positives counted independently on the sampled batch (all 16 images, boxes in
    // letterboxed pixels): plain greedy one-to-one matching by IoU, class-agnostic like
    // upstream, IoU > 0.45 and conf > 0.25; a pair is a true positive when classes agree.
    let images: Vec<_> = r.samples.iter().flatten().collect();
    assert_eq!(images.len(), r.images, "the sampled batch holds every image");
    let mut tp = vec![0u64; cm.nc];
    for s in images {
        let dets: Vec<_> = s.detections.iter().filter(|d| d.conf > 0.25).collect();
        let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
        for (li, l) in s.labels.iter().enumerate() {
            for (di, d) in dets.iter().enumerate() {
                let iou = box_iou(&l.xyxy, &d.xyxy);
                if iou > 0.45 {
                    pairs.push((iou, li, di));
                }
            }
        }
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
        let (mut used_l, mut used_d) = (vec![false; s.labels.len()], vec![false; dets.len()]);
        for (_, li, di) in pairs {
            if !used_l[li] && !used_d[di] {
                used_l[li] = true;
                used_d[di] = true;
                if s.labels[li].class == dets[di].class {
                    tp[dets[di].class] += 1;
                }
            }
        }
    }
    assert!(tp.iter().sum::<u64>() > 0);
    assert_eq!(cm.true_positives(), tp);
}

#[test]
fn eval_pictures_are_written_decode_and_have_their_size() {
    let r = result();
    let dir = tempfile::tempdir().unwrap();
    let files = yolo_qat::plots::eval::write(dir.path(), r, &data().names).unwrap();
    assert_eq!(files.len(), 4 + 1 + 2, "4 curves, the confusion matrix, one batch as labels and predictions");
    for f in ["PR_curve.png", "F1_curve.png", "P_curve.png", "R_curve.png"] {
        assert_eq!(size_of(&dir.path().join(f)), CURVE_SIZE, "{f}");
    }
    assert_eq!(size_of(&dir.path().join("confusion_matrix.png")), CONFUSION_SIZE);
    let first = &r.samples[0][0].image;
    let (w, h) = mosaic_size(r.samples[0].len(), first.width, first.height);
    for f in ["val_batch0_labels.jpg", "val_batch0_pred.jpg"] {
        assert_eq!(size_of(&dir.path().join(f)), (w as u32, h as u32), "{f}");
    }
}

#[test]
fn results_csv_and_png_after_each_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let rec = |epoch: usize, ap: f64| EpochRecord {
        epoch,
        losses: vec![("layer_mse".into(), 0.5 / (epoch + 1) as f64)],
        lr: 1e-4,
        ap,
        ap50: ap + 0.2,
        precision: 0.8,
        recall: 0.7,
    };
    let epochs = [rec(0, 0.60), rec(1, 0.62), rec(2, 0.61)];
    let (origin, ptq) = (Level { ap: 0.65, ap50: 0.85 }, Level { ap: 0.59, ap50: 0.8 });
    for n in 1..=epochs.len() {
        yolo_qat::plots::results::write(dir.path(), &epochs[..n], Some(origin), Some(ptq)).unwrap();
        let csv = std::fs::read_to_string(dir.path().join("results.csv")).unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], "epoch,layer_mse,lr,ap,ap50,precision,recall");
        assert_eq!(lines.len(), n + 1, "one row per finished epoch");
        let last: Vec<f64> = lines[n].split(',').map(|v| v.parse().unwrap()).collect();
        let e = &epochs[n - 1];
        assert_eq!(last[0], e.epoch as f64);
        assert!((last[1] - e.losses[0].1).abs() < 1e-6 && (last[2] - e.lr).abs() < 1e-9 && (last[3] - e.ap).abs() < 1e-5);
        assert_eq!(size_of(&dir.path().join("results.png")), RESULTS_SIZE);
    }
}

#[test]
fn sensitivity_png_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let layers = (0..23).map(|i| LayerSensitivity { layer: format!("model.{i}"), map: 0.6 + i as f64 * 1e-3, map50: 0.8, gain: i as f64 * 1e-3 }).collect();
    let s = Sensitivity { ptq_map: 0.6, ptq_map50: 0.8, layers };
    let path = dir.path().join("sensitivity.png");
    yolo_qat::plots::sensitivity::write(&path, &s, Some(0.64)).unwrap();
    assert_eq!(size_of(&path), SENSITIVITY_SIZE);
}

fn run_cli(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_yolo-qat")).args(args).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args:?} failed:\n{text}");
    text
}

#[test]
fn eval_noplots_and_predict_on_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().to_str().unwrap();
    let common = ["--weights", WEIGHTS, "--data", DATA, "--imgsz", "320", "--batch-size", "16", "--device", "cpu", "--project", p, "--exist-ok"];
    run_cli(&[&["eval", "--name", "plots"][..], &common[..]].concat());
    assert!(dir.path().join("plots/PR_curve.png").exists() && dir.path().join("plots/val_batch0_pred.jpg").exists());
    run_cli(&[&["eval", "--name", "none", "--noplots"][..], &common[..]].concat());
    let none: Vec<_> = std::fs::read_dir(dir.path().join("none")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(none, vec!["results.json".to_string()]);
    // predict: one picture per input, same name and size; --compare doubles the width (+ gap).
    let src = "../shared/data/shapes-mini/images/val/val_000000.jpg";
    let (w, h) = size_of(Path::new(src));
    let pred = ["predict", "--weights", WEIGHTS, "--source", src, "--imgsz", "320", "--device", "cpu", "--project", p, "--exist-ok"];
    run_cli(&[&pred[..], &["--name", "one"][..]].concat());
    assert_eq!(size_of(&dir.path().join("one/val_000000.jpg")), (w, h));
    run_cli(&[&pred[..], &["--name", "two", "--compare", WEIGHTS][..]].concat());
    assert_eq!(size_of(&dir.path().join("two/val_000000.jpg")), (2 * w + 4, h));
}

#[test]
fn onnx_eval_draws_pictures_and_predict_reads_its_class_names() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().to_str().unwrap();
    let onnx = dir.path().join("fp.onnx");
    run_cli(&["export", "--weights", WEIGHTS, "--imgsz", "320", "--output", onnx.to_str().unwrap()]);
    let o = onnx.to_str().unwrap();
    run_cli(&["eval", "--weights", o, "--data", DATA, "--imgsz", "320", "--device", "cpu", "--project", p, "--name", "ev", "--exist-ok"]);
    let ev = dir.path().join("ev");
    assert_eq!(size_of(&ev.join("PR_curve.png")), CURVE_SIZE);
    assert_eq!(size_of(&ev.join("confusion_matrix.png")), CONFUSION_SIZE);
    // A static export runs one square 320 image per batch, so each mosaic holds one tile.
    let (w, h) = mosaic_size(1, 320, 320);
    for i in 0..3 {
        assert_eq!(size_of(&ev.join(format!("val_batch{i}_pred.jpg"))), (w as u32, h as u32));
    }
    // Names come from the export's metadata; the FP checkpoint beside it has the same.
    let src = "../shared/data/shapes-mini/images/val";
    run_cli(&[
        "predict",
        "--weights",
        o,
        "--compare",
        WEIGHTS,
        "--source",
        src,
        "--imgsz",
        "320",
        "--device",
        "cpu",
        "--project",
        p,
        "--name",
        "pr",
        "--exist-ok",
    ]);
    let inputs = std::fs::read_dir(src).unwrap().count();
    assert_eq!(std::fs::read_dir(dir.path().join("pr")).unwrap().count(), inputs, "one picture per input");
}
