//! CUDA graphs through `src/native/cuda_graph.cpp` (libtorch's `at::cuda::CUDAGraph`, which tch does not
//! wrap): record a piece of GPU work once, replay it with one launch. The QAT step issues
//! about 5 000 kernels; replaying them as a graph takes the host out of the loop.
//!
//! Use: [`CudaGraph::new`] (a side stream becomes current), warm up, [`CudaGraph::begin`],
//! record, [`CudaGraph::end`]; then [`CudaGraph::replay`] on the original stream. The
//! recorded work must not synchronise with the host and must read and write the same
//! tensors on every replay. Builds without the CUDA headers get a stub whose `new` fails.

pub use imp::CudaGraph;

#[cfg(yq_cuda_graph)]
mod imp {
    use anyhow::{anyhow, bail, Result};
    use std::ffi::{c_char, c_int, c_void};

    extern "C" {
        fn yq_graph_new(device: c_int, err: *mut *mut c_char) -> *mut c_void;
        fn yq_graph_capture_begin(g: *mut c_void, err: *mut *mut c_char) -> c_int;
        fn yq_graph_capture_end(g: *mut c_void, err: *mut *mut c_char) -> c_int;
        fn yq_graph_replay(g: *mut c_void, err: *mut *mut c_char) -> c_int;
        fn yq_graph_free(g: *mut c_void);
        fn yq_empty_cache(err: *mut *mut c_char) -> c_int;
    }

    pub struct CudaGraph {
        ptr: *mut c_void,
        capturing: bool,
        captured: bool,
    }

    /// The shim's error string as an error (`what` failed: message), freeing the string.
    fn error(err: *mut c_char, what: &str) -> anyhow::Error {
        // SAFETY: the shim strdup'ed the message (or left it null); it is taken once, here.
        let msg = unsafe { crate::util::take_c_message(err) }.unwrap_or_else(|| "failed".into());
        anyhow!("{what}: {msg}")
    }

    /// Calls a shim function that returns 0 on success and reports failures through `err`.
    fn check(what: &str, f: impl FnOnce(*mut *mut c_char) -> c_int) -> Result<()> {
        let mut err = std::ptr::null_mut();
        match f(&mut err) {
            0 => Ok(()),
            _ => Err(error(err, what)),
        }
    }

    impl CudaGraph {
        pub fn available() -> bool {
            true
        }

        /// A graph for CUDA device `device`; its side stream is current until [`CudaGraph::end`].
        pub fn new(device: usize) -> Result<CudaGraph> {
            let mut err = std::ptr::null_mut();
            // SAFETY: the shim catches C++ exceptions, returning null and setting `err`.
            let ptr = unsafe { yq_graph_new(device as c_int, &mut err) };
            if ptr.is_null() {
                return Err(error(err, "creating a CUDA graph"));
            }
            Ok(CudaGraph { ptr, capturing: false, captured: false })
        }

        /// Hands the caching allocator's unused device memory back to the driver.
        pub fn empty_cache() -> Result<()> {
            // SAFETY: as above.
            check("emptying the CUDA cache", |e| unsafe { yq_empty_cache(e) })
        }

        pub fn begin(&mut self) -> Result<()> {
            // SAFETY: `ptr` is a live graph from yq_graph_new.
            check("starting a CUDA graph capture", |e| unsafe { yq_graph_capture_begin(self.ptr, e) })?;
            self.capturing = true;
            Ok(())
        }

        /// Ends the capture; the original stream is current again.
        pub fn end(&mut self) -> Result<()> {
            self.capturing = false;
            // SAFETY: as above.
            check("ending a CUDA graph capture", |e| unsafe { yq_graph_capture_end(self.ptr, e) })?;
            self.captured = true;
            Ok(())
        }

        pub fn replay(&self) -> Result<()> {
            if !self.captured {
                bail!("replay of a CUDA graph that was never captured");
            }
            // SAFETY: as above.
            check("replaying a CUDA graph", |e| unsafe { yq_graph_replay(self.ptr, e) })
        }
    }

    impl Drop for CudaGraph {
        fn drop(&mut self) {
            if self.capturing {
                let _ = self.end();
            }
            // SAFETY: `ptr` came from yq_graph_new and is freed once.
            unsafe { yq_graph_free(self.ptr) };
        }
    }
}

#[cfg(not(yq_cuda_graph))]
mod imp {
    use anyhow::{bail, Result};

    pub struct CudaGraph;

    impl CudaGraph {
        pub fn available() -> bool {
            false
        }
        pub fn new(_device: usize) -> Result<CudaGraph> {
            bail!("this build of yolo-qat has no CUDA graph support (no CUDA headers when it was built)")
        }
        pub fn empty_cache() -> Result<()> {
            Ok(())
        }
        pub fn begin(&mut self) -> Result<()> {
            Ok(())
        }
        pub fn end(&mut self) -> Result<()> {
            Ok(())
        }
        pub fn replay(&self) -> Result<()> {
            bail!("no CUDA graph support in this build")
        }
    }
}
