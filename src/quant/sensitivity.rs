//! Sensitivity analysis (the reference patch's `qat.py sensitive`): PTQ with everything quantized, then each
//! quantized top-level layer alone switched back to floating point. Unlike the
//! reference, every layer is re-enabled after its measurement, so each row
//! measures one layer, not all layers up to it.

use super::state::{quantized_layers, set_layer_enabled};
use super::QuantModel;
use crate::model::graph::Graph;
use anyhow::Result;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct LayerSensitivity {
    pub layer: String,
    pub map: f64,
    pub map50: f64,
    /// mAP with this layer in floating point minus the all-INT8 (PTQ) mAP.
    pub gain: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Sensitivity {
    pub ptq_map: f64,
    pub ptq_map50: f64,
    pub layers: Vec<LayerSensitivity>,
}

impl Sensitivity {
    /// Layers by AP gain, largest first.
    pub fn ranked(&self) -> Vec<&LayerSensitivity> {
        let mut v: Vec<&LayerSensitivity> = self.layers.iter().collect();
        v.sort_by(|a, b| b.gain.total_cmp(&a.gain));
        v
    }

    /// The reference patch's `summary-sensitive-analysis.json`: `[[AP, "PTQ"], [AP, "model.I"], …]`.
    pub fn seed_summary(&self) -> serde_json::Value {
        let mut rows = vec![serde_json::json!([self.ptq_map, "PTQ"])];
        rows.extend(self.layers.iter().map(|l| serde_json::json!([l.map, l.layer])));
        serde_json::Value::Array(rows)
    }
}

/// Measures every quantized layer of a calibrated model with `eval` → (mAP, mAP50).
/// Leaves the model exactly as it found it.
pub fn analyze<M: QuantModel>(model: &mut M, mut eval: impl FnMut(&M, &str) -> Result<(f64, f64)>) -> Result<Sensitivity> {
    let (ptq_map, ptq_map50) = eval(model, "PTQ")?;
    let mut layers = Vec::new();
    for l in quantized_layers(model.graph()) {
        let name = format!("model.{l}");
        let before: Vec<bool> = layer_flags(model.graph(), l);
        set_layer_enabled(model.graph_mut(), l, false);
        let r = eval(model, &name);
        restore(model.graph_mut(), l, &before);
        let (map, map50) = r?;
        layers.push(LayerSensitivity { layer: name, map, map50, gain: map - ptq_map });
    }
    Ok(Sensitivity { ptq_map, ptq_map50, layers })
}

fn layer_flags(graph: &Graph, layer: usize) -> Vec<bool> {
    graph.nodes.iter().filter(|n| n.layer == layer).flat_map(|n| n.quant.all().map(|s| s.enabled).collect::<Vec<_>>()).collect()
}

fn restore(graph: &mut Graph, layer: usize, flags: &[bool]) {
    let mut it = flags.iter();
    for n in graph.nodes.iter_mut().filter(|n| n.layer == layer) {
        for s in n.quant.all_mut() {
            s.enabled = *it.next().unwrap_or(&true);
        }
    }
}
