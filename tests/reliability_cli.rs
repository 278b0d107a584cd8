//! What a user or a file can do to the commands: outputs that are inputs,
//! folders, FIFOs or symlinks; devices as inputs; bad flags and model yaml values;
//! a bomb and a symlink loop in the val set; two runs in one folder. Every refusal is
//! one line on stderr with exit code 1 (never a panic's 101 or an abort's 134).

use std::fs;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use tch::{Kind, Tensor};

const EXE: &str = env!("CARGO_BIN_EXE_yolo-qat");
const WEIGHTS: &str = "../shared/fixtures/yolov9-t-shapes-converted.pt";
const MINI: &str = "../shared/data/shapes-mini";

fn run(args: &[&str]) -> Output {
    Command::new(EXE).args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Exit code 1 and exactly one stderr line `error: …` containing `want`.
fn assert_one_line_error(o: &Output, want: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err:?}");
    assert!(err.starts_with("error: ") && err.contains(want), "expected `{want}` in {err:?}");
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn tmp_names(dir: &Path) -> Vec<String> {
    fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).filter(|n| n.ends_with(".tmp")).collect()
}

#[test]
fn export_never_destroys_its_weights_a_folder_or_a_fifo_and_writes_through_a_symlink() {
    let d = tempfile::tempdir().unwrap();
    let w = d.path().join("m.pt");
    fs::copy(WEIGHTS, &w).unwrap();
    let original = fs::read(&w).unwrap();
    let export = |out: &Path| run(&["export", "--weights", s(&w), "--imgsz", "160", "--output", s(out)]);
    assert_one_line_error(&export(&w), "is the --weights file");
    let hard = d.path().join("hard.pt");
    fs::hard_link(&w, &hard).unwrap();
    assert_one_line_error(&export(&hard), "is the --weights file");
    assert_eq!(fs::read(&w).unwrap(), original);

    let folder = d.path().join("out.onnx");
    fs::create_dir(&folder).unwrap();
    assert_one_line_error(&export(&folder), "is a folder, not a regular file");
    let fifo = d.path().join("fifo.onnx");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    assert_one_line_error(&export(&fifo), "is a FIFO, not a regular file");
    assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo() && folder.is_dir());

    let (real, link) = (d.path().join("real.onnx"), d.path().join("link.onnx"));
    fs::write(&real, b"old").unwrap();
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let o = export(&link);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link was replaced");
    let check = run(&["export", "--check", s(&real)]);
    assert!(check.status.success(), "the link's target is not the export: {}", stderr(&check));
    assert!(tmp_names(d.path()).is_empty(), "{:?}", tmp_names(d.path()));
}

#[test]
fn devices_as_inputs_are_quick_one_line_errors() {
    let t = Instant::now();
    assert_one_line_error(&run(&["export", "--check", "/dev/zero"]), "/dev/zero: cannot read: not a regular file");
    let d = tempfile::tempdir().unwrap();
    let fake = d.path().join("zero.onnx");
    std::os::unix::fs::symlink("/dev/zero", &fake).unwrap();
    assert_one_line_error(
        &run(&["eval", "--weights", s(&fake), "--data", &format!("{MINI}/shapes.yaml"), "--device", "cpu", "--project", s(d.path())]),
        "not a regular file",
    );
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
}

fn write_input(path: &Path, x: &Tensor) {
    Tensor::write_safetensors(&[("input", x)], path).unwrap();
}

#[test]
fn forward_takes_uint8_pixels_refuses_empty_batches_and_its_own_inputs() {
    let d = tempfile::tempdir().unwrap();
    tch::manual_seed(3);
    let px = Tensor::randint(256, [1, 3, 64, 96], (Kind::Uint8, tch::Device::Cpu));
    let (u8_in, f_in) = (d.path().join("u8.safetensors"), d.path().join("f.safetensors"));
    write_input(&u8_in, &px);
    // what upstream's loaders feed the model: pixels / 255 in float
    write_input(&f_in, &(px.to_kind(Kind::Float) / 255.0));
    let fwd = |input: &Path, out: &Path| run(&["forward", "--weights", WEIGHTS, "--input", s(input), "--output", s(out)]);
    let (o1, o2) = (d.path().join("o1.safetensors"), d.path().join("o2.safetensors"));
    for (i, o) in [(&u8_in, &o1), (&f_in, &o2)] {
        let r = fwd(i, o);
        assert!(r.status.success(), "{}", stderr(&r));
    }
    let read = |p: &Path| Tensor::read_safetensors(p).unwrap().into_iter().find(|(k, _)| k == "output").unwrap().1;
    assert!(read(&o1).equal(&read(&o2)), "uint8 input is not read as pixels / 255");

    let empty = d.path().join("empty.safetensors");
    write_input(&empty, &Tensor::zeros([0, 3, 64, 64], (Kind::Float, tch::Device::Cpu)));
    assert_one_line_error(&fwd(&empty, &d.path().join("o3.safetensors")), "expected (B, 3, H, W) with B >= 1");
    let odd = d.path().join("odd.safetensors");
    write_input(&odd, &Tensor::zeros([1, 3, 48, 64], (Kind::Float, tch::Device::Cpu)));
    assert_one_line_error(&fwd(&odd, &d.path().join("o4.safetensors")), "has H 48: must be a positive multiple of the model's largest stride 32");
    let before = fs::read(&u8_in).unwrap();
    assert_one_line_error(&fwd(&u8_in, &u8_in), "is the --input file");
    assert_eq!(fs::read(&u8_in).unwrap(), before);
}

