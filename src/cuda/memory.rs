//! Device memory in use, sampled from the CUDA runtime (cudaMemGetInfo): what
//! the caching allocator holds plus the context. For benchmarks' peak figures.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

type MemGetInfo = unsafe extern "C" fn(*mut usize, *mut usize) -> i32;

fn used_bytes(f: MemGetInfo) -> Option<u64> {
    let (mut free, mut total) = (0usize, 0usize);
    // SAFETY: cudaMemGetInfo writes two size_t through valid pointers.
    let rc = unsafe { f(&mut free, &mut total) };
    (rc == 0).then(|| (total - free) as u64)
}

/// Samples used device memory every few milliseconds until dropped; `peak()` is the maximum seen.
pub struct PeakMemory {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PeakMemory {
    /// None when the CUDA runtime cannot be loaded (CPU-only machines).
    pub fn start() -> Option<PeakMemory> {
        let lib = ["libcudart.so.13", "libcudart.so.12", "libcudart.so"].iter().find_map(|n| unsafe { libloading::Library::new(n) }.ok())?;
        let f: MemGetInfo = *unsafe { lib.get::<MemGetInfo>(b"cudaMemGetInfo\0") }.ok()?;
        used_bytes(f)?;
        let peak = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let _lib = lib;
            while !s.load(Ordering::Relaxed) {
                if let Some(u) = used_bytes(f) {
                    p.fetch_max(u, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        Some(PeakMemory { peak, stop, thread: Some(thread) })
    }

    pub fn peak_gib(&self) -> f64 {
        self.peak.load(Ordering::Relaxed) as f64 / (1u64 << 30) as f64
    }
}

impl Drop for PeakMemory {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
