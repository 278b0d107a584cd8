//! Signed 8-bit symmetric fake quantization (pytorch-quantization's `fake_tensor_quant`):
//! `s = amax/127`, `q = clamp(round_half_even(x/s), -128, 127)`, `x̂ = q·s`;
//! backward is the straight-through estimator, passing the gradient where |x| <= amax.
//!
//! The forward value comes from ATen's native fake-quant kernel (one pass, fp16
//! on CUDA). Its own backward mask differs from the recipe at the edges, so when
//! a gradient is needed the value is grafted onto `clamp(x, -amax, amax)`, whose
//! gradient is exactly the recipe's mask.

use tch::{Kind, Tensor};

/// amax at or below this is treated as this, so nothing divides by zero.
pub const TINY_AMAX: f64 = 1e-8;

/// A quantizer's parameters on the device, derived once from its amax.
#[derive(Debug)]
pub enum QParams {
    PerTensor { amax: f64 },
    PerChannel { scale: Tensor, zero: Tensor, amax: Tensor },
}

impl QParams {
    pub fn per_tensor(amax: f64) -> QParams {
        QParams::PerTensor { amax: amax.max(TINY_AMAX) }
    }

    /// From a (C,) amax of a conv weight's output channels.
    pub fn per_channel(amax: &Tensor) -> QParams {
        let amax = amax.to_kind(Kind::Float).clamp_min(TINY_AMAX);
        let zero = amax.zeros_like().to_kind(Kind::Int);
        QParams::PerChannel { scale: &amax / 127.0, zero, amax: amax.view([-1, 1, 1, 1]) }
    }

    pub fn apply(&self, x: &Tensor) -> Tensor {
        match self {
            QParams::PerTensor { amax } => {
                let q = x.fake_quantize_per_tensor_affine(amax / 127.0, 0, -128, 127);
                graft(x, q, || x.clamp(-amax, *amax))
            }
            QParams::PerChannel { scale, zero, amax } => {
                let q = x.fake_quantize_per_channel_affine(scale, zero, 0, -128, 127);
                graft(x, q, || {
                    let a = amax.to_kind(x.kind());
                    x.clamp_tensor(Some(-&a), Some(a))
                })
            }
        }
    }
}

/// Per-tensor fake quantization for QAT: the native kernel's value, the gradient where
/// |x| <= amax. With the C++ op (`src/native/train_fake_quant.cpp`, built by build.rs) that is one
/// kernel forward and one backward; without it, clamp then fake-quant (same gradient,
/// the value differs only for x in [−128.5, −127.5) steps, which clamp moves to −127).
pub fn train_fake_quant(x: &Tensor, amax: f64) -> Tensor {
    #[cfg(yq_train_fake_quant)]
    {
        native_op::apply(x, amax)
    }
    #[cfg(not(yq_train_fake_quant))]
    {
        x.clamp(-amax, amax).fake_quantize_per_tensor_affine(amax / 127.0, 0, -128, 127)
    }
}

#[cfg(yq_train_fake_quant)]
mod native_op {
    use std::ffi::{c_char, c_void};
    use tch::Tensor;

    extern "C" {
        fn yq_train_fake_quant(x: *mut c_void, amax: f64, err: *mut *mut c_char) -> *mut c_void;
    }

    pub fn apply(x: &Tensor, amax: f64) -> Tensor {
        let mut err: *mut c_char = std::ptr::null_mut();
        // SAFETY: `x` is a live tch tensor (an at::Tensor*); the op returns a new
        // at::Tensor* that tch takes ownership of, or null with a strdup'ed message.
        let y = unsafe { yq_train_fake_quant(x.as_ptr() as *mut c_void, amax, &mut err) };
        if y.is_null() {
            let msg = unsafe { crate::util::take_c_message(err) }.unwrap_or_default();
            // Like tch's own ops: a libtorch error is a panic (QAT catches it at capture).
            panic!("fake-quant op: {msg}");
        }
        unsafe { Tensor::from_ptr(y.cast()) }
    }
}

/// `q`'s value with `clipped`'s gradient (only built when `x` needs a gradient).
fn graft(x: &Tensor, q: Tensor, clipped: impl FnOnce() -> Tensor) -> Tensor {
    if !x.requires_grad() {
        return q;
    }
    let c = clipped();
    &c + (q - &c).detach()
}

