//! What the integration tests share: where the ground truth lives, and a loud failure
//! when it is missing (a test that returns early on missing data cannot fail).
#![allow(dead_code)]

pub mod reference_nms;

use std::path::{Path, PathBuf};

/// `../shared`, beside the repository (CI clones it there).
pub const SHARED: &str = "../shared";
pub const FIXTURES: &str = "../shared/fixtures";
/// The upstream-trained yolov9-t on shapes, reparameterized ("converted").
pub const TRAINED: &str = "../shared/fixtures/yolov9-t-shapes-converted.pt";
/// A gelan-c with few channels: every GELAN block type, fast on the CPU.
pub const MINI: &str = "../shared/fixtures/gelan-c-mini.pt";
pub const DUAL: &str = "../shared/fixtures/yolov9-t-dual.pt";
pub const SEG: &str = "../shared/fixtures/gelan-t-dseg-shapes.pt";
pub const DATA: &str = "../shared/data/shapes-mini/shapes.yaml";
pub const DATA_DIR: &str = "../shared/data/shapes-mini";
/// The shapes-mini training images (32).
pub const TRAIN_IMAGES: &str = "../shared/data/shapes-mini/images/train";
pub const SEG_DATA: &str = "../shared/data/shapes-mini-seg/shapes-seg.yaml";
/// The binary under test.
pub const EXE: &str = env!("CARGO_BIN_EXE_yolo-qat");

/// `path`, after checking that it exists; panics naming it otherwise.
pub fn require(path: impl AsRef<Path>) -> PathBuf {
    let p = path.as_ref();
    assert!(p.exists(), "{} is missing: the tests need ../shared beside the repository (and scripts/setup.sh run)", p.display());
    p.to_path_buf()
}

/// A file of `../shared/fixtures`, required.
pub fn fixture(name: &str) -> PathBuf {
    require(Path::new(FIXTURES).join(name))
}

/// The project venv's python (scripts/setup.sh makes it; CI runs setup first).
pub fn venv_python() -> PathBuf {
    let home = std::env::var_os("YOLO_QAT_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/yolo-qat"));
    require(home.join("venv/bin/python"))
}

/// A file of `tests/data` (committed with the repository), required.
pub fn test_data(name: &str) -> PathBuf {
    require(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name))
}

/// The image files of a folder, sorted; panics when there are none.
pub fn images_in(dir: impl AsRef<Path>) -> Vec<PathBuf> {
    let dir = require(dir);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("jpg" | "jpeg" | "png" | "bmp" | "webp")))
        .collect();
    v.sort();
    assert!(!v.is_empty(), "{}: no images", dir.display());
    v
}
