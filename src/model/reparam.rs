//! Reparameterization (upstream `tools/reparameterization.ipynb`): a dual-head YOLOv9 becomes its
//! GELAN by keeping the main branch: the layers the main detect inputs need, in order, after a
//! leading `Silence`. The GELAN head takes the main branch's parameters: `DualDDetect`'s
//! cv4/cv5/dfl2 become `DDetect`'s cv2/cv3/dfl, and `DualDSegment`'s cv4/cv5/cv7/proto2/dfl2
//! become `DSegment`'s cv2/cv3/cv4/proto/dfl (the aux branch's are dropped).
//!
//! For detection the main branch must be the layers right after `Silence` (yolov9-t/s/m/c; other
//! layouts take `--cfg`). yolov9-c-dseg's main branch skips the aux layers between its
//! P5 block and its prototype branch; the kept layers are renumbered in order.

use super::config::ModelConfig;
use anyhow::{bail, Result};
use serde_yaml::Value;
use std::collections::{BTreeMap, BTreeSet};

/// A dual head and its GELAN counterpart, with the parameter renames between them.
struct HeadKind {
    dual: &'static str,
    gelan: &'static str,
    renames: &'static [(&'static str, &'static str)],
}

const HEADS: [HeadKind; 2] = [
    HeadKind { dual: "DualDDetect", gelan: "DDetect", renames: &[("cv4.", "cv2."), ("cv5.", "cv3."), ("dfl2.", "dfl.")] },
    HeadKind {
        dual: "DualDSegment",
        gelan: "DSegment",
        renames: &[("cv4.", "cv2."), ("cv5.", "cv3."), ("cv7.", "cv4."), ("proto2.", "proto."), ("dfl2.", "dfl.")],
    },
];

/// The main branch of a dual model: its head, the main head inputs, and the old index of each
/// kept layer (the new index is the position).
struct MainBranch {
    head: &'static HeadKind,
    detect: usize,
    inputs: Vec<usize>,
    kept: Vec<usize>,
}

fn abs_from(cfg: &ModelConfig, i: usize) -> Vec<usize> {
    cfg.layers[i].from.iter().map(|&f| if f < 0 { (i as i64 + f) as usize } else { f as usize }).collect()
}

/// 1 after a leading `Silence` (which only passes the input on), else 0.
fn silence(dual: &ModelConfig) -> usize {
    usize::from(dual.layers[0].module == "Silence")
}

fn main_branch(dual: &ModelConfig) -> Result<MainBranch> {
    let d = dual.layers.len() - 1;
    let module = dual.layers[d].module.as_str();
    let Some(head) = HEADS.iter().find(|h| h.dual == module) else {
        bail!("not a dual-head model (its detect layer is {module}); only dual-head YOLOv9 models are reparameterized");
    };
    let from = abs_from(dual, d);
    let inputs: Vec<usize> = if head.gelan == "DSegment" {
        let nl = from.len().saturating_sub(2) / 2;
        from[nl..2 * nl].iter().chain(from.last()).copied().collect()
    } else {
        from[from.len() / 2..].to_vec()
    };
    let k = silence(dual);
    let mut needed = BTreeSet::new();
    let mut stack = inputs.clone();
    while let Some(i) = stack.pop() {
        if i >= k && needed.insert(i) && !(i == 0 && dual.layers[0].from == [-1]) {
            stack.extend(abs_from(dual, i).into_iter().filter(|&j| j < i));
        }
    }
    let kept: Vec<usize> = needed.into_iter().collect();
    let contiguous = kept.first() == Some(&k) && kept.windows(2).all(|w| w[1] == w[0] + 1);
    if head.gelan == "DDetect" && !contiguous {
        bail!("the main branch does not use exactly the layers after the first; give the GELAN layout with --cfg");
    }
    Ok(MainBranch { head, detect: d, inputs, kept })
}

