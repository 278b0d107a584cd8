//! Tensors read out of a checkpoint: element types and contiguous copies of
//! (possibly strided) views into raw storages.

use super::error::ErrorKind;

/// Element type of a tensor, as torch names its storages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    F16,
    BF16,
    F32,
    F64,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F64 | DType::I64 => 8,
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 | DType::I16 => 2,
            DType::I8 | DType::U8 | DType::Bool => 1,
        }
    }

    /// The dtype of a legacy typed-storage class (`torch.HalfStorage`,
    /// also the old `torch.cuda.HalfStorage`) or of a dtype global
    /// (`torch.float16`).
    pub fn from_torch_name(name: &str) -> Option<DType> {
        let short = name.strip_prefix("torch.cuda.").or_else(|| name.strip_prefix("torch."))?;
        Some(match short {
            "HalfStorage" | "float16" | "half" => DType::F16,
            "BFloat16Storage" | "bfloat16" => DType::BF16,
            "FloatStorage" | "float32" | "float" => DType::F32,
            "DoubleStorage" | "float64" | "double" => DType::F64,
            "LongStorage" | "int64" | "long" => DType::I64,
            "IntStorage" | "int32" | "int" => DType::I32,
            "ShortStorage" | "int16" | "short" => DType::I16,
            "CharStorage" | "int8" => DType::I8,
            "ByteStorage" | "uint8" | "UntypedStorage" | "storage.UntypedStorage" => DType::U8,
            "BoolStorage" | "bool" => DType::Bool,
            _ => return None,
        })
    }
}

/// A dense, row-major tensor with little-endian elements.
#[derive(Clone, PartialEq)]
pub struct RawTensor {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

/// Shows the layout, not the (possibly millions of) data bytes.
impl std::fmt::Debug for RawTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawTensor").field("dtype", &self.dtype).field("shape", &self.shape).field("bytes", &self.data.len()).finish()
    }
}

impl RawTensor {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The elements converted to f32 (integers and bools by value).
    pub fn to_f32_vec(&self) -> Vec<f32> {
        let n = self.dtype.size();
        self.data.chunks_exact(n).map(|b| element_to_f32(self.dtype, b)).collect()
    }
}

fn element_to_f32(dtype: DType, b: &[u8]) -> f32 {
    let mut buf = [0u8; 8];
    buf[..b.len()].copy_from_slice(b);
    let [b0, b1, b2, b3, ..] = buf;
    match dtype {
        DType::F16 => half::f16::from_le_bytes([b0, b1]).to_f32(),
        DType::BF16 => half::bf16::from_le_bytes([b0, b1]).to_f32(),
        DType::F32 => f32::from_le_bytes([b0, b1, b2, b3]),
        DType::F64 => f64::from_le_bytes(buf) as f32,
        DType::I64 => i64::from_le_bytes(buf) as f32,
        DType::I32 => i32::from_le_bytes([b0, b1, b2, b3]) as f32,
        DType::I16 => i16::from_le_bytes([b0, b1]) as f32,
        DType::I8 => b0 as i8 as f32,
        DType::U8 => b0 as f32,
        DType::Bool => f32::from(u8::from(b0 != 0)),
    }
}

/// A view into a storage, as `torch._utils._rebuild_tensor_v2` describes it.
/// Offset and strides count elements, not bytes.
pub struct View<'a> {
    pub dtype: DType,
    pub storage: &'a [u8],
    pub offset: usize,
    pub shape: &'a [usize],
    pub stride: &'a [usize],
    pub big_endian: bool,
}

