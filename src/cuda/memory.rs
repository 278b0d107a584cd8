//! Device memory for benchmarks: the caching allocator's own peak counters (what this
//! process's tensors needed; `src/native/allocator_stats.cpp`), and device-wide use
//! sampled from the CUDA runtime (cudaMemGetInfo: every process, the allocator's cache
//! and the context).

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

/// The caching allocator's peaks since [`reset_allocator_peak`], in bytes.
#[derive(Clone, Copy, Debug)]
pub struct AllocatorPeak {
    pub allocated: u64,
    pub reserved: u64,
}

impl AllocatorPeak {
    pub fn allocated_gib(&self) -> f64 {
        self.allocated as f64 / (1u64 << 30) as f64
    }
    pub fn reserved_gib(&self) -> f64 {
        self.reserved as f64 / (1u64 << 30) as f64
    }
}

#[cfg(yq_cuda_graph)]
mod stats {
    use std::ffi::{c_char, c_int};

    extern "C" {
        pub fn yq_allocator_peak(device: c_int, allocated: *mut u64, reserved: *mut u64, err: *mut *mut c_char) -> c_int;
        pub fn yq_allocator_reset_peak(device: c_int, err: *mut *mut c_char) -> c_int;
    }
}

/// The allocator's peaks on a CUDA device; `None` on the CPU or without the CUDA shims.
pub fn allocator_peak(device: tch::Device) -> Option<AllocatorPeak> {
    let tch::Device::Cuda(_i) = device else { return None };
    #[cfg(yq_cuda_graph)]
    {
        let (mut allocated, mut reserved, mut err) = (0u64, 0u64, std::ptr::null_mut());
        // SAFETY: the shim writes two u64 through valid pointers, or sets `err` (freed here).
        let rc = unsafe { stats::yq_allocator_peak(_i as i32, &mut allocated, &mut reserved, &mut err) };
        if rc != 0 {
            let msg = unsafe { crate::util::take_c_message(err) }.unwrap_or_default();
            eprintln!("allocator statistics unavailable: {msg}");
            return None;
        }
        Some(AllocatorPeak { allocated, reserved })
    }
    #[cfg(not(yq_cuda_graph))]
    None
}

/// Starts the allocator's peak counters afresh (no-op on the CPU).
pub fn reset_allocator_peak(device: tch::Device) {
    let tch::Device::Cuda(_i) = device else { return };
    #[cfg(yq_cuda_graph)]
    {
        let mut err = std::ptr::null_mut();
        // SAFETY: as above.
        if unsafe { stats::yq_allocator_reset_peak(_i as i32, &mut err) } != 0 {
            let msg = unsafe { crate::util::take_c_message(err) }.unwrap_or_default();
            eprintln!("allocator statistics unavailable: {msg}");
        }
    }
}
