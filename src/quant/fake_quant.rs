//! Signed 8-bit symmetric fake quantization (recipe §3):
//! `scale = 127/amax`, `q = clamp(round_half_even(x*scale), -128, 127)`, `x̂ = q/scale`;
//! backward is the straight-through estimator, passing the gradient where |x| <= amax.

use tch::Tensor;

/// amax at or below this is treated as this, so nothing divides by zero.
pub const TINY_AMAX: f64 = 1e-8;

/// Fake-quantizes `x` with `amax` broadcastable to it (a scalar, or (C,1,1,1) per channel).
pub fn fake_quant(x: &Tensor, amax: &Tensor) -> Tensor {
    let amax = amax.to_kind(x.kind()).clamp_min(TINY_AMAX);
    let scale = 127.0 / &amax;
    let q = (x.detach() * &scale).round().clamp(-128.0, 127.0) / &scale;
    if !x.requires_grad() {
        return q;
    }
    // Value of q, gradient of x masked to |x| <= amax.
    let mask = x.detach().abs().le_tensor(&amax).to_kind(x.kind());
    let pass = x * &mask;
    &pass + (q - pass.detach())
}

/// Per-output-channel amax of a conv weight (C, ...): max |w| over the other axes.
pub fn channel_amax(w: &Tensor) -> Tensor {
    let c = w.size()[0];
    w.detach().abs().reshape([c, -1]).amax([1], false)
}

/// `amax` of a per-channel quantizer shaped to broadcast over a (C, I, K, K) weight.
pub fn per_channel_view(amax: &Tensor) -> Tensor {
    amax.view([-1, 1, 1, 1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Kind, Device};

    fn t(v: &[f32]) -> Tensor {
        Tensor::from_slice(v)
    }

    #[test]
    fn rounds_half_even_and_clamps() {
        // amax 127 → scale 1: plain rounding with ties to even, clamp to [-128, 127].
        let x = t(&[0.5, 1.5, 2.5, -0.5, -1.5, 126.6, 127.4, 200.0, -127.9, -128.4, -300.0]);
        let y = fake_quant(&x, &Tensor::from(127.0f32));
        let want = [0.0, 2.0, 2.0, -0.0, -2.0, 127.0, 127.0, 127.0, -128.0, -128.0, -128.0];
        assert_eq!(Vec::<f32>::try_from(&y).unwrap(), want);
    }

    #[test]
    fn scales_by_amax() {
        // amax 2 → step 2/127.
        let x = t(&[1.0, -1.0, 0.01, 3.0]);
        let y = Vec::<f32>::try_from(&fake_quant(&x, &Tensor::from(2.0f32))).unwrap();
        let step = 2.0f32 / 127.0;
        assert!((y[0] - 64.0 * step).abs() < 1e-6, "{y:?}"); // 63.5 rounds to 64 (even)
        assert!((y[1] + 64.0 * step).abs() < 1e-6);
        assert!((y[2] - step).abs() < 1e-6); // 0.635 → 1
        assert!((y[3] - 2.0).abs() < 1e-6); // clamped to 127 steps = amax
    }

    #[test]
    fn per_channel_uses_each_rows_amax() {
        let w = Tensor::from_slice(&[1.0f32, 0.5, -4.0, 2.0]).view([2, 2, 1, 1]);
        let amax = channel_amax(&w);
        assert_eq!(Vec::<f32>::try_from(&amax).unwrap(), [1.0, 4.0]);
        let y = fake_quant(&w, &per_channel_view(&amax)).view([-1]);
        let y = Vec::<f32>::try_from(&y).unwrap();
        assert!((y[1] - 64.0 / 127.0).abs() < 1e-6); // 0.5*127 = 63.5 → 64
        assert!((y[3] - 64.0 * 4.0 / 127.0).abs() < 1e-6); // 2*127/4 = 63.5 → 64
        assert_eq!(y[2], -4.0);
    }

    #[test]
    fn straight_through_gradient_is_clipped_at_amax() {
        let x = t(&[0.5, -0.99, 1.0, 1.2, -1.0, -1.3]).set_requires_grad(true);
        let y = fake_quant(&x, &Tensor::from(1.0f32));
        y.sum(Kind::Float).backward();
        let g = Vec::<f32>::try_from(&x.grad()).unwrap();
        assert_eq!(g, [1.0, 1.0, 1.0, 0.0, 1.0, 0.0]);
    }

    #[test]
    fn zero_amax_does_not_divide_by_zero() {
        let y = fake_quant(&t(&[0.0, 1.0]), &Tensor::zeros([], (Kind::Float, Device::Cpu)));
        let y = Vec::<f32>::try_from(&y).unwrap();
        assert!(y.iter().all(|v| v.is_finite()));
    }
}