impl View<'_> {
    /// Copies the view into a contiguous little-endian tensor, checking that
    /// every element it addresses lies inside the storage. `max_bytes` caps
    /// the result (a zero stride can make a tiny storage look huge).
    pub fn materialize(&self, max_bytes: usize) -> Result<RawTensor, ErrorKind> {
        if self.shape.len() != self.stride.len() {
            return Err(bad(format!("size has {} dims but stride has {}", self.shape.len(), self.stride.len())));
        }
        let elem = self.dtype.size();
        let numel = checked_product(self.shape).ok_or_else(|| bad("element count overflows"))?;
        let nbytes = numel.checked_mul(elem).filter(|&n| n <= max_bytes).ok_or_else(|| bad(format!("{numel} elements exceed the size limit")))?;
        let storage_numel = self.storage.len() / elem;
        if numel > 0 {
            let last = self.last_index().ok_or_else(|| bad("extent overflows"))?;
            if last >= storage_numel {
                return Err(bad(format!(
                    "view (offset {}, size {:?}, stride {:?}) reaches element {last} of a storage of {storage_numel}",
                    self.offset, self.shape, self.stride
                )));
            }
        } else if self.offset > storage_numel {
            return Err(bad(format!("offset {} is past the storage's {storage_numel} elements", self.offset)));
        }
        let mut data = Vec::with_capacity(nbytes);
        if numel > 0 {
            self.copy_elements(elem, &mut data)?;
        }
        if self.big_endian && elem > 1 {
            data.chunks_exact_mut(elem).for_each(<[u8]>::reverse);
        }
        Ok(RawTensor { dtype: self.dtype, shape: self.shape.to_vec(), data })
    }

    /// Index of the furthest element: offset + sum((size-1) * stride).
    fn last_index(&self) -> Option<usize> {
        self.shape.iter().zip(self.stride).try_fold(self.offset, |acc, (&n, &s)| acc.checked_add(n.checked_sub(1)?.checked_mul(s)?))
    }

    fn is_contiguous(&self) -> bool {
        let mut expected = 1usize;
        for (&n, &s) in self.shape.iter().zip(self.stride).rev() {
            if n != 1 && s != expected {
                return false;
            }
            expected = expected.saturating_mul(n);
        }
        true
    }

    /// Walks the view in row-major order. Bounds were checked by the caller;
    /// the `get`s only keep a logic slip from turning into a panic.
    fn copy_elements(&self, elem: usize, out: &mut Vec<u8>) -> Result<(), ErrorKind> {
        let numel: usize = self.shape.iter().product();
        let outside = || bad("view reaches outside its storage");
        if self.is_contiguous() {
            let start = self.offset.saturating_mul(elem);
            let end = start.saturating_add(numel.saturating_mul(elem));
            let bytes = self.storage.get(start..end).ok_or_else(outside)?;
            out.extend_from_slice(bytes);
            return Ok(());
        }
        let mut index = vec![0usize; self.shape.len()];
        let mut pos = self.offset;
        for _ in 0..numel {
            let at = pos.wrapping_mul(elem);
            out.extend_from_slice(self.storage.get(at..at.saturating_add(elem)).ok_or_else(outside)?);
            // Odometer step: bump the last dim, carrying into earlier ones.
            // Wrapping: the step past the final element may leave the range.
            for d in (0..index.len()).rev() {
                index[d] += 1;
                pos = pos.wrapping_add(self.stride[d]);
                if index[d] < self.shape[d] {
                    break;
                }
                pos = pos.wrapping_sub(self.stride[d].wrapping_mul(self.shape[d]));
                index[d] = 0;
            }
        }
        Ok(())
    }
}

fn checked_product(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

fn bad(msg: impl Into<String>) -> ErrorKind {
    ErrorKind::Tensor(msg.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32_storage(n: usize) -> Vec<u8> {
        (0..n).flat_map(|i| (i as f32).to_le_bytes()).collect()
    }

    fn view<'a>(storage: &'a [u8], offset: usize, shape: &'a [usize], stride: &'a [usize]) -> View<'a> {
        View { dtype: DType::F32, storage, offset, shape, stride, big_endian: false }
    }

    #[test]
    fn transposed_view_comes_out_row_major() {
        let s = f32_storage(6);
        let t = view(&s, 0, &[3, 2], &[1, 3]).materialize(1 << 20).unwrap();
        assert_eq!(t.shape, vec![3, 2]);
        assert_eq!(t.to_f32_vec(), vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
    }

    #[test]
    fn offset_and_broadcast_stride() {
        let s = f32_storage(6);
        let t = view(&s, 4, &[2, 3], &[1, 0]).materialize(1 << 20).unwrap();
        assert_eq!(t.to_f32_vec(), vec![4.0, 4.0, 4.0, 5.0, 5.0, 5.0]);
    }

    #[test]
    fn view_past_storage_is_refused() {
        let s = f32_storage(6);
        assert!(view(&s, 1, &[2, 3], &[3, 1]).materialize(1 << 20).is_err());
        assert!(view(&s, 0, &[usize::MAX, 2], &[1, 1]).materialize(1 << 20).is_err());
        assert!(view(&s, 0, &[1 << 40], &[0]).materialize(1 << 20).is_err());
    }

    #[test]
    fn big_endian_storage_is_swapped() {
        let s: Vec<u8> = [1.5f32, -2.0].iter().flat_map(|v| v.to_be_bytes()).collect();
        let mut v = view(&s, 0, &[2], &[1]);
        v.big_endian = true;
        assert_eq!(v.materialize(64).unwrap().to_f32_vec(), vec![1.5, -2.0]);
    }

    #[test]
    fn half_and_bfloat_convert() {
        let t = RawTensor { dtype: DType::F16, shape: vec![1], data: half::f16::from_f32(0.5).to_le_bytes().to_vec() };
        assert_eq!(t.to_f32_vec(), vec![0.5]);
        let t = RawTensor { dtype: DType::BF16, shape: vec![1], data: half::bf16::from_f32(-3.0).to_le_bytes().to_vec() };
        assert_eq!(t.to_f32_vec(), vec![-3.0]);
    }
}
