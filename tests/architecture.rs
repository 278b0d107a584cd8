//! The layering of docs/architecture.md, checked: every `crate::X` path in a module of
//! `src/` names a module that layer may import. A new uphill import fails here.

use std::collections::BTreeMap;
use std::path::Path;

/// Each top-level module and the modules it may import (docs/architecture.md's table).
const ALLOWED: &[(&str, &[&str])] = &[
    ("util", &[]),
    ("progress", &[]),
    ("cuda", &["util"]),
    ("model", &["cuda", "util", "progress"]),
    ("data", &["util", "progress"]),
    ("quant", &["model", "cuda", "util", "progress"]),
    ("detector", &["checkpoint", "model", "quant", "util"]),
    ("eval", &["detector", "data", "model", "quant", "cuda", "util", "progress"]),
    ("export", &["eval", "detector", "data", "model", "quant", "cuda", "util", "progress"]),
    ("plots", &["eval", "quant", "data", "model", "util", "progress"]),
    ("cli", &["plots", "export", "eval", "detector", "data", "quant", "model", "checkpoint", "cuda", "util", "progress"]),
];

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level modules each file of `module` imports through `crate::`.
fn imports_of(module: &str) -> BTreeMap<String, Vec<String>> {
    let src = Path::new("src");
    let mut files = Vec::new();
    let dir = src.join(module);
    if dir.is_dir() {
        rust_files(&dir, &mut files);
    }
    let single = src.join(format!("{module}.rs"));
    if single.is_file() {
        files.push(single);
    }
    assert!(!files.is_empty(), "src/{module}: no files (was the module renamed? update this test and docs/architecture.md)");
    let mut found: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for (i, _) in text.match_indices("crate::") {
            let rest = &text[i + "crate::".len()..];
            let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if !name.is_empty() && name != module {
                found.entry(name).or_default().push(f.display().to_string());
            }
        }
    }
    found
}

#[test]
fn imports_run_downhill() {
    let mut uphill = Vec::new();
    for (module, allowed) in ALLOWED {
        for (target, files) in imports_of(module) {
            if !allowed.contains(&target.as_str()) {
                uphill.push(format!("{module} imports {target} ({})", files[0]));
            }
        }
    }
    assert!(uphill.is_empty(), "imports against docs/architecture.md:\n{}", uphill.join("\n"));
}

#[test]
fn every_module_has_a_layer() {
    let lib = std::fs::read_to_string("src/lib.rs").unwrap();
    let declared: Vec<&str> = lib.lines().filter_map(|l| l.strip_prefix("pub mod ")).map(|l| l.trim_end_matches(';')).collect();
    assert!(declared.len() >= 10, "src/lib.rs declares {declared:?}");
    for m in declared {
        assert!(ALLOWED.iter().any(|(name, _)| *name == m), "src/lib.rs module {m} has no layer in this test or docs/architecture.md");
    }
}

#[test]
fn the_reader_crates_have_no_libtorch() {
    for krate in ["crates/checkpoint/Cargo.toml", "crates/readers/Cargo.toml"] {
        let toml = std::fs::read_to_string(krate).unwrap_or_else(|e| panic!("{krate}: {e}"));
        for dep in ["tch", "torch-sys", "yolo-qat ="] {
            assert!(!toml.contains(dep), "{krate} depends on {dep}");
        }
    }
}
