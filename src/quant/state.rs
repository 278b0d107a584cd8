//! A quantized model's quantizer state: the table, which slots use which
//! quantizer, the tie groups, and the layers kept in floating point.
//! Serializable, so checkpoints carry it.

use super::quantizer::QuantTable;
use super::tying::TieGroup;
use crate::model::graph::{Graph, QuantSlot};
use anyhow::{anyhow, bail, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use tch::Tensor;

#[derive(Debug)]
pub struct QuantState {
    pub table: QuantTable,
    pub groups: Vec<TieGroup>,
    pub calib_method: String,
    pub skip_layers: Vec<usize>,
}

impl QuantState {
    pub fn deep_clone(&self) -> QuantState {
        QuantState {
            table: self.table.deep_clone(),
            groups: self.groups.clone(),
            calib_method: self.calib_method.clone(),
            skip_layers: self.skip_layers.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SlotMeta {
    pub node: String,
    /// `in0`, `in1`, … `out`, `weight`, `internal`.
    pub place: String,
    pub quant: usize,
    pub enabled: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QuantizerMeta {
    pub label: String,
    pub per_channel: bool,
    /// amax known by construction (e.g. the DFL input's 1), kept fixed by QAT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_amax: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QuantMeta {
    pub calib_method: String,
    pub quantizers: Vec<QuantizerMeta>,
    pub slots: Vec<SlotMeta>,
    pub ties: Vec<Vec<String>>,
    pub skip_layers: Vec<usize>,
}

fn places(graph: &Graph) -> Vec<(usize, String, QuantSlot)> {
    let mut out = Vec::new();
    for (i, n) in graph.nodes.iter().enumerate() {
        for (k, s) in n.quant.inputs.iter().enumerate() {
            out.extend(s.map(|s| (i, format!("in{k}"), s)));
        }
        out.extend(n.quant.output.map(|s| (i, "out".to_string(), s)));
        out.extend(n.quant.weight.map(|s| (i, "weight".to_string(), s)));
        out.extend(n.quant.internal.map(|s| (i, "internal".to_string(), s)));
    }
    out
}

/// Metadata and `quant.I.amax` tensors for a checkpoint.
pub fn to_meta(graph: &Graph, state: &QuantState) -> (QuantMeta, Vec<(String, Tensor)>) {
    let slots =
        places(graph).into_iter().map(|(i, place, s)| SlotMeta { node: graph.nodes[i].name.clone(), place, quant: s.quant, enabled: s.enabled }).collect();
    let quantizers =
        state.table.quantizers.iter().map(|q| QuantizerMeta { label: q.label.clone(), per_channel: q.per_channel, known_amax: q.known_amax }).collect();
    let tensors = state
        .table
        .quantizers
        .iter()
        .enumerate()
        .filter_map(|(i, q)| q.amax.as_ref().map(|a| (format!("quant.{i}.amax"), a.to_device(tch::Device::Cpu))))
        .collect();
    let meta = QuantMeta {
        calib_method: state.calib_method.clone(),
        quantizers,
        slots,
        ties: state.groups.iter().map(|g| g.members.clone()).collect(),
        skip_layers: state.skip_layers.clone(),
    };
    (meta, tensors)
}

/// Rebuilds the quantizer state of `graph` from checkpoint metadata and tensors.
pub fn from_meta(graph: &mut Graph, meta: &QuantMeta, tensors: &BTreeMap<String, Tensor>) -> Result<QuantState> {
    let mut table = QuantTable::default();
    for (i, q) in meta.quantizers.iter().enumerate() {
        let id = table.add(q.per_channel, q.label.clone());
        let amax = tensors.get(&format!("quant.{i}.amax"));
        if let Some(a) = amax {
            check_amax(a).map_err(|e| anyhow!("quantizer `{}` (quant.{i}.amax): {e}", q.label))?;
        }
        table.quantizers[id].amax = amax.map(|t| t.shallow_clone());
        table.quantizers[id].known_amax = q.known_amax;
    }
    let by_name: HashMap<String, usize> = graph.nodes.iter().enumerate().map(|(i, n)| (n.name.clone(), i)).collect();
    for s in &meta.slots {
        let &i = by_name.get(&s.node).ok_or_else(|| anyhow!("quantizer slot names node `{}`, which the model does not have", s.node))?;
        if s.quant >= table.len() {
            bail!("slot {}:{} names quantizer {} of {}", s.node, s.place, s.quant, table.len());
        }
        let slot = Some(QuantSlot { quant: s.quant, enabled: s.enabled });
        let q = &mut graph.nodes[i].quant;
        match s.place.as_str() {
            "out" => q.output = slot,
            "weight" => q.weight = slot,
            "internal" => q.internal = slot,
            p => {
                let k: usize = p.strip_prefix("in").and_then(|k| k.parse().ok()).ok_or_else(|| anyhow!("bad slot place `{p}`"))?;
                *q.inputs.get_mut(k).ok_or_else(|| anyhow!("slot {}:{p} out of range", s.node))? = slot;
            }
        }
    }
    table.refresh();
    let groups = meta.ties.iter().map(|m| TieGroup { quant: 0, members: m.clone() }).collect();
    Ok(QuantState { table, groups, calib_method: meta.calib_method.clone(), skip_layers: meta.skip_layers.clone() })
}

/// A saved amax is finite and not negative. 0 is kept: calibration gives it honestly to an
/// activation that was always 0 or a channel of all-zero weights (used as a tiny amax);
/// export refuses it on an activation (`export::qdq`).
fn check_amax(a: &Tensor) -> Result<()> {
    let v: Vec<f64> = Vec::<f64>::try_from(a.to_kind(tch::Kind::Double).reshape([-1]))?;
    if let Some(bad) = v.iter().find(|&&x| !(x.is_finite() && x >= 0.0)) {
        bail!("holds amax {bad}; amax must be finite and >= 0");
    }
    Ok(())
}

/// Switches every slot of top-level layer `layer` on or off.
pub fn set_layer_enabled(graph: &mut Graph, layer: usize, enabled: bool) {
    for n in graph.nodes.iter_mut().filter(|n| n.layer == layer) {
        n.quant.all_mut().for_each(|s| s.enabled = enabled);
    }
}

/// Top-level layers that hold at least one quantizer slot.
pub fn quantized_layers(graph: &Graph) -> Vec<usize> {
    let mut layers: Vec<usize> = graph.nodes.iter().filter(|n| n.quant.all().next().is_some()).map(|n| n.layer).collect();
    layers.dedup();
    layers
}
