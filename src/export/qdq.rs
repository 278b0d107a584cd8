//! Q/DQ pairs (TensorRT's explicit-quantization rules, as pytorch-quantization exports them): every enabled, calibrated quantizer slot becomes
//! `QuantizeLinear(x, amax/127, 0:int8)` → `DequantizeLinear`. Activations are
//! per tensor (scalar scale); conv weights per output channel (1-D scale,
//! `axis=0`). One pair per (value, scale): every reader of the same value through
//! the same quantizer (shared/tied quantizers, or a node's output slot followed by
//! a reader with that quantizer) uses the one pair. Biases are never quantized.

use super::onnx_builder::{Attr, OnnxBuilder};
use crate::model::graph::QuantSlot;
use crate::quant::fake_quant::TINY_AMAX;
use crate::quant::QuantTable;
use anyhow::{bail, Result};
use std::collections::{BTreeSet, HashMap};

/// What the Q/DQ emitter did, for the export report.
#[derive(Debug, Clone, Default)]
pub struct QdqStats {
    /// Activation Q/DQ pairs written.
    pub activation_pairs: usize,
    /// Weight Q/DQ pairs written (one per quantized conv).
    pub weight_pairs: usize,
    /// Reads served by an existing pair instead of a new one.
    pub shared_reads: usize,
    /// Enabled slots whose quantizer has no amax (left in floating point).
    pub uncalibrated: BTreeSet<String>,
    /// Enabled slots in total.
    pub enabled_slots: usize,
    /// Disabled slots (skipped layers), left in floating point.
    pub disabled_slots: usize,
}

/// The scale ONNX stores for an amax: `max(amax, tiny) / 127` in float32.
pub fn scale_of(amax: f64) -> f32 {
    (amax.max(TINY_AMAX) / 127.0) as f32
}

pub struct QdqEmitter<'a> {
    table: Option<&'a QuantTable>,
    /// (value name, scale bits) → the DequantizeLinear output serving it.
    pairs: HashMap<(String, u32), String>,
    pub stats: QdqStats,
}

impl<'a> QdqEmitter<'a> {
    pub fn new(table: Option<&'a QuantTable>) -> Self {
        QdqEmitter { table, pairs: HashMap::new(), stats: QdqStats::default() }
    }

    /// The calibrated per-tensor amax of an enabled slot; `None` means no Q/DQ there.
    fn activation_amax(&mut self, slot: Option<QuantSlot>) -> Result<Option<(f64, String)>> {
        let (Some(table), Some(slot)) = (self.table, slot) else { return Ok(None) };
        if !slot.enabled {
            self.stats.disabled_slots += 1;
            return Ok(None);
        }
        self.stats.enabled_slots += 1;
        let q = table.quantizers.get(slot.quant).ok_or_else(|| anyhow::anyhow!("slot names quantizer {} of {}", slot.quant, table.len()))?;
        let Some(amax) = &q.amax else {
            self.stats.uncalibrated.insert(q.label.clone());
            return Ok(None);
        };
        if amax.numel() != 1 {
            bail!("quantizer `{}` quantizes an activation but has {} amax values (activations are per tensor)", q.label, amax.numel());
        }
        let a = amax.double_value(&[]);
        if !(a.is_finite() && a > 0.0) {
            bail!("quantizer `{}` has amax {a}; an activation's amax must be finite and > 0 (calibrate again)", q.label);
        }
        Ok(Some((a, q.label.clone())))
    }

