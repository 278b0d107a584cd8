//! SiLU and the INT8 fake-quant that follows it as one CUDA op (`src/native/silu_fake_quant.cu`,
//! compiled by build.rs when nvcc is there): one pass forward and one backward instead of
//! four, and SiLU's output is not kept for the backward. Bit-identical to SiLU followed by
//! [`train_fake_quant`](super::fake_quant::train_fake_quant) (scripts/gpu_kernel_check.sh
//! compares values and gradients on a GPU). Without the kernels, or off CUDA, callers
//! get `None` and run the two ops.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tch::{Kind, Tensor};

static ENABLED: AtomicBool = AtomicBool::new(true);
static APPLIED: AtomicU64 = AtomicU64::new(0);

/// Turns the fused op off (`--no-fused-kernels`, `bench qat --unfused`) for comparisons.
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Whether this binary has the fused kernels.
pub fn available() -> bool {
    cfg!(yq_fused_kernels)
}

/// `fake_quant(silu(z), amax)` with the straight-through gradient, or `None` where the
/// fused kernel does not apply (no kernels, CPU tensor, not fp16/fp32, turned off).
pub fn silu_fake_quant(z: &Tensor, amax: f64) -> Option<Tensor> {
    if !available() || !ENABLED.load(Ordering::Relaxed) || !z.device().is_cuda() || !matches!(z.kind(), Kind::Half | Kind::Float) {
        return None;
    }
    let y = imp::apply(z, amax);
    if y.is_some() {
        APPLIED.fetch_add(1, Ordering::Relaxed);
    }
    y
}

/// How many times the fused op ran (or was recorded into a CUDA graph) in this process.
pub fn applied() -> u64 {
    APPLIED.load(Ordering::Relaxed)
}

#[cfg(yq_fused_kernels)]
mod imp {
    use std::ffi::{c_char, c_void};
    use tch::Tensor;

    extern "C" {
        fn yq_silu_fake_quant(x: *mut c_void, amax: f64, err: *mut *mut c_char) -> *mut c_void;
    }

    pub fn apply(z: &Tensor, amax: f64) -> Option<Tensor> {
        let mut err: *mut c_char = std::ptr::null_mut();
        // SAFETY: `z` is a live tch tensor (an at::Tensor*); the op returns a new
        // at::Tensor* that tch takes ownership of, or null with a strdup'ed message.
        let y = unsafe { yq_silu_fake_quant(z.as_ptr() as *mut c_void, amax, &mut err) };
        if y.is_null() {
            let msg = unsafe { crate::util::take_c_message(err) }.unwrap_or_default();
            // Like tch's own ops: a libtorch error is a panic (QAT catches it at capture).
            panic!("silu fake-quant op: {msg}");
        }
        Some(unsafe { Tensor::from_ptr(y.cast()) })
    }
}

#[cfg(not(yq_fused_kernels))]
mod imp {
    use tch::Tensor;

    pub fn apply(_: &Tensor, _: f64) -> Option<Tensor> {
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
    }
}
