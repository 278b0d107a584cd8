//! Our CUDA kernels (`src/native/*.cu`, compiled by build.rs when nvcc is there), each an
//! autograd op with the arithmetic of the ATen ops it replaces (tests/gpu_kernels.rs, run
//! by scripts/gpu_kernel_check.sh on a GPU, compares values and gradients):
//! * [`silu_fake_quant`]: SiLU and the INT8 fake-quant that follows it, one pass forward
//!   and one backward instead of four; SiLU's output is not kept for the backward.
//!   Bit-identical values and gradients (fp16 and fp32).
//! * [`avg_pool_2x2`]: ADown's 2x2 / stride-1 average pooling, where ATen's generic
//!   kernels run far below memory bandwidth. Identical values; identical fp32 gradients,
//!   fp16 gradients identical but for about 1 in 2 million one half-precision step away.
//! * [`learned_fake_quant`]: the learned-range fake quantization of the default recipe, one
//!   pass forward and one backward (with the range's gradient summed in the same pass)
//!   instead of a dozen fp32 ops each way. Identical values and input gradients; the range's
//!   gradient agrees to rounding (a sum in another order).
//! * [`bias_act`]: a convolution's bias, its activation (SiLU or none) and optionally the
//!   INT8 fake-quant that reads it, one pass each way; ATen adds a conv's bias as a
//!   broadcast that cannot vectorize, and sums its gradient in a pass of its own. Identical
//!   values and input gradients; the bias gradient agrees to rounding.
//! * [`distill_mse`]: one supervised layer's distillation loss and the student's gradient,
//!   one pass each way instead of about a dozen. The loss and gradient agree to rounding.
//!
//! Without the kernels, off CUDA, or for other dtypes and layouts, callers get `None`
//! and run the ATen ops.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tch::{Kind, Tensor};

static ENABLED: AtomicBool = AtomicBool::new(true);
static APPLIED: AtomicU64 = AtomicU64::new(0);

/// Turns our kernels off (`--no-fused-kernels`, `bench qat --unfused`) for comparisons.
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Whether this binary has the kernels.
pub fn available() -> bool {
    cfg!(yq_fused_kernels)
}

/// `fake_quant(silu(z), amax)` with the straight-through gradient, or `None` where the
/// fused kernel does not apply (no kernels, CPU tensor, not fp16/fp32, turned off).
pub fn silu_fake_quant(z: &Tensor, amax: f64) -> Option<Tensor> {
    if !usable(z) {
        return None;
    }
    let y = imp::apply(z, amax);
    if y.is_some() {
        APPLIED.fetch_add(1, Ordering::Relaxed);
    }
    y
}

/// `fake_quant_learned(x, amax)` (LSQ gradient to the one-element fp32 `amax`), or `None`
/// where the kernel does not apply (no kernels, CPU tensors, not fp16/fp32, turned off).
pub fn learned_fake_quant(x: &Tensor, amax: &Tensor) -> Option<Tensor> {
    if !usable(x) {
        return None;
    }
    if amax.numel() != 1 || amax.kind() != Kind::Float || !amax.device().is_cuda() {
        return None;
    }
    let y = imp::learned(x, amax);
    if y.is_some() {
        APPLIED.fetch_add(1, Ordering::Relaxed);
    }
    y
}

/// The activation a [`bias_act`] epilogue applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Epilogue {
    Identity,
    SiLU,
}

fn usable(x: &Tensor) -> bool {
    available() && ENABLED.load(Ordering::Relaxed) && x.device().is_cuda() && matches!(x.kind(), Kind::Half | Kind::Float)
}

/// Whether [`bias_act`] will take a convolution of input `x` with this bias: the caller then
/// runs the convolution without its bias.
pub fn bias_act_applies(x: &Tensor, bias: &Tensor) -> bool {
    usable(x) && bias.kind() == x.kind() && bias.device() == x.device() && bias.dim() == 1 && x.dim() == 4
}

/// `act(z + bias)` per channel of the 4-D `z` (a convolution's output without its bias),
/// then `fake_quant(·, amax)` with the straight-through gradient when `amax` is given, as one
/// autograd op (gradients to `z` and `bias`); `None` where the kernel does not apply.
pub fn bias_act(z: &Tensor, bias: &Tensor, act: Epilogue, amax: Option<f64>) -> Option<Tensor> {
    if !bias_act_applies(z, bias) || bias.size()[0] != z.size()[1] {
        return None;
    }
    let act = match act {
        Epilogue::Identity => 0,
        Epilogue::SiLU => 1,
    };
    let y = imp::bias_act(z, bias, act, amax.unwrap_or(0.0));
    if y.is_some() {
        APPLIED.fetch_add(1, Ordering::Relaxed);
    }
    y
}

/// `Σ_images mean_(C,H,W) (student − teacher)²` as a 0-dim fp32 tensor, with the gradient
/// to `student` only; `None` where the kernel does not apply.
pub fn distill_mse(student: &Tensor, teacher: &Tensor) -> Option<Tensor> {
    if !usable(student) || student.kind() != teacher.kind() || student.size() != teacher.size() || student.dim() < 2 {
        return None;
    }
    let y = imp::distill_mse(student, teacher);
    if y.is_some() {
        APPLIED.fetch_add(1, Ordering::Relaxed);
    }
    y
}

/// How many times the fused op ran (or was recorded into a CUDA graph) in this process.
pub fn applied() -> u64 {
    APPLIED.load(Ordering::Relaxed)
}

