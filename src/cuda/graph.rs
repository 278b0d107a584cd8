//! CUDA graphs through `graph.cpp` (libtorch's `at::cuda::CUDAGraph`, which tch does not
//! wrap): record a piece of GPU work once, replay it with one launch. The QAT step issues
//! about 5 000 kernels; replaying them as a graph takes the host out of the loop.
//!
//! Use: [`CudaGraph::new`] (a side stream becomes current), warm up, [`CudaGraph::begin`],
//! record, [`CudaGraph::end`]; then [`CudaGraph::replay`] on the original stream. The
//! recorded work must not synchronise with the host and must read and write the same
//! tensors on every replay.

use anyhow::{anyhow, bail, Result};

#[cfg(yq_cuda_graph)]
mod ffi {
    use std::ffi::{c_char, c_int, c_void};
    extern "C" {
        pub fn yq_graph_new(device: c_int, err: *mut *mut c_char) -> *mut c_void;
        pub fn yq_graph_capture_begin(g: *mut c_void, err: *mut *mut c_char) -> c_int;
        pub fn yq_graph_capture_end(g: *mut c_void, err: *mut *mut c_char) -> c_int;
        pub fn yq_graph_replay(g: *mut c_void, err: *mut *mut c_char) -> c_int;
        pub fn yq_graph_free(g: *mut c_void);
        pub fn yq_empty_cache(err: *mut *mut c_char) -> c_int;
        pub fn yq_free_str(s: *mut c_char);
    }
}

pub struct CudaGraph {
    ptr: *mut std::ffi::c_void,
    capturing: bool,
    captured: bool,
}

impl CudaGraph {
    /// Whether this build has the shim (it needs the CUDA runtime headers at build time).
    pub fn available() -> bool {
        cfg!(yq_cuda_graph)
    }

    /// A graph for CUDA device `device`; its side stream is current until [`CudaGraph::end`].
    pub fn new(device: usize) -> Result<CudaGraph> {
        #[cfg(yq_cuda_graph)]
        {
            let mut err = std::ptr::null_mut();
            // SAFETY: the shim returns null and sets `err` on failure.
            let ptr = unsafe { ffi::yq_graph_new(device as i32, &mut err) };
            if ptr.is_null() {
                return Err(take_error(err, "creating a CUDA graph"));
            }
            Ok(CudaGraph { ptr, capturing: false, captured: false })
        }
        #[cfg(not(yq_cuda_graph))]
        {
            let _ = device;
            bail!("this build of yolo-qat has no CUDA graph support (no CUDA headers when it was built)")
        }
    }

    /// Hands the caching allocator's unused device memory back to the driver.
    pub fn empty_cache() -> Result<()> {
        #[cfg(yq_cuda_graph)]
        {
            let mut err = std::ptr::null_mut();
            // SAFETY: the shim catches C++ exceptions and reports them through `err`.
            if unsafe { ffi::yq_empty_cache(&mut err) } != 0 {
                return Err(take_error(err, "emptying the CUDA cache"));
            }
        }
        Ok(())
    }

    pub fn begin(&mut self) -> Result<()> {
        self.call(|p, e| unsafe_call(ffi_begin, p, e), "starting a CUDA graph capture")?;
        self.capturing = true;
        Ok(())
    }

    /// Ends the capture; the original stream is current again.
    pub fn end(&mut self) -> Result<()> {
        self.capturing = false;
        self.call(|p, e| unsafe_call(ffi_end, p, e), "ending a CUDA graph capture")?;
        self.captured = true;
        Ok(())
    }

    pub fn replay(&self) -> Result<()> {
        if !self.captured {
            bail!("replay of a CUDA graph that was never captured");
        }
        self.call(|p, e| unsafe_call(ffi_replay, p, e), "replaying a CUDA graph")
    }

    fn call(&self, f: impl FnOnce(*mut std::ffi::c_void, *mut *mut std::ffi::c_char) -> i32, what: &str) -> Result<()> {
        let mut err = std::ptr::null_mut();
        match f(self.ptr, &mut err) {
            0 => Ok(()),
            _ => Err(take_error(err, what)),
        }
    }
}

type ShimFn = unsafe extern "C" fn(*mut std::ffi::c_void, *mut *mut std::ffi::c_char) -> i32;

fn unsafe_call(f: ShimFn, p: *mut std::ffi::c_void, e: *mut *mut std::ffi::c_char) -> i32 {
    // SAFETY: `p` is a live graph from yq_graph_new; the shim catches C++ exceptions.
    unsafe { f(p, e) }
}

#[cfg(yq_cuda_graph)]
use ffi::{yq_graph_capture_begin as ffi_begin, yq_graph_capture_end as ffi_end, yq_graph_replay as ffi_replay};

#[cfg(not(yq_cuda_graph))]
unsafe extern "C" fn ffi_begin(_: *mut std::ffi::c_void, _: *mut *mut std::ffi::c_char) -> i32 {
    1
}
#[cfg(not(yq_cuda_graph))]
use ffi_begin as ffi_end;
#[cfg(not(yq_cuda_graph))]
use ffi_begin as ffi_replay;

fn take_error(err: *mut std::ffi::c_char, what: &str) -> anyhow::Error {
    if err.is_null() {
        return anyhow!("{what}: failed");
    }
    // SAFETY: the shim allocated a NUL-terminated string; we free it once.
    let msg = unsafe { std::ffi::CStr::from_ptr(err) }.to_string_lossy().lines().next().unwrap_or("").to_string();
    #[cfg(yq_cuda_graph)]
    unsafe {
        ffi::yq_free_str(err)
    };
    anyhow!("{what}: {msg}")
}

impl Drop for CudaGraph {
    fn drop(&mut self) {
        #[cfg(yq_cuda_graph)]
        {
            if self.capturing {
                let _ = self.end();
            }
            // SAFETY: `ptr` came from yq_graph_new and is freed once.
            unsafe { ffi::yq_graph_free(self.ptr) };
        }
    }
}
