//! The `quantize` command end to end on the CPU (tiny settings): an interrupted run
//! resumed with `--resume` reproduces the uninterrupted run exactly, because Adam's
//! moments and the loss scale are restored with the weights.

use std::path::Path;
use std::process::Command;

const WEIGHTS: &str = "../shared/fixtures/yolov9-t-shapes-converted.pt";
const DATA: &str = "../shared/data/shapes-mini/shapes.yaml";

fn quantize(project: &Path, name: &str, epochs: &str, extra: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_yolo-qat"))
        .args(["quantize", "--device", "cpu", "--weights", WEIGHTS, "--data", DATA, "--imgsz", "160", "--batch-size", "4"])
        .args(["--iters", "2", "--calib-batches", "1", "--no-eval-origin", "--no-eval-ptq", "--exist-ok"])
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

#[test]
fn resume_continues_exactly_where_the_run_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    quantize(p, "whole", "2", &[]);
    quantize(p, "cut", "1", &[]);
    let resumed = quantize(p, "cut", "2", &["--resume"]);
    assert!(resumed.contains("optimizer state of epoch 0 restored"), "{resumed}");
    assert_eq!(qat_row(p, "cut", "QAT-1"), qat_row(p, "whole", "QAT-1"));
    assert_eq!(qat_row(p, "cut", "QAT-0"), qat_row(p, "whole", "QAT-0"));
    // All epochs done: a further --resume is a clear error.
    let out = Command::new(env!("CARGO_BIN_EXE_yolo-qat"))
        .args(["quantize", "--device", "cpu", "--weights", WEIGHTS, "--data", DATA, "--epochs", "2", "--name", "cut", "--resume", "--project"])
        .arg(p)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--resume: all 2 epochs"), "{err}");
}

#[test]
fn learned_ranges_reach_the_saved_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    quantize(p, "lsq", "1", &["--learn-amax", "1e-2"]);
    let weights = p.join("lsq").join("weights");
    let find = |prefix: &str| {
        let e = std::fs::read_dir(&weights).unwrap().map(|e| e.unwrap().path()).find(|f| f.file_name().unwrap().to_string_lossy().starts_with(prefix));
        e.unwrap_or_else(|| panic!("no {prefix}* in {}", weights.display()))
    };
    let ranges = |f: &Path| -> Vec<Option<f64>> {
        let m = yolo_qat::checkpoint::load::load(f).unwrap();
        m.quant.unwrap().table.quantizers.iter().filter(|q| !q.per_channel).map(|q| q.amax_f64()).collect()
    };
    let (ptq, qat) = (ranges(&find("ptq_ap_")), ranges(&find("qat_ep_0_")));
    assert_eq!(ptq.len(), qat.len());
    let moved = ptq.iter().zip(&qat).filter(|(a, b)| a != b).count();
    assert!(moved > 10, "only {moved} of {} activation ranges differ after QAT with --learn-amax", ptq.len());
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(p.join("lsq").join("report.json")).unwrap()).unwrap();
    assert_eq!(report["run"]["learn_amax"].as_f64(), Some(0.01), "{report}");
}

#[test]
fn a_bad_learn_amax_is_a_one_line_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_yolo-qat"))
        .args(["quantize", "--device", "cpu", "--weights", WEIGHTS, "--data", DATA, "--learn-amax", "0"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--learn-amax 0"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err:?}");
}