    /// `x` as read through `slot`: the DQ output of its (possibly shared) Q/DQ pair, or `x` itself.
    pub fn activation(&mut self, g: &mut OnnxBuilder, x: &str, slot: Option<QuantSlot>, at: &str) -> Result<String> {
        let Some((amax, label)) = self.activation_amax(slot)? else { return Ok(x.to_string()) };
        let scale = scale_of(amax);
        let key = (x.to_string(), scale.to_bits());
        if let Some(dq) = self.pairs.get(&key) {
            self.stats.shared_reads += 1;
            return Ok(dq.clone());
        }
        let s = g.cached_const(format!("act scale {}", scale.to_bits()), |g| g.init_f32(&format!("{}_scale", sanitize(&label)), &[], &[scale]));
        let zp = g.zero_point_i8(None);
        let q = g.node("QuantizeLinear", &format!("{at}/QuantizeLinear"), &[x, &s, &zp], vec![]);
        let dq = g.node("DequantizeLinear", &format!("{at}/DequantizeLinear"), &[&q, &s, &zp], vec![]);
        self.stats.activation_pairs += 1;
        self.pairs.insert(key, dq.clone());
        // A reader of the DQ output through the same quantizer needs no second pair.
        self.pairs.insert((dq.clone(), scale.to_bits()), dq.clone());
        Ok(dq)
    }

    /// The weight `w` (an fp32 initializer of `out_channels` rows) through its per-channel Q/DQ pair, or `w`.
    pub fn weight(&mut self, g: &mut OnnxBuilder, w: &str, slot: Option<QuantSlot>, out_channels: i64, at: &str) -> Result<String> {
        let (Some(table), Some(slot)) = (self.table, slot) else { return Ok(w.to_string()) };
        if !slot.enabled {
            self.stats.disabled_slots += 1;
            return Ok(w.to_string());
        }
        self.stats.enabled_slots += 1;
        let q = &table.quantizers[slot.quant];
        let Some(amax) = &q.amax else {
            self.stats.uncalibrated.insert(q.label.clone());
            return Ok(w.to_string());
        };
        let amax: Vec<f32> = Vec::<f32>::try_from(amax.to_device(tch::Device::Cpu).to_kind(tch::Kind::Float).contiguous().view([-1]))?;
        let amax = match amax.len() as i64 {
            n if n == out_channels => amax,
            1 => vec![amax[0]; out_channels as usize],
            n => bail!("quantizer `{}`: {n} amax values for a weight of {out_channels} output channels", q.label),
        };
        // 0 is a channel of all-zero weights (its scale becomes tiny, as in training).
        if let Some(bad) = amax.iter().find(|a| !(a.is_finite() && **a >= 0.0)) {
            bail!("quantizer `{}` has amax {bad}; a weight's amax must be finite and >= 0", q.label);
        }
        let scales: Vec<f32> = amax.iter().map(|&a| scale_of(a as f64)).collect();
        Ok(self.weight_pair(g, w, &scales, at))
    }

    /// `w` through QuantizeLinear → DequantizeLinear with per-output-channel `scales` (axis 0).
    fn weight_pair(&mut self, g: &mut OnnxBuilder, w: &str, scales: &[f32], at: &str) -> String {
        let s = g.init_f32(&format!("{at}.weight_scale"), &[scales.len() as i64], scales);
        let zp = g.zero_point_i8(Some(scales.len() as i64));
        let axis = || vec![("axis", Attr::Int(0))];
        let qn = g.node("QuantizeLinear", &format!("{at}/weight/QuantizeLinear"), &[w, &s, &zp], axis());
        let dq = g.node("DequantizeLinear", &format!("{at}/weight/DequantizeLinear"), &[&qn, &s, &zp], axis());
        self.stats.weight_pairs += 1;
        dq
    }

    /// A weight of small integers (the DFL's 0..reg_max projection) through a per-channel
    /// Q/DQ pair of scale 1: exact in INT8, so the conv runs in INT8 in TensorRT at no cost
    /// in accuracy (the reference's max calibration, scale 15/127, would move every bin).
    /// `None` when some value is not an integer in [-127, 127].
    pub fn exact_weight(&mut self, g: &mut OnnxBuilder, w: &str, values: &[f32], out_channels: i64, at: &str) -> Option<String> {
        if !values.iter().all(|v| v.fract() == 0.0 && v.abs() <= 127.0) {
            return None;
        }
        Some(self.weight_pair(g, w, &vec![1.0; out_channels as usize], at))
    }
}

fn sanitize(label: &str) -> String {
    label.replace(' ', "_")
}
