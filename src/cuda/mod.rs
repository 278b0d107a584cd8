//! What tch does not expose of CUDA: device memory in use (for benchmarks) and
//! CUDA graph capture/replay (for the QAT step).

pub mod graph;
pub mod kernel_profile;
pub mod kernels;
pub mod memory;