#[test]
fn bad_flags_are_one_line_errors() {
    let d = tempfile::tempdir().unwrap();
    let p = s(d.path());
    let data = format!("{MINI}/shapes.yaml");
    let x_onnx = format!("{p}/x.onnx");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["info", "--weights", WEIGHTS, "--imgsz", "33"], "--imgsz 33: must be a positive multiple of the model's largest stride 32"),
        (vec!["eval", "--weights", WEIGHTS, "--data", &data, "--device", "cpu", "--imgsz", "100000", "--project", p], "--imgsz 100000: must be"),
        (vec!["eval", "--weights", WEIGHTS, "--data", &data, "--device", "cpu", "--batch-size", "0", "--project", p], "--batch-size 0: must be at least 1"),
        (
            vec!["eval", "--weights", WEIGHTS, "--data", &data, "--device", "cpu", "--iou-thres", "NaN", "--project", p],
            "--iou-thres NaN: must be between 0 and 1",
        ),
        (vec!["sensitive", "--weights", WEIGHTS, "--data", &data, "--device", "cpu", "--imgsz", "48", "--project", p], "--imgsz 48: must be"),
        (vec!["sensitive", "--weights", WEIGHTS, "--data", &data, "--device", "cpu", "--num-image", "0", "--project", p], "--num-image 0: must be at least 1"),
        (
            vec!["sensitive", "--weights", WEIGHTS, "--data", &data, "--device", "cpu", "--calib-batches", "0", "--project", p],
            "--calib-batches 0: must be at least 1",
        ),
        (vec!["bench", "qat", "--cfg", "configs/gelan-t.yaml", "--device", "cpu", "--imgsz", "2"], "--imgsz 2: must be"),
        (vec!["export", "--weights", WEIGHTS, "--imgsz", "33", "--output", &x_onnx], "--imgsz 33: must be"),
        (vec!["export", "--weights", WEIGHTS, "--imgsz", "160", "--batch-size", "0", "--output", &x_onnx], "--batch-size 0: must be at least 1"),
        (vec!["eval", "--weights", WEIGHTS, "--data", &data, "--max-pixels", "0"], "--max-pixels 0: must be at least 1"),
        (
            vec!["quantize", "--weights", WEIGHTS, "--data", &data, "--device", "cpu", "--imgsz", "160", "--workers", "100000", "--project", p],
            "--workers 100000: must be between 1 and 256",
        ),
    ];
    for (args, want) in cases {
        let t = Instant::now();
        assert_one_line_error(&run(&args), want);
        assert!(t.elapsed() < Duration::from_secs(60), "{args:?} took {:?}", t.elapsed());
    }
    assert!(!d.path().join("x.onnx").exists());
}

#[test]
fn bad_model_yaml_values_are_one_line_errors_even_in_bench() {
    let d = tempfile::tempdir().unwrap();
    let yaml = fs::read_to_string("configs/gelan-t.yaml").unwrap();
    let cases = [
        ("[None, 2, 'nearest']", "[None, 0, 'nearest']", "scale factor 0: must be a positive integer"),
        ("Conv, [16, 3, 2]]", "Conv, [16, 3, 0]]", "stride 0"),
        ("Conv, [16, 3, 2]]", "Conv, [0, 3, 2]]", "-> 0: must be at least 1"),
        ("Conv, [16, 3, 2]]", "Conv, [-16, 3, 2]]", "must be at least 1"),
        ("nc: 80", "nc: 0", "nc 0: a detection model needs at least one class"),
    ];
    for (i, (from, to, want)) in cases.iter().enumerate() {
        assert!(yaml.contains(from), "configs/gelan-t.yaml changed: no `{from}`");
        let p = d.path().join(format!("bad{i}.yaml"));
        fs::write(&p, yaml.replacen(from, to, 1)).unwrap();
        assert_one_line_error(&run(&["bench", "infer", "--cfg", s(&p), "--device", "cpu", "--imgsz", "64", "--iters", "1", "--warmup", "0"]), want);
    }
}

/// A copy of shapes-mini's val split under `root` and its data yaml.
fn copy_val(root: &Path) -> (PathBuf, PathBuf) {
    for sub in ["images/val", "labels/val"] {
        fs::create_dir_all(root.join(sub)).unwrap();
        for e in fs::read_dir(Path::new(MINI).join(sub)).unwrap() {
            let e = e.unwrap();
            fs::copy(e.path(), root.join(sub).join(e.file_name())).unwrap();
        }
    }
    let yaml = root.join("data.yaml");
    fs::write(
        &yaml,
        format!("path: {}\ntrain: images/val\nval: images/val\nnc: 6\nnames: ['circle', 'square', 'triangle', 'star', 'cross', 'ring']\n", root.display()),
    )
    .unwrap();
    (root.join("images/val"), yaml)
}

