//! Where a piece of GPU work spends its time, by kernel family: libtorch's Kineto
//! profiler (CUPTI) through `src/native/kernel_profile.cpp`. For `bench qat`.

use anyhow::Result;

/// One kernel launch: its name and GPU time.
#[derive(Clone, Debug)]
pub struct Kernel {
    pub name: String,
    pub ns: u64,
}

/// The family a kernel belongs to, from its name (cuDNN, cuBLAS/CUTLASS, ATen and ours).
pub fn family(name: &str) -> &'static str {
    let n = name.to_ascii_lowercase();
    let any = |keys: &[&str]| keys.iter().any(|k| n.contains(k));
    if any(&["silu_fq", "fake_quant", "fakequant", "hardtanh", "lfq_"]) {
        "fake-quant"
    } else if any(&["bias_act"]) {
        // Ours: a conv's bias + activation (+ the fake-quant that reads it), one pass.
        "conv epilogue"
    } else if any(&["distill_mse"]) {
        "loss"
    } else if any(&["pool"]) {
        "pooling"
    } else if any(&["nchwtonhwc", "nhwctonchw", "transpose", "copy", "cat_", "catarray"]) {
        // Before conv: cuDNN's own layout transposes carry its name.
        "copy/layout"
    } else if any(&["conv", "cudnn", "gemm", "xmma", "cutlass", "implicit", "winograd", "fprop", "dgrad", "wgrad", "sm80_", "sm90_", "cijk"]) {
        "conv"
    } else if any(&["reduce", "norm", "softmax", "sum", "mean", "amax"]) {
        "reduction"
    } else if any(&["elementwise", "vectorized", "unrolled", "pointwise", "silu", "sigmoid", "add", "mul"]) {
        "elementwise"
    } else {
        "other"
    }
}

/// Runs `work` under the profiler and returns the kernels it launched.
pub fn profile(work: impl FnOnce()) -> Result<Vec<Kernel>> {
    imp::profile(work)
}

#[cfg(yq_cuda_graph)]
mod imp {
    use super::Kernel;
    use anyhow::{anyhow, Result};
    use std::ffi::{c_char, c_int, CStr};

    extern "C" {
        fn yq_profile_start(err: *mut *mut c_char) -> c_int;
        fn yq_profile_stop(err: *mut *mut c_char) -> *mut c_char;
        fn yq_profile_free(p: *mut c_char);
    }

    fn error(err: *mut c_char, what: &str) -> anyhow::Error {
        // SAFETY: the shim strdup'ed the message (or left it null); taken once, here.
        let msg = unsafe { crate::util::take_c_message(err) }.unwrap_or_else(|| "failed".into());
        anyhow!("{what}: {msg}")
    }

    pub fn profile(work: impl FnOnce()) -> Result<Vec<Kernel>> {
        let mut err = std::ptr::null_mut();
        // SAFETY: the shim catches C++ exceptions and reports them through `err`.
        if unsafe { yq_profile_start(&mut err) } != 0 {
            return Err(error(err, "starting the kernel profiler"));
        }
        work();
        // SAFETY: as above; the returned string is freed by the shim's own free.
        let text = unsafe { yq_profile_stop(&mut err) };
        if text.is_null() {
            return Err(error(err, "stopping the kernel profiler"));
        }
        let lines = unsafe { CStr::from_ptr(text) }.to_string_lossy().into_owned();
        unsafe { yq_profile_free(text) };
        Ok(lines
            .lines()
            .filter_map(|l| {
                let (ns, name) = l.split_once('\t')?;
                Some(Kernel { name: name.to_string(), ns: ns.parse().ok()? })
            })
            .collect())
    }
}

#[cfg(not(yq_cuda_graph))]
mod imp {
    use super::Kernel;
    use anyhow::{bail, Result};

    pub fn profile(_: impl FnOnce()) -> Result<Vec<Kernel>> {
        bail!("this build has no CUDA shims (no CUDA headers at build time): no kernel profile")
    }
}

#[cfg(test)]
mod tests {
    use super::family;

    #[test]
    fn kernel_names_fall_in_their_families() {
        assert_eq!(family("sm90_xmma_fprop_implicit_gemm_f16f16_f16f32_f32_nhwckrsc_nhwc"), "conv");
        assert_eq!(family("void cudnn::engines_precompiled::nchwToNhwcKernel<__half>"), "copy/layout");
        assert_eq!(family("void (anonymous namespace)::silu_fq_forward<__half>(...)"), "fake-quant");
        assert_eq!(family("void at::native::(anonymous namespace)::fake_quantize_tensor_cachemask_kernel_cuda"), "fake-quant");
        assert_eq!(family("void at::native::vectorized_elementwise_kernel<4, at::native::CUDAFunctor_add<c10::Half>>"), "elementwise");
        assert_eq!(family("void at::native::reduce_kernel<512, 1, at::native::ReduceOp<float>>"), "reduction");
        assert_eq!(family("void (anonymous namespace)::lfq_backward<__half, 8>(...)"), "fake-quant");
        assert_eq!(family("void (anonymous namespace)::bias_act_forward_nchw<__half, 8, 1, true>(...)"), "conv epilogue");
        assert_eq!(family("void (anonymous namespace)::distill_mse_backward<__half, 8>(...)"), "loss");
        assert_eq!(family("void at::native::(anonymous namespace)::max_pool_forward_nchw<c10::Half, int>"), "pooling");
        assert_eq!(family("void (anonymous namespace)::avg_pool_2x2_forward<__half>(...)"), "pooling");
    }
}
