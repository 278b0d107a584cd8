//! Mask IoU as upstream `segment/val.py` computes it with its command-line defaults
//! (`overlap=False`, `mask_downsample_ratio=1`, `process_mask`): predicted masks are
//! sigmoid(coefficients @ prototypes) > 0.5 at the prototype resolution, cropped to
//! the detection box scaled to that resolution (`crop_mask`); ground-truth masks are
//! the label polygons filled at the letterboxed image size, then bilinearly resized
//! (align_corners=False) to the prototype size and thresholded at > 0.5;
//! IoU = intersection / (union + 1e-7) (`utils/segment/general.py` `mask_iou`).

use crate::data::polygon_mask::polygon_mask;
use crate::eval::nms::Detection;
use tch::{Kind, Tensor};

/// A set of binary masks of one size, row-major.
pub struct Masks {
    pub h: usize,
    pub w: usize,
    pub data: Vec<Vec<bool>>,
}

/// `process_mask(proto, coeffs, boxes, shape)`: `proto` (nm, mh, mw) of one image,
/// `coeffs` (n, nm) f32 row-major, boxes xyxy in input pixels of an `input_hw` canvas.
pub fn predicted_masks(proto: &Tensor, coeffs: &[f32], dets: &[Detection], input_hw: (usize, usize)) -> Masks {
    let s = proto.size();
    let (nm, mh, mw) = (s[0], s[1] as usize, s[2] as usize);
    let n = dets.len();
    if n == 0 {
        return Masks { h: mh, w: mw, data: Vec::new() };
    }
    let c = Tensor::from_slice(coeffs).view([n as i64, nm]).to_device(proto.device());
    let logits = c.matmul(&proto.to_kind(Kind::Float).view([nm, -1])).sigmoid();
    let values = Vec::<f32>::try_from(logits.to_device(tch::Device::Cpu).view([-1])).unwrap_or_default();
    // mw / iw and mh / ih are Python floats applied to the f32 boxes
    let (gx, gy) = ((mw as f64 / input_hw.1 as f64) as f32, (mh as f64 / input_hw.0 as f64) as f32);
    let data = dets
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let [x1, y1, x2, y2] = [d.xyxy[0] * gx, d.xyxy[1] * gy, d.xyxy[2] * gx, d.xyxy[3] * gy];
            let row = &values[i * mh * mw..(i + 1) * mh * mw];
            (0..mh * mw)
                .map(|k| {
                    let (r, c) = ((k % mw) as f32, (k / mw) as f32);
                    let inside = r >= x1 && r < x2 && c >= y1 && c < y2;
                    inside && row[k] > 0.5
                })
                .collect()
        })
        .collect();
    Masks { h: mh, w: mw, data }
}

/// Ground-truth masks of `polygons` (letterboxed pixels) on an `input_hw` canvas,
/// brought to (mh, mw) as val.py's `process_batch(masks=True)` does.
pub fn label_masks(polygons: &[Vec<[f32; 2]>], input_hw: (usize, usize), (mh, mw): (usize, usize)) -> Masks {
    let data = polygons.iter().map(|p| downsample(&polygon_mask(input_hw.0, input_hw.1, p), input_hw, (mh, mw))).collect();
    Masks { h: mh, w: mw, data }
}

/// F.interpolate(mode="bilinear", align_corners=False) of a 0/1 mask to (oh, ow), then > 0.5.
fn downsample(mask: &[u8], (ih, iw): (usize, usize), (oh, ow): (usize, usize)) -> Vec<bool> {
    let taps = |o: usize, i: usize, n: usize| {
        let scale = i as f32 / n as f32;
        let src = (scale * (o as f32 + 0.5) - 0.5).max(0.0);
        let i0 = src as usize;
        let i1 = if i0 < i - 1 { i0 + 1 } else { i0 };
        let l1 = src - i0 as f32;
        (i0, i1, 1.0 - l1, l1)
    };
    let mut out = Vec::with_capacity(oh * ow);
    for y in 0..oh {
        let (y0, y1, wy0, wy1) = taps(y, ih, oh);
        for x in 0..ow {
            let (x0, x1, wx0, wx1) = taps(x, iw, ow);
            let px = |yy: usize, xx: usize| mask[yy * iw + xx] as f32;
            let v = wy0 * (wx0 * px(y0, x0) + wx1 * px(y0, x1)) + wy1 * (wx0 * px(y1, x0) + wx1 * px(y1, x1));
            out.push(v > 0.5);
        }
    }
    out
}

/// (labels × detections) IoU of two mask sets of the same size.
pub fn mask_iou(labels: &Masks, preds: &Masks) -> Vec<Vec<f32>> {
    let area = |m: &Vec<bool>| m.iter().filter(|&&b| b).count();
    let pred_area: Vec<usize> = preds.data.iter().map(area).collect();
    labels
        .data
        .iter()
        .map(|l| {
            let la = area(l);
            preds
                .data
                .iter()
                .zip(&pred_area)
                .map(|(p, &pa)| {
                    let inter = l.iter().zip(p).filter(|(a, b)| **a && **b).count();
                    inter as f32 / ((la + pa - inter) as f32 + 1e-7)
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downsampling_by_four_needs_three_of_the_four_sampled_pixels() {
        // Output pixel 0 samples input rows/columns 1 and 2 with weight 1/2 each.
        let mut m = vec![0u8; 16];
        m[5] = 1; // (1, 1)
        m[6] = 1; // (1, 2)
        assert_eq!(downsample(&m, (4, 4), (1, 1)), vec![false], "two of four: exactly 0.5, not > 0.5");
        m[9] = 1; // (2, 1)
        assert_eq!(downsample(&m, (4, 4), (1, 1)), vec![true]);
        let mut far = vec![1u8; 16];
        for i in [5, 6, 9, 10] {
            far[i] = 0;
        }
        assert_eq!(downsample(&far, (4, 4), (1, 1)), vec![false], "only the centre taps count");
    }

    #[test]
    fn predicted_masks_are_cropped_to_the_scaled_box() {
        // one prototype, all logits positive: the mask is the box at 1/4 scale, x2/y2 exclusive
        let proto = Tensor::ones([1, 4, 4], (Kind::Float, tch::Device::Cpu));
        let det = Detection { xyxy: [4.0, 0.0, 12.0, 8.0], conf: 0.9, class: 0 };
        let m = predicted_masks(&proto, &[1.0], &[det], (16, 16));
        let rows: Vec<String> = m.data[0].chunks(4).map(|r| r.iter().map(|&b| if b { '#' } else { '.' }).collect()).collect();
        assert_eq!(rows, [".##.", ".##.", "....", "...."]);
        // a negative coefficient gives sigmoid < 0.5 everywhere
        assert!(predicted_masks(&proto, &[-1.0], &[det], (16, 16)).data[0].iter().all(|&b| !b));
    }

    #[test]
    fn iou_by_hand() {
        let a = Masks { h: 1, w: 4, data: vec![vec![true, true, false, false]] };
        let b = Masks { h: 1, w: 4, data: vec![vec![false, true, true, false], vec![false; 4]] };
        let iou = mask_iou(&a, &b);
        assert_eq!(iou, vec![vec![1.0 / (3.0 + 1e-7), 0.0]]);
    }
}