/// Runs the binary, sampling its peak RSS (VmHWM) until it exits; (output, peak MiB).
fn run_measured(args: &[&str], limit: Duration) -> (Output, u64) {
    let d = tempfile::tempdir().unwrap();
    let (out, err) = (d.path().join("out"), d.path().join("err"));
    let mut child =
        Command::new(EXE).args(args).stdout(Stdio::from(fs::File::create(&out).unwrap())).stderr(Stdio::from(fs::File::create(&err).unwrap())).spawn().unwrap();
    let (t, mut peak_kb) = (Instant::now(), 0u64);
    let status = loop {
        if let Ok(st) = fs::read_to_string(format!("/proc/{}/status", child.id())) {
            let kb = st.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.split_whitespace().next()?.parse().ok()).unwrap_or(0);
            peak_kb = peak_kb.max(kb);
        }
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if t.elapsed() > limit {
            let _ = child.kill();
            panic!("{args:?} still running after {limit:?} (peak {} MiB)", peak_kb / 1024);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (Output { status, stdout: fs::read(&out).unwrap(), stderr: fs::read(&err).unwrap() }, peak_kb / 1024)
}

fn map_of(dir: &Path) -> f64 {
    let r: serde_json::Value = serde_json::from_str(&fs::read_to_string(dir.join("results.json")).unwrap()).unwrap();
    r["map"].as_f64().unwrap()
}

#[test]
fn eval_skips_a_bomb_and_walks_a_symlink_loop_once_in_bounded_time_and_memory() {
    let d = tempfile::tempdir().unwrap();
    let (clean_img, clean_yaml) = copy_val(&d.path().join("clean"));
    let (img, yaml) = copy_val(&d.path().join("hostile"));
    // a bomb: one of the JPEGs with its SOF header claiming 65500 x 65500
    let mut b = fs::read(clean_img.join("val_000000.jpg")).unwrap();
    let sof = (0..b.len() - 9).find(|&i| b[i] == 0xFF && (0xC0..=0xC2).contains(&b[i + 1])).unwrap();
    b[sof + 5..sof + 9].copy_from_slice(&[0xFF, 0xDC, 0xFF, 0xDC]);
    fs::write(img.join("zz_bomb.jpg"), b).unwrap();
    std::os::unix::fs::symlink(".", img.join("loop")).unwrap();
    let project = d.path().join("runs");
    let eval = |yaml: &Path, name: &str| {
        run_measured(
            &["eval", "--weights", WEIGHTS, "--data", s(yaml), "--device", "cpu", "--imgsz", "160", "--project", s(&project), "--name", name],
            Duration::from_secs(120),
        )
    };
    let (clean, _) = eval(&clean_yaml, "clean");
    assert!(clean.status.success(), "{}", stderr(&clean));
    let (o, peak) = eval(&yaml, "hostile");
    let (out, err) = (String::from_utf8_lossy(&o.stdout), stderr(&o));
    assert!(o.status.success(), "{err}");
    assert!(err.contains("zz_bomb.jpg: ignoring corrupt image/label") && err.contains("65500x65500 = 4290250000 pixels is over the limit"), "{err}");
    let all = out.lines().find(|l| l.trim_start().starts_with("all")).unwrap_or_else(|| panic!("no `all` row in {out}"));
    assert_eq!(all.split_whitespace().nth(1), Some("16"), "{all}");
    assert_eq!(map_of(&project.join("hostile")), map_of(&project.join("clean")));
    // without the limit the bomb alone needs 12.9 GB
    assert!(peak < 1024, "peak RSS {peak} MiB");
}

#[test]
fn a_second_run_in_a_folder_names_the_process_that_holds_it() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("exp");
    fs::create_dir(&dir).unwrap();
    let lock = yolo_qat::util::RunLock::acquire(&dir).unwrap();
    let o = run(&[
        "eval",
        "--weights",
        WEIGHTS,
        "--data",
        &format!("{MINI}/shapes.yaml"),
        "--device",
        "cpu",
        "--imgsz",
        "160",
        "--project",
        s(d.path()),
        "--exist-ok",
    ]);
    assert_one_line_error(&o, &format!("in use by process {}", std::process::id()));
    drop(lock);
    assert!(!dir.join(yolo_qat::util::run_lock::LOCK_NAME).exists());
}

#[test]
fn eval_says_when_a_static_onnx_ignores_imgsz() {
    let d = tempfile::tempdir().unwrap();
    let onnx = d.path().join("m.onnx");
    let e = run(&["export", "--weights", WEIGHTS, "--imgsz", "160", "--output", s(&onnx)]);
    assert!(e.status.success(), "{}", stderr(&e));
    let o = run(&[
        "eval",
        "--weights",
        s(&onnx),
        "--data",
        &format!("{MINI}/shapes.yaml"),
        "--imgsz",
        "640",
        "--batch-size",
        "1",
        "--device",
        "cpu",
        "--project",
        s(d.path()),
    ]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("has a static 160x160 input of batch 1: evaluating at that size and batch, not --imgsz 640"), "{err}");
}
