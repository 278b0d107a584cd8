//! Histogram calibrator (pytorch-quantization's `HistogramCalibrator`): counts of |x| in bins of fixed width on
//! [0, max of the first batch]; a larger later max adds whole bins of that width.
//! Lives on the tensors' device; nothing leaves the GPU until amax is chosen.

use tch::{Kind, Tensor};

pub const NUM_BINS: i64 = 2048;

#[derive(Debug)]
pub struct Histogram {
    /// Counts per bin (f64, on the data's device).
    pub counts: Tensor,
    pub width: f64,
}

impl Histogram {
    pub fn bins(&self) -> i64 {
        self.counts.size()[0]
    }

    pub fn range(&self) -> f64 {
        self.width * self.bins() as f64
    }

    /// Bin centres, same device as the counts.
    pub fn centres(&self) -> Tensor {
        (Tensor::arange(self.bins(), (Kind::Double, self.counts.device())) + 0.5) * self.width
    }

    pub fn deep_clone(&self) -> Histogram {
        Histogram { counts: self.counts.copy(), width: self.width }
    }
}

/// Adds a batch of activations to `hist` (creating it on the first batch);
/// returns the batch's max |x|.
pub fn collect(hist: &mut Option<Histogram>, x: &Tensor) -> f64 {
    let x = x.detach().to_kind(Kind::Float);
    let x = if x.min().double_value(&[]) < 0.0 { x.abs() } else { x };
    let x_max = x.max().double_value(&[]);
    match hist {
        None => {
            // An all-zero first batch still needs a positive range.
            let top = if x_max > 0.0 { x_max } else { 1e-8 };
            let counts = histc(&x, NUM_BINS, top);
            *hist = Some(Histogram { counts, width: top / NUM_BINS as f64 });
        }
        Some(h) => {
            let mut bins = h.bins();
            if x_max > h.range() {
                bins = (x_max / h.width).ceil() as i64;
            }
            let counts = histc(&x, bins, bins as f64 * h.width);
            let old = h.bins();
            let mut head = counts.narrow(0, 0, old);
            let _ = head.g_add_(&h.counts);
            h.counts = counts;
        }
    }
    x_max
}

/// `torch.histc(x, bins, 0, top)` for x in [0, top]: equal bins, `top` in the last.
fn histc(x: &Tensor, bins: i64, top: f64) -> Tensor {
    let idx = (x.reshape([-1]) * (bins as f64 / top)).floor().clamp(0.0, (bins - 1) as f64).to_kind(Kind::Int64);
    idx.bincount(None::<Tensor>, bins).to_kind(Kind::Double)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_batch_sets_range_and_later_batches_grow_it() {
        let mut h = None;
        collect(&mut h, &Tensor::from_slice(&[0.0f32, 1.0, -2.0, 2.048]));
        let hh = h.as_ref().unwrap();
        assert_eq!(hh.bins(), 2048);
        assert!((hh.width - 0.001).abs() < 1e-9);
        assert_eq!(hh.counts.sum(Kind::Double).double_value(&[]), 4.0);
        // a max of 4.096 doubles the bin count, same width, old counts kept
        collect(&mut h, &Tensor::from_slice(&[4.096f32, 0.0005]));
        let hh = h.as_ref().unwrap();
        assert_eq!(hh.bins(), 4096);
        assert_eq!(hh.counts.sum(Kind::Double).double_value(&[]), 6.0);
        assert_eq!(hh.counts.double_value(&[0]), 2.0); // 0.0 and 0.0005
        assert_eq!(hh.counts.double_value(&[4095]), 1.0);
    }
}
