//! Host data to a CUDA device without waiting: staged in pinned memory and copied
//! asynchronously on the current stream (`src/native/pinned_upload.cpp` says why).

use tch::{Device, Kind, Tensor};

#[cfg(yq_cuda_graph)]
extern "C" {
    fn yq_upload_bytes(data: *const u8, n: i64, device: i32, err: *mut *mut std::ffi::c_char) -> *mut std::ffi::c_void;
}

/// `bytes` as a 1-D u8 tensor on `device`: asynchronous on CUDA where the shim is built, an
/// ordinary copy elsewhere.
pub fn bytes(data: &[u8], device: Device) -> Tensor {
    #[cfg(yq_cuda_graph)]
    if let Device::Cuda(i) = device {
        let mut err = std::ptr::null_mut();
        // SAFETY: `data` is valid for its length; the shim copies it before returning and
        // returns a new at::Tensor* (or null with `err` set).
        let t = unsafe { yq_upload_bytes(data.as_ptr(), data.len() as i64, i as i32, &mut err) };
        if !t.is_null() {
            // SAFETY: a live at::Tensor* that nobody else owns.
            return unsafe { Tensor::from_ptr(t.cast()) };
        }
        let msg = unsafe { crate::util::take_c_message(err) }.unwrap_or_default();
        eprintln!("pinned upload unavailable ({msg}); copying synchronously");
    }
    Tensor::from_slice(data).to_device(device)
}

/// `values` as a 1-D f32 tensor on `device`, uploaded like [`bytes`].
pub fn f32s(values: &[f32], device: Device) -> Tensor {
    let raw: Vec<u8> = values.iter().flat_map(|v| v.to_ne_bytes()).collect();
    bytes(&raw, device).view_dtype(Kind::Float)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_survive_the_byte_view() {
        let v = [1.5f32, -0.0, 3.25e-7, f32::MAX];
        let t = f32s(&v, Device::Cpu);
        assert_eq!(t.kind(), Kind::Float);
        assert_eq!(Vec::<f32>::try_from(t).unwrap(), v);
    }
}
