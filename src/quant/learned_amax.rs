//! Learned activation ranges during QAT (`quantize --learn-amax LR`; not in the recipe,
//! whose amax stay at their calibrated values). Each per-tensor activation quantizer's
//! amax becomes a parameter, trained through the quantizer's own gradient as in LSQ
//! (Esser et al., 2020): the rounding is straight-through, so d x̂/d amax is
//! `(q − x/s)/127` inside the range and `q/127` where it clamps. Parameterized as
//! log amax, so that Adam's step is a relative change of the range.

use super::optimizer::Adam;
use super::quantizer::QuantTable;
use crate::model::graph::QuantId;
use tch::{Kind, Tensor};

pub struct LearnedAmax {
    /// log amax of every learned quantizer: the fp32 leaf that Adam trains.
    pub log_amax: Tensor,
    /// Position in `log_amax` of each quantizer of the table (`None`: not learned).
    index: Vec<Option<usize>>,
    adam: Adam,
    lr: Tensor,
}

impl LearnedAmax {
    /// Every calibrated per-tensor quantizer whose amax is not known by construction.
    pub fn new(table: &QuantTable, lr: f64, device: tch::Device) -> Option<LearnedAmax> {
        let mut index = Vec::with_capacity(table.len());
        let mut init = Vec::new();
        for q in &table.quantizers {
            match q.amax_f64().filter(|_| !q.per_channel && q.known_amax.is_none()) {
                Some(a) => {
                    index.push(Some(init.len()));
                    init.push(a.max(super::fake_quant::TINY_AMAX).ln() as f32);
                }
                None => index.push(None),
            }
        }
        if init.is_empty() {
            return None;
        }
        let log_amax = Tensor::from_slice(&init).to_device(device).set_requires_grad(true);
        let adam = Adam::new(&log_amax);
        let lr = Tensor::from(lr as f32).to_device(device);
        Some(LearnedAmax { log_amax, index, adam, lr })
    }

    /// This step's amax of every learned quantizer (0-dim tensors that carry the gradient).
    pub fn amaxes(&self) -> Vec<Tensor> {
        self.log_amax.exp().unbind(0)
    }

    pub fn slot(&self, q: QuantId) -> Option<usize> {
        self.index.get(q).copied().flatten()
    }

    /// Adam on log amax; returns `found_inf` like [`Adam::step`].
    pub fn step(&mut self, inv_scale: &Tensor) -> Tensor {
        self.adam.step(&mut self.log_amax, &self.lr, inv_scale)
    }

    /// Writes the learned values into the table (for evaluation, checkpoints and export).
    pub fn write_back(&self, table: &mut QuantTable) {
        self.write_back_from(&self.log_amax, table);
    }

    /// Like [`LearnedAmax::write_back`], from another log-amax laid out like this one's
    /// (e.g. its moving average).
    pub fn write_back_from(&self, log_amax: &Tensor, table: &mut QuantTable) {
        let amax = log_amax.detach().exp();
        for (q, i) in table.quantizers.iter_mut().zip(&self.index) {
            if let Some(i) = *i {
                let device = q.amax.as_ref().map_or(amax.device(), Tensor::device);
                q.amax = Some(amax.get(i as i64).to_device(device));
            }
        }
        table.refresh();
    }

    /// The tensors a step updates in place (saved and restored around a graph's warm-up).
    pub fn state(&self) -> Vec<Tensor> {
        let mut s = vec![self.log_amax.detach()];
        s.extend(self.adam.state());
        s
    }
}

/// Fake quantization whose gradient reaches `amax` (0-dim): computed in fp32, so that
/// the amax gradient, a sum over the whole tensor, cannot overflow under the loss scale.
pub fn fake_quant_learned(x: &Tensor, amax: &Tensor) -> Tensor {
    let s = amax / 127.0;
    let t = x.to_kind(Kind::Float) / &s;
    let rounded = &t + (t.round() - &t).detach();
    (rounded.clamp(-128.0, 127.0) * s).to_kind(x.kind())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_is_fake_quant_and_gradient_is_lsq() {
        // amax 1.27 → step 0.01.
        let amax = Tensor::from(1.27f32).set_requires_grad(true);
        let x = Tensor::from_slice(&[0.014f32, -0.026, 2.0]).set_requires_grad(true);
        let y = fake_quant_learned(&x, &amax);
        let got: Vec<f32> = Vec::try_from(y.detach()).unwrap();
        for (g, w) in got.iter().zip([0.01f32, -0.03, 1.27]) {
            assert!((g - w).abs() < 1e-6, "{got:?}");
        }
        y.sum(Kind::Float).backward();
        assert_eq!(Vec::<f32>::try_from(x.grad()).unwrap(), [1.0, 1.0, 0.0]);
        // d/d amax: (q − x/s)/127 inside, q/127 clamped: (1 − 1.4)/127 + (−3 + 2.6)/127 + 127/127.
        let want = (1.0 - 1.4) / 127.0 + (-3.0 + 2.6) / 127.0 + 1.0;
        let g = amax.grad().double_value(&[]);
        assert!((g - want).abs() < 1e-5, "amax gradient {g}, want {want}");
    }
}
