//! What tch does not expose of CUDA: device memory in use (for benchmarks),
//! CUDA graph capture/replay (for the QAT step) and asynchronous uploads.

pub mod graph;
pub mod kernel_profile;
pub mod kernels;
pub mod memory;
pub mod upload;