/// Per-output-channel amax of a conv weight (C, ...): max |w| over the other axes.
pub fn channel_amax(w: &Tensor) -> Tensor {
    let c = w.size()[0];
    w.detach().abs().reshape([c, -1]).amax([1], false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: &[f32]) -> Tensor {
        Tensor::from_slice(v)
    }

    fn vals(x: &Tensor) -> Vec<f32> {
        Vec::<f32>::try_from(x.reshape([-1])).unwrap()
    }

    #[test]
    fn rounds_half_even_and_clamps() {
        // amax 127 → step 1: plain rounding with ties to even, clamp to [-128, 127].
        let x = t(&[0.5, 1.5, 2.5, -0.5, -1.5, 126.6, 127.4, 200.0, -127.9, -128.4, -300.0]);
        let y = QParams::per_tensor(127.0).apply(&x);
        assert_eq!(vals(&y), [0.0, 2.0, 2.0, -0.0, -2.0, 127.0, 127.0, 127.0, -128.0, -128.0, -128.0]);
    }

    #[test]
    fn scales_by_amax() {
        // amax 2 → step 2/127.
        let step = 2.0f32 / 127.0;
        let x = t(&[1.0, -1.0, 0.01, 3.0, 0.6 * step]);
        let y = vals(&QParams::per_tensor(2.0).apply(&x));
        assert!((y[0] - 64.0 * step).abs() < 1e-6, "{y:?}"); // 63.5 steps: the tie goes to even 64 (or the float neighbour)
        assert!((y[1] + 64.0 * step).abs() < 1e-6 || (y[1] + 63.0 * step).abs() < 1e-6);
        assert!((y[2] - step).abs() < 1e-6); // 0.635 steps → 1
        assert!((y[3] - 2.0).abs() < 1e-6); // clamped to 127 steps = amax
        assert!((y[4] - step).abs() < 1e-6);
    }

    #[test]
    fn per_channel_uses_each_rows_amax() {
        let w = t(&[1.0, 0.3, -4.0, 1.0]).view([2, 2, 1, 1]);
        let amax = channel_amax(&w);
        assert_eq!(vals(&amax), [1.0, 4.0]);
        let y = vals(&QParams::per_channel(&amax).apply(&w));
        assert!((y[0] - 1.0).abs() < 1e-6);
        assert!((y[1] - 38.0 / 127.0).abs() < 1e-6); // 0.3·127 = 38.1 → 38
        assert!((y[2] + 4.0).abs() < 1e-6);
        assert!((y[3] - 32.0 * 4.0 / 127.0).abs() < 1e-6); // 1·127/4 = 31.75 → 32
    }

    #[test]
    fn straight_through_gradient_is_clipped_at_amax() {
        let x = t(&[0.5, -0.99, 1.0, 1.2, -1.0, -1.3, 1.003]).set_requires_grad(true);
        let y = QParams::per_tensor(1.0).apply(&x);
        assert!((vals(&y)[0] - 64.0 / 127.0).abs() < 1e-6);
        y.sum(Kind::Float).backward();
        // |x| <= amax passes; 1.003 rounds inside the int8 range yet is beyond amax: blocked.
        assert_eq!(vals(&x.grad()), [1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0]);
    }

    #[test]
    fn per_channel_gradient_is_clipped_per_channel() {
        let w = t(&[0.5, 2.0, 0.5, 2.0]).view([2, 2, 1, 1]).set_requires_grad(true);
        let p = QParams::per_channel(&t(&[1.0, 4.0]));
        p.apply(&w).sum(Kind::Float).backward();
        assert_eq!(vals(&w.grad()), [1.0, 0.0, 1.0, 1.0]);
    }

    #[test]
    fn training_op_takes_the_reference_value_and_the_recipe_gradient() {
        for kind in [Kind::Float, Kind::Double] {
            // amax 1.27 → step 0.01; −1.2851 rounds to −128 steps (the reference's value, no clamp
            // first); 1.27 passes the gradient (|x| <= amax), 1.2701 and −1.2851 do not.
            let x = t(&[0.014, -0.026, 1.27, 1.2701, -1.2851, 3.0]).to_kind(kind).set_requires_grad(true);
            let y = train_fake_quant(&x, 1.27);
            let got = vals(&y.to_kind(Kind::Float));
            #[cfg(yq_train_fake_quant)]
            let want = [0.01f32, -0.03, 1.27, 1.27, -1.28, 1.27];
            #[cfg(not(yq_train_fake_quant))]
            let want = [0.01f32, -0.03, 1.27, 1.27, -1.27, 1.27];
            for (g, w) in got.iter().zip(want) {
                assert!((g - w).abs() < 1e-6, "{kind:?}: {got:?}");
            }
            y.sum(Kind::Float).backward();
            assert_eq!(vals(&x.grad().to_kind(Kind::Float)), [1.0, 1.0, 1.0, 0.0, 0.0, 0.0], "{kind:?}");
        }
    }

    #[test]
    fn training_op_mask_is_exact_in_half_precision() {
        // amax between two fp16 values: the largest fp16 at or below it passes, the next does not.
        let amax = 1.0004; // fp16 neighbours 1.0 and 1.000977
        let x = t(&[1.0, 1.000977, -1.0, -1.000977]).to_kind(Kind::Half).set_requires_grad(true);
        train_fake_quant(&x, amax).to_kind(Kind::Float).sum(Kind::Float).backward();
        assert_eq!(vals(&x.grad().to_kind(Kind::Float)), [1.0, 0.0, 1.0, 0.0]);
    }

    #[test]
    fn zero_amax_does_not_divide_by_zero() {
        let y = vals(&QParams::per_tensor(0.0).apply(&t(&[0.0, 1.0])));
        assert!(y.iter().all(|v| v.is_finite()));
    }
}