/// ADown's `avg_pool2d(x, 2, 1, 0)` (count_include_pad) for a contiguous NCHW or
/// channels-last fp16/fp32 CUDA tensor of at least 2x2 (the result keeps the layout);
/// `None` elsewhere.
pub fn avg_pool_2x2(x: &Tensor) -> Option<Tensor> {
    let s = x.size();
    if !usable(x) {
        return None;
    }
    if s.len() != 4 || s[2] < 2 || s[3] < 2 || !(x.is_contiguous() || is_channels_last(x)) {
        return None;
    }
    imp::pool(x)
}

/// Whether a 4-D tensor is dense in channels-last order (strides `[H·W·C, 1, W·C, C]`).
pub fn is_channels_last(x: &Tensor) -> bool {
    let (s, st) = (x.size(), x.stride());
    s.len() == 4 && st[1] == 1 && st[3] == s[1] && st[2] == s[1] * s[3] && st[0] == s[1] * s[2] * s[3]
}

#[cfg(yq_fused_kernels)]
mod imp {
    use std::ffi::{c_char, c_void};
    use tch::Tensor;

    extern "C" {
        fn yq_silu_fake_quant(x: *mut c_void, amax: f64, err: *mut *mut c_char) -> *mut c_void;
        fn yq_avg_pool_2x2(x: *mut c_void, err: *mut *mut c_char) -> *mut c_void;
        fn yq_learned_fake_quant(x: *mut c_void, amax: *mut c_void, err: *mut *mut c_char) -> *mut c_void;
        fn yq_bias_act(z: *mut c_void, bias: *mut c_void, act: i32, amax: f64, err: *mut *mut c_char) -> *mut c_void;
        fn yq_distill_mse(s: *mut c_void, t: *mut c_void, err: *mut *mut c_char) -> *mut c_void;
    }

    /// Takes the op's new at::Tensor*, or panics with its message, as tch's own ops do
    /// on a libtorch error (QAT catches it at capture).
    fn take(y: *mut c_void, err: *mut c_char, what: &str) -> Tensor {
        if y.is_null() {
            // SAFETY: the shim strdup'ed the message; it is taken once, here.
            let msg = unsafe { crate::util::take_c_message(err) }.unwrap_or_default();
            panic!("{what}: {msg}");
        }
        // SAFETY: a live at::Tensor* that nobody else owns.
        unsafe { Tensor::from_ptr(y.cast()) }
    }

    pub fn apply(z: &Tensor, amax: f64) -> Option<Tensor> {
        let mut err: *mut c_char = std::ptr::null_mut();
        // SAFETY: `z` is a live tch tensor (an at::Tensor*); the shim catches C++ exceptions.
        let y = unsafe { yq_silu_fake_quant(z.as_ptr() as *mut c_void, amax, &mut err) };
        Some(take(y, err, "silu fake-quant op"))
    }

    pub fn pool(x: &Tensor) -> Option<Tensor> {
        let mut err: *mut c_char = std::ptr::null_mut();
        // SAFETY: as above.
        let y = unsafe { yq_avg_pool_2x2(x.as_ptr() as *mut c_void, &mut err) };
        Some(take(y, err, "avg pool 2x2 op"))
    }

    pub fn learned(x: &Tensor, amax: &Tensor) -> Option<Tensor> {
        let mut err: *mut c_char = std::ptr::null_mut();
        // SAFETY: as above; both are live tch tensors.
        let y = unsafe { yq_learned_fake_quant(x.as_ptr() as *mut c_void, amax.as_ptr() as *mut c_void, &mut err) };
        Some(take(y, err, "learned fake-quant op"))
    }

    pub fn bias_act(z: &Tensor, bias: &Tensor, act: i32, amax: f64) -> Option<Tensor> {
        let mut err: *mut c_char = std::ptr::null_mut();
        // SAFETY: as above; both are live tch tensors.
        let y = unsafe { yq_bias_act(z.as_ptr() as *mut c_void, bias.as_ptr() as *mut c_void, act, amax, &mut err) };
        Some(take(y, err, "bias-act op"))
    }

    pub fn distill_mse(s: &Tensor, t: &Tensor) -> Option<Tensor> {
        let mut err: *mut c_char = std::ptr::null_mut();
        // SAFETY: as above; both are live tch tensors.
        let y = unsafe { yq_distill_mse(s.as_ptr() as *mut c_void, t.as_ptr() as *mut c_void, &mut err) };
        Some(take(y, err, "distill mse op"))
    }
}

#[cfg(not(yq_fused_kernels))]
mod imp {
    use tch::Tensor;

    pub fn apply(_: &Tensor, _: f64) -> Option<Tensor> {
        None
    }

    pub fn pool(_: &Tensor) -> Option<Tensor> {
        None
    }

    pub fn learned(_: &Tensor, _: &Tensor) -> Option<Tensor> {
        None
    }

    pub fn bias_act(_: &Tensor, _: &Tensor, _: i32, _: f64) -> Option<Tensor> {
        None
    }

    pub fn distill_mse(_: &Tensor, _: &Tensor) -> Option<Tensor> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_tensors_take_the_unfused_path() {
        let z = Tensor::from_slice(&[0.5f32, -1.0, 3.0]);
        assert!(silu_fake_quant(&z, 1.0).is_none());
        assert!(avg_pool_2x2(&Tensor::zeros([1, 1, 4, 4], (Kind::Float, tch::Device::Cpu))).is_none());
        assert!(learned_fake_quant(&z, &Tensor::from(1.0f32)).is_none());
        let z4 = z.reshape([1, 3, 1, 1]);
        assert!(!bias_act_applies(&z4, &z));
        assert!(bias_act(&z4, &z, Epilogue::SiLU, Some(1.0)).is_none());
        assert!(distill_mse(&z4, &z4).is_none());
    }
}
