//! The `quantize` command end to end on the CPU (tiny settings): an interrupted run
//! resumed with `--resume` reproduces the uninterrupted run exactly (weights, Adam's
//! moments, the loss scale, learned ranges and the weight average are restored), and
//! `--max-ap-drop` moves layers to floating point in the order of their sensitivity.

use std::path::Path;
use std::process::Command;

const WEIGHTS: &str = "../shared/fixtures/yolov9-t-shapes-converted.pt";
const DATA: &str = "../shared/data/shapes-mini/shapes.yaml";

fn quantize(project: &Path, name: &str, epochs: &str, extra: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_yolo-qat"))
        .args(["quantize", "--device", "cpu", "--weights", WEIGHTS, "--data", DATA, "--imgsz", "160", "--batch-size", "4"])
        .args(["--iters", "2", "--calib-batches", "1", "--calib-method", "max", "--no-eval-origin", "--no-eval-ptq", "--exist-ok"])
        // A large LR so that a lost optimizer state would change the second epoch visibly.
        .args(["--lr-scale", "300", "--epochs", epochs, "--name", name, "--project"])
        .arg(project)
        .args(extra)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "quantize failed:\n{text}");
    text
}

fn qat_row(project: &Path, name: &str, row: &str) -> Vec<f64> {
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(project.join(name).join("report.json")).unwrap()).unwrap();
    let r = report["rows"].as_array().unwrap().iter().find(|r| r["name"] == row).unwrap_or_else(|| panic!("no {row} row"));
    ["map", "map50", "precision", "recall"].iter().map(|k| r[*k].as_f64().unwrap()).collect()
}

fn resume_is_exact(recipe: &str) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let r = ["--recipe", recipe];
    quantize(p, "whole", "2", &r);
    quantize(p, "cut", "1", &r);
    // Leftovers that must not be trusted: another run's later epoch, and an unfinished write.
    let weights = p.join("cut").join("weights");
    let foreign = std::fs::read_dir(p.join("whole").join("weights"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|f| f.file_name().unwrap().to_string_lossy().starts_with("qat_ep_1_"))
        .unwrap();
    std::fs::copy(&foreign, weights.join(foreign.file_name().unwrap())).unwrap();
    let tmp = weights.join(".qat_ep_1_ap_0.5000_x.safetensors.1.0.tmp");
    std::fs::write(&tmp, b"half written").unwrap();
    let resumed = quantize(p, "cut", "2", &[&r[..], &["--resume"]].concat());
    assert!(resumed.contains("--resume: skipped") && !tmp.exists(), "{resumed}");
    assert!(resumed.contains("optimizer state of epoch 0 restored"), "{resumed}");
    assert_eq!(qat_row(p, "cut", "QAT-1"), qat_row(p, "whole", "QAT-1"));
    assert_eq!(qat_row(p, "cut", "QAT-0"), qat_row(p, "whole", "QAT-0"));
    // All epochs done: a further --resume is a clear error.
    let out = Command::new(env!("CARGO_BIN_EXE_yolo-qat"))
        .args(["quantize", "--device", "cpu", "--weights", WEIGHTS, "--data", DATA, "--epochs", "2", "--name", "cut", "--resume", "--project"])
        .arg(p)
        .args(r)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--resume: all 2 epochs"), "{err}");
}

#[test]
fn resume_continues_exactly_where_the_run_stopped() {
    resume_is_exact("seed");
}

#[test]
fn resume_is_exact_with_task_loss_learned_ranges_and_the_weight_average() {
    resume_is_exact("default");
}

#[test]
fn learned_ranges_reach_the_saved_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    quantize(p, "lsq", "1", &["--recipe", "seed", "--learn-amax", "1e-2"]);
    let weights = p.join("lsq").join("weights");
    let find = |prefix: &str| {
        let e = std::fs::read_dir(&weights).unwrap().map(|e| e.unwrap().path()).find(|f| f.file_name().unwrap().to_string_lossy().starts_with(prefix));
        e.unwrap_or_else(|| panic!("no {prefix}* in {}", weights.display()))
    };
    let ranges = |f: &Path| -> Vec<Option<f64>> {
        let m = yolo_qat::detector::load(f).unwrap();
        m.quant.unwrap().table.quantizers.iter().filter(|q| !q.per_channel).map(|q| q.amax_f64()).collect()
    };
    // --no-eval-ptq: the PTQ file does not claim an AP of 0.
    assert!(!find("ptq_").to_string_lossy().contains("ap_0.0000"), "{}", find("ptq_").display());
    let (ptq, qat) = (ranges(&find("ptq_")), ranges(&find("qat_ep_0_")));
    assert_eq!(ptq.len(), qat.len());
    let moved = ptq.iter().zip(&qat).filter(|(a, b)| a != b).count();
    assert!(moved > 10, "only {moved} of {} activation ranges differ after QAT with --learn-amax", ptq.len());
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(p.join("lsq").join("report.json")).unwrap()).unwrap();
    assert_eq!(report["run"]["settings"]["learn_amax"].as_f64(), Some(0.01), "{report}");
}

