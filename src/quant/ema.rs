//! Exponential moving average of the trained weights, as upstream YOLOv9's
//! `utils/torch_utils.py` `ModelEMA` keeps it: after every optimizer step
//! `ema = d·ema + (1 − d)·w` with `d = decay · (1 − exp(−updates / tau))`, so early
//! updates follow the weights closely and later ones average over ~1/(1 − decay)
//! steps (Polyak & Juditsky, 1992). Evaluation and checkpoints use the average.
//!
//! The decay of the next update is a device scalar filled before each step, so a
//! recorded CUDA graph reads the current value on every replay.

use tch::{Kind, Tensor};

pub struct Ema {
    /// The averaged flat parameters (laid out like `FlatParams::flat`).
    pub flat: Tensor,
    /// The averaged learned log-amax, when ranges are learned.
    pub log_amax: Option<Tensor>,
    /// Updates so far, counted on the host (upstream's `updates`).
    pub updates: u64,
    pub decay: f64,
    pub tau: f64,
    /// `d` of the next update, on the device.
    d: Tensor,
}

impl Ema {
    pub fn new(flat: &Tensor, log_amax: Option<&Tensor>, decay: f64, tau: f64) -> Ema {
        let d = Tensor::zeros([], (Kind::Float, flat.device()));
        Ema { flat: flat.detach().copy(), log_amax: log_amax.map(|t| t.detach().copy()), updates: 0, decay, tau, d }
    }

    /// Upstream's decay for update number `n` (1-based).
    pub fn decay_at(&self, n: u64) -> f64 {
        self.decay * (1.0 - (-(n as f64) / self.tau).exp())
    }

    /// Sets the decay of the coming update (host side, before the step runs).
    pub fn prepare(&mut self) {
        self.updates += 1;
        let _ = self.d.fill_(self.decay_at(self.updates));
    }

    /// Moves the average toward the current values (device side, inside the step).
    pub fn update(&mut self, flat: &Tensor, log_amax: Option<&Tensor>) {
        tch::no_grad(|| {
            blend(&mut self.flat, flat, &self.d);
            if let (Some(e), Some(l)) = (self.log_amax.as_mut(), log_amax) {
                blend(e, l, &self.d);
            }
        });
    }

    /// The tensors an update changes in place (saved and restored around a graph's warm-up).
    pub fn state(&self) -> Vec<Tensor> {
        let mut s = vec![self.flat.shallow_clone()];
        s.extend(self.log_amax.iter().map(Tensor::shallow_clone));
        s
    }
}

/// `avg = d·avg + (1 − d)·x` in place.
fn blend(avg: &mut Tensor, x: &Tensor, d: &Tensor) {
    let _ = avg.g_mul_(d);
    let _ = avg.g_add_(&(x.detach() * (1.0 - d)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_upstream_model_ema() {
        let w = Tensor::from_slice(&[1.0f32, -2.0]);
        let mut ema = Ema::new(&w, None, 0.9999, 2000.0);
        // Upstream: d(1) = 0.9999 · (1 − e^(−1/2000)); ema = d·w0 + (1 − d)·w1.
        let w1 = Tensor::from_slice(&[3.0f32, 0.0]);
        ema.prepare();
        ema.update(&w1, None);
        let d = 0.9999 * (1.0 - (-1.0f64 / 2000.0).exp());
        let want = [d * 1.0 + (1.0 - d) * 3.0, d * -2.0];
        let got: Vec<f32> = Vec::try_from(&ema.flat).unwrap();
        for (g, w) in got.iter().zip(want) {
            assert!((*g as f64 - w).abs() < 1e-6, "{got:?} vs {want:?}");
        }
        // A second update uses d(2) and the average so far.
        ema.prepare();
        ema.update(&w1, None);
        let d2 = 0.9999 * (1.0 - (-2.0f64 / 2000.0).exp());
        let want2 = d2 * want[0] + (1.0 - d2) * 3.0;
        assert!((ema.flat.double_value(&[0]) - want2).abs() < 1e-5);
        assert_eq!(ema.updates, 2);
    }

    #[test]
    fn converges_to_constant_weights() {
        let w = Tensor::from_slice(&[0.0f32]);
        let mut ema = Ema::new(&w, None, 0.9, 1.0);
        let target = Tensor::from_slice(&[1.0f32]);
        for _ in 0..200 {
            ema.prepare();
            ema.update(&target, None);
        }
        assert!((ema.flat.double_value(&[0]) - 1.0).abs() < 1e-6);
    }
}
