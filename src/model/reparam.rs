//! Reparameterization (upstream `tools/reparameterization.ipynb`): a dual-head YOLOv9 becomes its GELAN by
//! keeping the main branch. GELAN layer i is dual layer i + k (k = 1 after a
//! leading `Silence`), and the GELAN `DDetect`'s cv2/cv3/dfl are the
//! `DualDDetect`'s cv4/cv5/dfl2.

use super::config::ModelConfig;
use anyhow::{bail, Result};
use serde_yaml::Value;
use std::collections::{BTreeMap, BTreeSet};

/// Index of the detect layer and its absolute input layers.
fn detect_inputs(cfg: &ModelConfig) -> Result<(usize, String, Vec<usize>)> {
    let d = cfg.layers.len() - 1;
    let last = &cfg.layers[d];
    let from = last.from.iter().map(|&f| if f < 0 { (d as i64 + f) as usize } else { f as usize }).collect();
    Ok((d, last.module.clone(), from))
}

fn abs_from(cfg: &ModelConfig, i: usize) -> Vec<usize> {
    cfg.layers[i].from.iter().map(|&f| if f < 0 { (i as i64 + f) as usize } else { f as usize }).collect()
}

/// The GELAN layout of a dual model, inferred from the layers its main branch needs.
pub fn infer_target(dual: &ModelConfig) -> Result<ModelConfig> {
    let (_, module, from) = detect_inputs(dual)?;
    if module != "DualDDetect" {
        bail!("not a dual-head model (its detect layer is {module}); only dual-head YOLOv9 models are reparameterized");
    }
    let k = usize::from(dual.layers[0].module == "Silence");
    let main = &from[from.len() / 2..];
    let top = *main.iter().max().expect("detect has inputs");
    let mut needed = BTreeSet::new();
    let mut stack: Vec<usize> = main.to_vec();
    while let Some(i) = stack.pop() {
        if i >= k && needed.insert(i) && !(i == 0 && dual.layers[0].from == [-1]) {
            stack.extend(abs_from(dual, i).into_iter().filter(|&j| j < i));
        }
    }
    let kept: BTreeSet<usize> = (k..=top).collect();
    if needed != kept {
        bail!("the main branch does not use exactly layers {k}..={top}; give the GELAN layout with --cfg");
    }
    let mut rows = Vec::new();
    for i in k..=top {
        rows.push(shift_row(&dual.raw, i, k)?);
    }
    let det_from: Vec<Value> = main.iter().map(|&m| Value::from((m - k) as i64)).collect();
    rows.push(Value::Sequence(vec![Value::Sequence(det_from), Value::from(1), Value::from("DDetect"), Value::Sequence(vec![Value::from("nc")])]));
    let n_backbone = dual.raw.get("backbone").and_then(Value::as_sequence).map_or(0, |b| b.len()).saturating_sub(k).min(rows.len());
    let mut raw = dual.raw.clone();
    if let Value::Mapping(m) = &mut raw {
        m.insert("backbone".into(), Value::Sequence(rows[..n_backbone].to_vec()));
        m.insert("head".into(), Value::Sequence(rows[n_backbone..].to_vec()));
    }
    ModelConfig::from_value(raw)
}

/// Row `i` of the dual yaml with absolute `from` indices shifted down by `k`.
fn shift_row(raw: &Value, i: usize, k: usize) -> Result<Value> {
    let rows: Vec<&Value> = ["backbone", "head"].iter().filter_map(|p| raw.get(*p).and_then(Value::as_sequence)).flatten().collect();
    let mut row = rows[i].clone();
    if let Value::Sequence(cols) = &mut row {
        cols[0] = match &cols[0] {
            Value::Number(n) => Value::from(shift(n.as_i64().unwrap_or(-1), k)),
            Value::Sequence(s) => Value::Sequence(s.iter().map(|v| Value::from(shift(v.as_i64().unwrap_or(-1), k))).collect()),
            v => v.clone(),
        };
    }
    Ok(row)
}

fn shift(f: i64, k: usize) -> i64 {
    if f >= 0 {
        f - k as i64
    } else {
        f
    }
}

/// Renames a dual model's parameters (and BN eps entries) to the GELAN's.
pub fn map_names<T>(dual: &ModelConfig, target: &ModelConfig, items: BTreeMap<String, T>) -> Result<BTreeMap<String, T>> {
    let k = usize::from(dual.layers[0].module == "Silence");
    let dd = dual.layers.len() - 1;
    let gd = target.layers.len() - 1;
    if target.layers[gd].module != "DDetect" {
        bail!("the GELAN layout must end in DDetect, not {}", target.layers[gd].module);
    }
    let mut out = BTreeMap::new();
    for (name, v) in items {
        let Some(rest) = name.strip_prefix("model.") else { continue };
        let (idx, tail) = rest.split_once('.').unwrap_or((rest, ""));
        let Ok(i) = idx.parse::<usize>() else { continue };
        let new = if i == dd {
            let renamed = [("cv4.", "cv2."), ("cv5.", "cv3."), ("dfl2.", "dfl.")].iter().find_map(|(a, b)| tail.strip_prefix(a).map(|t| format!("{b}{t}")));
            renamed.map(|t| format!("model.{gd}.{t}"))
        } else if i >= k && i - k < gd {
            Some(format!("model.{}.{tail}", i - k))
        } else {
            None
        };
        if let Some(n) = new {
            out.insert(n.trim_end_matches('.').to_string(), v);
        }
    }
    Ok(out)
}
