//! Polygon labels in the training augmentations, as upstream carries `segments` beside
//! the boxes (`utils/general.py` `resample_segments`, `segment2box`;
//! `utils/segment/dataloaders.py` `polygon2mask`, `polygons2masks`): the resampling and box
//! rule the warp applies ([`crate::data::perspective`]), and the masks, drawn at full
//! resolution and shrunk by the mask ratio, flipped with the image.

use crate::data::polygon_mask::polygon_mask;

/// A polygon in pixels (x, y).
pub type Polygon = Vec<[f32; 2]>;

/// Upstream `resample_segments(segments, n=1000)`: the polygon closed (first point
/// appended) and linearly interpolated at `n` evenly spaced positions along its vertex
/// index (`np.interp` over `np.linspace(0, len - 1, n)`).
pub fn resample(poly: &[[f32; 2]], n: usize) -> Polygon {
    if poly.is_empty() {
        return Vec::new();
    }
    let closed: Vec<[f64; 2]> = poly.iter().chain(std::iter::once(&poly[0])).map(|p| [p[0] as f64, p[1] as f64]).collect();
    let last = (closed.len() - 1) as f64;
    (0..n)
        .map(|i| {
            let x = if n == 1 { 0.0 } else { last * i as f64 / (n - 1) as f64 };
            let j = (x.floor() as usize).min(closed.len() - 1);
            let (a, b) = (closed[j], closed[(j + 1).min(closed.len() - 1)]);
            let t = x - j as f64;
            [(a[0] + (b[0] - a[0]) * t) as f32, (a[1] + (b[1] - a[1]) * t) as f32]
        })
        .collect()
}

/// Upstream `segment2box(segment, width, height)`: the extent of the points inside
/// `[0, width] x [0, height]`; zeros when none is (upstream's `any(x)` also reads an
/// all-zero x column as "none").
pub fn segment2box(poly: &[[f64; 2]], width: f64, height: f64) -> [f64; 4] {
    let inside: Vec<&[f64; 2]> = poly.iter().filter(|p| p[0] >= 0.0 && p[1] >= 0.0 && p[0] <= width && p[1] <= height).collect();
    if !inside.iter().any(|p| p[0] != 0.0) {
        return [0.0; 4];
    }
    let fold = |f: fn(f64, f64) -> f64, i: usize, init: f64| inside.iter().fold(init, |m, p| f(m, p[i]));
    [fold(f64::min, 0, f64::INFINITY), fold(f64::min, 1, f64::INFINITY), fold(f64::max, 0, f64::NEG_INFINITY), fold(f64::max, 1, f64::NEG_INFINITY)]
}

/// Upstream `polygon2mask(img_size, [polygon], color=1, downsample_ratio=r)`: the polygon
/// filled at (h, w) (`cv2.fillPoly`), then `cv2.resize` to (h / r, w / r) with its default
/// bilinear interpolation. For an even ratio each output pixel samples the 2×2 source pixels
/// around its centre with equal weights and rounds half up (OpenCV's fixed-point bilinear on
/// u8), so a 0/1 mask keeps a pixel when at least two of the four are set; ratio 1 keeps the
/// drawing. Returns the (h / r) × (w / r) row-major 0/1 mask.
pub fn polygon_mask_downsampled(h: usize, w: usize, poly: &[[f32; 2]], ratio: usize) -> Vec<u8> {
    let full = polygon_mask(h, w, poly);
    if ratio == 1 {
        return full;
    }
    assert!(ratio.is_multiple_of(2), "mask ratio must be 1 or even, got {ratio}");
    let (mh, mw) = (h / ratio, w / ratio);
    let c = ratio / 2 - 1;
    let mut out = vec![0u8; mh * mw];
    for y in 0..mh {
        for x in 0..mw {
            let (sy, sx) = (y * ratio + c, x * ratio + c);
            let on = full[sy * w + sx] + full[sy * w + sx + 1] + full[(sy + 1) * w + sx] + full[(sy + 1) * w + sx + 1];
            out[y * mw + x] = u8::from(on >= 2);
        }
    }
    out
}

/// Mirrors every (mh, mw) mask of `masks` left-right (`torch.flip(masks, dims=[2])`).
pub fn flip_masks_lr(masks: &mut [u8], mw: usize) {
    for row in masks.chunks_exact_mut(mw) {
        row.reverse();
    }
}

/// Mirrors every (mh, mw) mask of `masks` up-down (`torch.flip(masks, dims=[1])`).
pub fn flip_masks_ud(masks: &mut [u8], mh: usize, mw: usize) {
    for m in masks.chunks_exact_mut(mh * mw) {
        for y in 0..mh / 2 {
            let (top, bottom) = m.split_at_mut((mh - 1 - y) * mw);
            top[y * mw..(y + 1) * mw].swap_with_slice(&mut bottom[..mw]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resample_closes_and_interpolates_like_np_interp() {
        // A square of 4 vertices, closed: 5 points over index 0..4; 9 samples land on every half step.
        let sq = [[0.0, 0.0], [4.0, 0.0], [4.0, 4.0], [0.0, 4.0]];
        let r = resample(&sq, 9);
        assert_eq!(r.len(), 9);
        assert_eq!(r[0], [0.0, 0.0]);
        assert_eq!(r[1], [2.0, 0.0]);
        assert_eq!(r[2], [4.0, 0.0]);
        assert_eq!(r[4], [4.0, 4.0]);
        assert_eq!(r[5], [2.0, 4.0]);
        assert_eq!(r[8], [0.0, 0.0], "closed: ends where it started");
    }

    #[test]
    fn segment2box_uses_inside_points_only() {
        let pts = [[-5.0, 3.0], [2.0, 1.0], [8.0, 9.0], [11.0, 4.0]];
        assert_eq!(segment2box(&pts, 10.0, 10.0), [2.0, 1.0, 8.0, 9.0]);
        assert_eq!(segment2box(&[[-1.0, -1.0]], 10.0, 10.0), [0.0; 4]);
    }

    #[test]
    fn downsampled_mask_keeps_pixels_with_two_of_four_centre_taps() {
        // A filled 8x8 square at (4..12, 4..12) of a 16x16 image, ratio 4: output cells (1..3, 1..3).
        let sq = [[4.0, 4.0], [11.0, 4.0], [11.0, 11.0], [4.0, 11.0]];
        let m = polygon_mask_downsampled(16, 16, &sq, 4);
        let on: Vec<usize> = (0..16).filter(|&i| m[i] == 1).collect();
        assert_eq!(on, [5, 6, 9, 10]);
    }

    #[test]
    fn mask_flips_mirror() {
        let mut m = vec![1, 0, 0, 0, 0, 0];
        flip_masks_lr(&mut m, 3);
        assert_eq!(m, [0, 0, 1, 0, 0, 0]);
        flip_masks_ud(&mut m, 2, 3);
        assert_eq!(m, [0, 0, 0, 0, 0, 1]);
    }
}