#[test]
fn a_bad_learn_amax_is_a_one_line_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_yolo-qat"))
        .args(["quantize", "--device", "cpu", "--weights", WEIGHTS, "--data", DATA, "--learn-amax=-1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--learn-amax -1"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err:?}");
}

#[test]
fn max_ap_drop_keeps_the_most_sensitive_layers_in_floating_point() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    // The seed recipe's tiny LR leaves QAT below the FP model, so the fallback must act.
    let out = Command::new(env!("CARGO_BIN_EXE_yolo-qat"))
        .args(["quantize", "--device", "cpu", "--weights", WEIGHTS, "--data", DATA, "--imgsz", "160", "--batch-size", "4", "--recipe", "seed"])
        .args(["--iters", "2", "--epochs", "1", "--calib-batches", "1", "--calib-method", "max", "--max-ap-drop", "0", "--recover-epochs", "1"])
        .args(["--name", "fb", "--project"])
        .arg(p)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    let read = |f: &str| -> serde_json::Value { serde_json::from_str(&std::fs::read_to_string(p.join("fb").join(f)).unwrap()).unwrap() };
    let report = read("report.json");
    let rows = report["rows"].as_array().unwrap();
    let ap = |name: &str| rows.iter().find(|r| r["name"] == name).unwrap()["map"].as_f64().unwrap();
    let target = &report["run"]["accuracy_target"];
    assert_eq!(target["target_ap"].as_f64().unwrap(), ap("Origin"), "--max-ap-drop 0: the target is Origin's AP");
    let fp: Vec<String> = target["fp_layers"].as_array().unwrap().iter().map(|l| l.as_str().unwrap().to_string()).collect();
    assert!(ap("QAT-0") < ap("Origin") && !fp.is_empty(), "QAT-0 {} vs Origin {}: {text}", ap("QAT-0"), ap("Origin"));
    // Layers join in the order of the sensitivity measured on the finetuned model.
    let sens = read("sensitivity.json");
    let mut ranked: Vec<(f64, String)> =
        sens["layers"].as_array().unwrap().iter().map(|l| (l["gain"].as_f64().unwrap(), l["layer"].as_str().unwrap().to_string())).collect();
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let order: Vec<String> = ranked.into_iter().map(|(_, l)| l).take(fp.len()).collect();
    assert_eq!(fp, order);
    // One recovery epoch per layer; `met` says whether the best AP reached the target.
    let qat_rows = rows.iter().filter(|r| r["name"].as_str().unwrap().starts_with("QAT-") && r["name"] != "QAT-Best").count();
    assert_eq!(qat_rows, 1 + fp.len());
    // results.csv: a header and one row per epoch; results.png decodes.
    let csv = std::fs::read_to_string(p.join("fb").join("results.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + qat_rows, "{csv}");
    assert!(csv.starts_with("epoch,loss,box,cls,dfl,distill,lr,ap,"), "{csv}");
    image::open(p.join("fb").join("results.png")).unwrap();
    assert_eq!(target["met"].as_bool().unwrap(), ap("QAT-Best") >= ap("Origin"));
    // The FLOP share is the FP layers' share of the model's convolution FLOPs at this size.
    let m = yolo_qat::detector::load(Path::new(WEIGHTS)).unwrap();
    let flops = yolo_qat::model::info::layer_gflops(&m.graph, 160);
    let fp_idx: Vec<usize> = fp.iter().map(|l| l.trim_start_matches("model.").parse().unwrap()).collect();
    let share = fp_idx.iter().map(|&i| flops[i]).sum::<f64>() / flops.iter().sum::<f64>();
    assert!((target["fp_flop_share"].as_f64().unwrap() - share).abs() < 1e-9);
    // The saved best model keeps those layers' quantizers off.
    let best = yolo_qat::detector::load(&p.join("fb").join("weights").join("qat_best_yolov9-t-shapes-converted.safetensors")).unwrap();
    if target["met"].as_bool().unwrap() {
        let last = *fp_idx.last().unwrap();
        assert!(best.graph.nodes.iter().filter(|n| n.layer == last).all(|n| n.quant.all().all(|s| !s.enabled)));
    }
    // Its export passes TensorRT's rules check, the FP layers' convs reported as FP16/FP32.
    let best_path = p.join("fb").join("weights").join("qat_best_yolov9-t-shapes-converted.safetensors");
    let onnx = p.join("fb.onnx");
    let run = |args: &[&std::ffi::OsStr]| Command::new(env!("CARGO_BIN_EXE_yolo-qat")).args(args).output().unwrap();
    let out = run(&["export".as_ref(), "--weights".as_ref(), best_path.as_os_str(), "--imgsz".as_ref(), "160".as_ref(), "--output".as_ref(), onnx.as_os_str()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = run(&["export".as_ref(), "--check".as_ref(), onnx.as_os_str()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("TensorRT check: passed"), "{text}");
    if best.quant.as_ref().is_some_and(|q| !q.skip_layers.is_empty()) {
        assert!(text.contains("stay FP16/FP32"), "{text}");
    }
}