/// The GELAN layout of a dual model, inferred from the layers its main branch needs.
pub fn infer_target(dual: &ModelConfig) -> Result<ModelConfig> {
    let mb = main_branch(dual)?;
    let new_index: BTreeMap<usize, usize> = mb.kept.iter().enumerate().map(|(n, &o)| (o, n)).collect();
    let k = silence(dual);
    let mut rows = Vec::with_capacity(mb.kept.len() + 1);
    for (n, &o) in mb.kept.iter().enumerate() {
        rows.push(renumbered_row(dual, o, n, k, &new_index)?);
    }
    let det_from: Vec<Value> = mb.inputs.iter().map(|i| Value::from(new_index[i] as i64)).collect();
    let mut det_args = vec![Value::from("nc")];
    if mb.head.gelan == "DSegment" {
        det_args.extend(row_args(&dual.raw, mb.detect).into_iter().skip(1));
    }
    rows.push(Value::Sequence(vec![Value::Sequence(det_from), Value::from(1), Value::from(mb.head.gelan), Value::Sequence(det_args)]));
    let n_backbone = dual.raw.get("backbone").and_then(Value::as_sequence).map_or(0, |b| b.len()).saturating_sub(k).min(rows.len());
    let mut raw = dual.raw.clone();
    if let Value::Mapping(m) = &mut raw {
        m.insert("backbone".into(), Value::Sequence(rows[..n_backbone].to_vec()));
        m.insert("head".into(), Value::Sequence(rows[n_backbone..].to_vec()));
    }
    ModelConfig::from_value(raw)
}

fn yaml_rows(raw: &Value) -> Vec<&Value> {
    ["backbone", "head"].iter().filter_map(|p| raw.get(*p).and_then(Value::as_sequence)).flatten().collect()
}

fn row_args(raw: &Value, i: usize) -> Vec<Value> {
    yaml_rows(raw).get(i).and_then(|r| r.get(3)).and_then(Value::as_sequence).cloned().unwrap_or_default()
}

/// Row `old` of the dual yaml as row `new` of the GELAN: `from` indices renumbered (relative
/// ones stay relative); a reference to the leading `Silence` is the input (`-1` at row 0).
fn renumbered_row(dual: &ModelConfig, old: usize, new: usize, k: usize, new_index: &BTreeMap<usize, usize>) -> Result<Value> {
    let mut row = yaml_rows(&dual.raw)[old].clone();
    let map = |f: i64| -> Result<i64> {
        let abs = if f < 0 { old as i64 + f } else { f };
        if abs < 0 || (k == 1 && abs == 0) {
            return if new == 0 { Ok(-1) } else { bail!("layer {old} reads the input past its first layer; give the GELAN layout with --cfg") };
        }
        let Some(&n) = new_index.get(&(abs as usize)) else { bail!("layer {old} reads layer {abs}, outside the main branch") };
        Ok(if f < 0 { n as i64 - new as i64 } else { n as i64 })
    };
    if let Value::Sequence(cols) = &mut row {
        cols[0] = match &cols[0] {
            Value::Number(n) => Value::from(map(n.as_i64().unwrap_or(-1))?),
            Value::Sequence(s) => Value::Sequence(s.iter().map(|v| map(v.as_i64().unwrap_or(-1)).map(Value::from)).collect::<Result<_>>()?),
            v => v.clone(),
        };
    }
    Ok(row)
}

/// Renames a dual model's parameters (and BN eps entries) to the GELAN's `target`.
pub fn map_names<T>(dual: &ModelConfig, target: &ModelConfig, items: BTreeMap<String, T>) -> Result<BTreeMap<String, T>> {
    let d = dual.layers.len() - 1;
    let module = dual.layers[d].module.as_str();
    let Some(head) = HEADS.iter().find(|h| h.dual == module) else { bail!("not a dual-head model (its detect layer is {module})") };
    let gd = target.layers.len() - 1;
    if target.layers[gd].module != head.gelan {
        bail!("the GELAN layout must end in {}, not {}", head.gelan, target.layers[gd].module);
    }
    // Detection: GELAN layer i is dual layer i + k; segmentation: the main branch renumbered.
    let k = silence(dual);
    let new_index: BTreeMap<usize, usize> = if head.gelan == "DDetect" {
        (k..k + gd).map(|i| (i, i - k)).collect()
    } else {
        main_branch(dual)?.kept.iter().enumerate().map(|(n, &o)| (o, n)).collect()
    };
    let mut out = BTreeMap::new();
    for (name, v) in items {
        let Some(rest) = name.strip_prefix("model.") else { continue };
        let (idx, tail) = rest.split_once('.').unwrap_or((rest, ""));
        let Ok(i) = idx.parse::<usize>() else { continue };
        let new = if i == d {
            let renamed = head.renames.iter().find_map(|(a, b)| tail.strip_prefix(a).map(|t| format!("{b}{t}")));
            renamed.map(|t| format!("model.{gd}.{t}"))
        } else {
            new_index.get(&i).filter(|&&n| n < gd).map(|n| format!("model.{n}.{tail}"))
        };
        if let Some(n) = new {
            out.insert(n.trim_end_matches('.').to_string(), v);
        }
    }
    Ok(out)
}
