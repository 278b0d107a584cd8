//! Upstream data yaml (`check_dataset`): dataset root, split sources and class names.

use std::path::{Component, Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use serde_yaml::Value;

#[derive(Clone, Debug, PartialEq)]
pub struct DataConfig {
    pub yaml_path: PathBuf,
    /// `path:` resolved against the yaml's folder (the folder itself when absent).
    pub root: PathBuf,
    /// Each split's sources: image folders and/or `.txt` image lists.
    pub train: Vec<PathBuf>,
    pub val: Vec<PathBuf>,
    pub test: Vec<PathBuf>,
    pub names: Vec<String>,
}

impl DataConfig {
    pub fn nc(&self) -> usize {
        self.names.len()
    }

    /// Sources of `"train"`, `"val"` or `"test"`.
    pub fn split(&self, name: &str) -> Option<&[PathBuf]> {
        match name {
            "train" => Some(&self.train),
            "val" => Some(&self.val),
            "test" => Some(&self.test),
            _ => None,
        }
    }

    /// Reads and checks a data yaml; every error is one line naming the yaml and the key at fault.
    pub fn load(yaml_path: &Path) -> Result<DataConfig> {
        let label = yaml_path.file_name().map_or_else(|| yaml_path.display().to_string(), |n| n.to_string_lossy().into_owned());
        let text = std::fs::read_to_string(yaml_path).map_err(|e| anyhow!("{}: cannot read data yaml: {e}", yaml_path.display()))?;
        let doc: Value = serde_yaml::from_str(&text).map_err(|e| anyhow!("{label}: invalid yaml: {}", one_line(&e.to_string())))?;
        if !doc.is_mapping() {
            bail!("{label}: expected a mapping with train/val/names");
        }
        let yaml_dir = yaml_path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let root = match doc.get("path") {
            None | Some(Value::Null) => yaml_dir.to_path_buf(),
            Some(Value::String(p)) => normalize(&yaml_dir.join(p)),
            Some(_) => bail!("{label}: path must be a string"),
        };
        let names = parse_names(&doc, &label)?;
        let [train, val, test] = ["train", "val", "test"].map(|k| split_sources(&doc, k, &root, &label));
        let cfg = DataConfig { yaml_path: yaml_path.to_path_buf(), root, train: train?, val: val?, test: test?, names };
        if cfg.val.is_empty() {
            bail!("{label}: val is missing");
        }
        check_exists(&doc, "val", &cfg.val, &label)?;
        Ok(cfg)
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Lexical clean-up of `.` and `..` so messages and label paths stay readable.
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir if matches!(out.components().next_back(), Some(Component::Normal(_))) => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

fn parse_names(doc: &Value, label: &str) -> Result<Vec<String>> {
    let names = match doc.get("names") {
        Some(Value::Sequence(seq)) => {
            seq.iter().map(|v| scalar_string(v).ok_or_else(|| anyhow!("{label}: names must be strings"))).collect::<Result<Vec<_>>>()?
        }
        Some(Value::Mapping(map)) => {
            let mut pairs = Vec::with_capacity(map.len());
            for (k, v) in map {
                let key = k.as_u64().ok_or_else(|| anyhow!("{label}: names keys must be integers, i.e. 2: car"))?;
                let name = scalar_string(v).ok_or_else(|| anyhow!("{label}: name of class {key} must be a string"))?;
                pairs.push((key as usize, name));
            }
            pairs.sort_by_key(|p| p.0);
            if pairs.iter().enumerate().any(|(i, p)| p.0 != i) {
                bail!("{label}: names keys must be 0..{} without gaps", pairs.len());
            }
            pairs.into_iter().map(|p| p.1).collect()
        }
        None | Some(Value::Null) => bail!("{label}: names is missing"),
        Some(_) => bail!("{label}: names must be a list or an {{index: name}} map"),
    };
    if names.is_empty() {
        bail!("{label}: names is empty");
    }
    match doc.get("nc") {
        None | Some(Value::Null) => {}
        Some(v) => match v.as_u64() {
            Some(nc) if nc as usize == names.len() => {}
            Some(nc) => bail!("{label}: nc {nc} does not match the {} names", names.len()),
            None => bail!("{label}: nc must be a non-negative integer"),
        },
    }
    Ok(names)
}

fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A split is one path or a list of paths, each relative to the root.
fn split_sources(doc: &Value, key: &str, root: &Path, label: &str) -> Result<Vec<PathBuf>> {
    match doc.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) if s.is_empty() => Ok(Vec::new()),
        Some(Value::String(s)) => {
            let p = normalize(&root.join(s));
            // Upstream retries a missing '../x' as 'x' under the root.
            match s.strip_prefix("../") {
                Some(rest) if !p.exists() => Ok(vec![normalize(&root.join(rest))]),
                _ => Ok(vec![p]),
            }
        }
        Some(Value::Sequence(seq)) => {
            seq.iter().map(|v| v.as_str().map(|s| normalize(&root.join(s))).ok_or_else(|| anyhow!("{label}: {key} entries must be strings"))).collect()
        }
        Some(_) => bail!("{label}: {key} must be a path or a list of paths"),
    }
}

fn check_exists(doc: &Value, key: &str, paths: &[PathBuf], label: &str) -> Result<()> {
    let given: Vec<String> = match doc.get(key) {
        Some(Value::Sequence(seq)) => seq.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    };
    for (i, p) in paths.iter().enumerate() {
        if !p.exists() {
            let shown = given.get(i).cloned().unwrap_or_else(|| p.display().to_string());
            let what = if shown.ends_with(".txt") { "list file" } else { "folder" };
            bail!("{label}: {key} {what} {shown} does not exist ({})", p.display());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, yaml: &str) -> PathBuf {
        let p = dir.join("d.yaml");
        std::fs::write(&p, yaml).unwrap();
        p
    }

    #[test]
    fn resolves_relative_path_against_yaml_folder() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("ds/images/val")).unwrap();
        let y = write(t.path(), "path: ds\ntrain: images/train\nval: images/val\nnames: {0: a, 1: b}\n");
        let c = DataConfig::load(&y).unwrap();
        assert_eq!(c.root, t.path().join("ds"));
        assert_eq!(c.val, vec![t.path().join("ds/images/val")]);
        assert_eq!(c.names, vec!["a", "b"]);
        assert_eq!(c.nc(), 2);
    }

    #[test]
    fn list_of_sources_and_missing_path_key() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("v1")).unwrap();
        std::fs::write(t.path().join("v2.txt"), "").unwrap();
        let y = write(t.path(), "val: [v1, v2.txt]\nnames: [x]\nnc: 1\n");
        let c = DataConfig::load(&y).unwrap();
        assert_eq!(c.val, vec![t.path().join("v1"), t.path().join("v2.txt")]);
        assert!(c.train.is_empty());
    }

    #[test]
    fn errors_name_the_yaml_and_key() {
        let t = tempfile::tempdir().unwrap();
        let y = write(t.path(), "val: images/val\nnames: [a, b]\nnc: 3\n");
        assert_eq!(DataConfig::load(&y).unwrap_err().to_string(), "d.yaml: nc 3 does not match the 2 names");
        let y = write(t.path(), "val: images/val\nnames: [a]\n");
        let e = DataConfig::load(&y).unwrap_err().to_string();
        assert!(e.starts_with("d.yaml: val folder images/val does not exist ("), "{e}");
        let y = write(t.path(), "val: list.txt\nnames: [a]\n");
        assert!(DataConfig::load(&y).unwrap_err().to_string().starts_with("d.yaml: val list file list.txt does not exist"));
        let y = write(t.path(), "val: .\n");
        assert_eq!(DataConfig::load(&y).unwrap_err().to_string(), "d.yaml: names is missing");
        let y = write(t.path(), "val: .\nnames: {0: a, 2: b}\n");
        assert!(DataConfig::load(&y).unwrap_err().to_string().contains("without gaps"));
    }
}
