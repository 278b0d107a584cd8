//! The table of quantizers a model's slots point to, and the hooks that make a
//! forward pass calibrate them or fake-quantize through them.

use super::calib_method::{compute_amax, CalibMethod};
use super::fake_quant::QParams;
use super::histogram::{collect, Histogram};
use crate::model::forward::QuantHook;
use crate::model::graph::QuantId;
use tch::{Kind, Tensor};

#[derive(Debug)]
pub struct Quantizer {
    /// Per output channel (conv weights) or per tensor (activations).
    pub per_channel: bool,
    /// Scalar, or (C,) per channel; `None` until calibrated.
    pub amax: Option<Tensor>,
    pub hist: Option<Histogram>,
    pub max_seen: f64,
    /// Derived from `amax` by [`QuantTable::refresh`]; what the forward pass uses.
    pub params: Option<QParams>,
    /// Where it was first placed, e.g. `model.3.cv1 input` (for logs and reports).
    pub label: String,
    /// amax known by construction, used instead of calibration (see `PrepareOptions`).
    pub known_amax: Option<f64>,
}

impl Quantizer {
    pub fn new(per_channel: bool, label: String) -> Self {
        Quantizer { per_channel, amax: None, hist: None, max_seen: 0.0, params: None, label, known_amax: None }
    }

    pub fn amax_f64(&self) -> Option<f64> {
        self.amax.as_ref().filter(|a| a.numel() == 1).map(|a| a.double_value(&[]))
    }

    pub fn deep_clone(&self) -> Quantizer {
        Quantizer {
            per_channel: self.per_channel,
            amax: self.amax.as_ref().map(Tensor::copy),
            hist: self.hist.as_ref().map(Histogram::deep_clone),
            max_seen: self.max_seen,
            params: None,
            label: self.label.clone(),
            known_amax: self.known_amax,
        }
    }
}

#[derive(Debug, Default)]
pub struct QuantTable {
    pub quantizers: Vec<Quantizer>,
}

impl QuantTable {
    pub fn add(&mut self, per_channel: bool, label: String) -> QuantId {
        self.quantizers.push(Quantizer::new(per_channel, label));
        self.quantizers.len() - 1
    }

    pub fn len(&self) -> usize {
        self.quantizers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.quantizers.is_empty()
    }

    /// Sets every calibrated activation quantizer's amax from its histogram.
    pub fn finish_calibration(&mut self, method: CalibMethod) -> usize {
        let mut missing = 0;
        for q in self.quantizers.iter_mut().filter(|q| !q.per_channel) {
            match (&q.hist, q.known_amax) {
                (Some(h), Some(known)) => q.amax = Some(Tensor::from(known as f32).to_device(h.counts.device())),
                (Some(h), None) => {
                    let amax = compute_amax(h, q.max_seen, method);
                    q.amax = Some(Tensor::from(amax as f32).to_device(h.counts.device()));
                }
                (None, _) => missing += 1,
            }
            q.hist = None;
        }
        self.refresh();
        missing
    }

    /// Recomputes every quantizer's forward parameters from its amax.
    pub fn refresh(&mut self) {
        for q in &mut self.quantizers {
            q.params = q.amax.as_ref().map(|a| if q.per_channel { QParams::per_channel(a) } else { QParams::per_tensor(a.double_value(&[])) });
        }
    }

    pub fn to_device(&mut self, device: tch::Device) {
        for q in &mut self.quantizers {
            q.amax = q.amax.as_ref().map(|a| a.to_device(device));
        }
        self.refresh();
    }

    pub fn deep_clone(&self) -> QuantTable {
        let mut t = QuantTable { quantizers: self.quantizers.iter().map(Quantizer::deep_clone).collect() };
        t.refresh();
        t
    }
}

/// Hook that fake-quantizes through calibrated quantizers (uncalibrated ones pass through).
pub struct FakeQuant<'a>(pub &'a QuantTable);

impl QuantHook for FakeQuant<'_> {
    fn activation(&mut self, q: QuantId, x: &Tensor) -> Tensor {
        match &self.0.quantizers[q].params {
            Some(p) => p.apply(x),
            None => x.shallow_clone(),
        }
    }
    fn weight(&mut self, q: QuantId, w: &Tensor) -> Tensor {
        // Weights quantize in fp32 (as under autocast, where they are fp32 masters).
        match w.kind() {
            Kind::Half | Kind::BFloat16 => self.activation(q, &w.to_kind(Kind::Float)).to_kind(w.kind()),
            _ => self.activation(q, w),
        }
    }
}

/// Hook that collects activation histograms and leaves values untouched.
pub struct Collect<'a>(pub &'a mut QuantTable);

impl QuantHook for Collect<'_> {
    fn activation(&mut self, q: QuantId, x: &Tensor) -> Tensor {
        let quant = &mut self.0.quantizers[q];
        let m = collect(&mut quant.hist, x);
        quant.max_seen = quant.max_seen.max(m);
        x.shallow_clone()
    }
    fn weight(&mut self, _: QuantId, w: &Tensor) -> Tensor {
        w.shallow_clone()
    }
}
