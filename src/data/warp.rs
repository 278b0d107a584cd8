//! `cv2.warpAffine` and `cv2.warpPerspective` with `INTER_LINEAR` and a constant border
//! of 114, as upstream `random_perspective` (utils/augmentations.py) calls them, and the
//! 3x3 matrix helpers the augmentation composes its transform with.
//!
//! Bit-exact with OpenCV 4.x (4.10 and 4.14 agree; 5.0 rewrote these kernels), checked by
//! `warps_match_opencv` in `tests/opencv_vectors.rs` on matrices that rotate, shear,
//! shrink, enlarge, mirror, shift by sub-pixels and map partly outside the output, with
//! both functions: every output pixel is inverse-mapped to 1/32-pixel fixed point
//! (`warpAffine` through OpenCV's 10-bit `adelta`/`bdelta` steps, `warpPerspective`
//! through a rounded float division) and sampled bilinearly with 15-bit weights;
//! neighbours outside the source read the border value.

use crate::data::image_io::RgbImage;
use crate::data::PAD_VALUE;

/// A 3x3 homogeneous matrix, row major.
pub type Mat3 = [[f64; 3]; 3];

pub const IDENTITY: Mat3 = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];

pub fn matmul(a: &Mat3, b: &Mat3) -> Mat3 {
    let mut m = [[0.0; 3]; 3];
    for (i, row) in m.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = a[i][0] * b[0][j] + a[i][1] * b[1][j] + a[i][2] * b[2][j];
        }
    }
    m
}

/// Inverse of a 3x3 matrix (adjugate / determinant); zero matrix if singular.
pub fn invert(m: &Mat3) -> Mat3 {
    let c00 = m[1][1] * m[2][2] - m[1][2] * m[2][1];
    let c01 = m[1][2] * m[2][0] - m[1][0] * m[2][2];
    let c02 = m[1][0] * m[2][1] - m[1][1] * m[2][0];
    let det = m[0][0] * c00 + m[0][1] * c01 + m[0][2] * c02;
    if det == 0.0 {
        return [[0.0; 3]; 3];
    }
    let d = 1.0 / det;
    [
        [c00 * d, (m[0][2] * m[2][1] - m[0][1] * m[2][2]) * d, (m[0][1] * m[1][2] - m[0][2] * m[1][1]) * d],
        [c01 * d, (m[0][0] * m[2][2] - m[0][2] * m[2][0]) * d, (m[0][2] * m[1][0] - m[0][0] * m[1][2]) * d],
        [c02 * d, (m[0][1] * m[2][0] - m[0][0] * m[2][1]) * d, (m[0][0] * m[1][1] - m[0][1] * m[1][0]) * d],
    ]
}

const INTER_BITS: i32 = 5;
const INTER_TAB: i32 = 1 << INTER_BITS; // 32
const AB_BITS: i32 = 10;
const AB_SCALE: f64 = (1 << AB_BITS) as f64;

/// Bilinear sample at fixed-point source position `(xq, yq)` in 1/32 pixel,
/// with OpenCV's 15-bit weights; out-of-image neighbours read `PAD_VALUE`.
#[inline(always)]
fn sample_fixed(src: &RgbImage, xq: i32, yq: i32, out: &mut [u8]) {
    let sx = xq >> INTER_BITS;
    let sy = yq >> INTER_BITS;
    let fx = xq & (INTER_TAB - 1);
    let fy = yq & (INTER_TAB - 1);
    // weights sum to 32768 exactly: (32 - f) * 32 granularity
    let w00 = (INTER_TAB - fx) * (INTER_TAB - fy) * 32;
    let w01 = fx * (INTER_TAB - fy) * 32;
    let w10 = (INTER_TAB - fx) * fy * 32;
    let w11 = fx * fy * 32;
    let (w, h) = (src.width as i32, src.height as i32);
    if sx >= 0 && sy >= 0 && sx < w - 1 && sy < h - 1 {
        let i0 = ((sy * w + sx) * 3) as usize;
        let i1 = i0 + (w as usize) * 3;
        let (a, b) = (&src.data[i0..i0 + 6], &src.data[i1..i1 + 6]);
        for c in 0..3 {
            let v = a[c] as i32 * w00 + a[3 + c] as i32 * w01 + b[c] as i32 * w10 + b[3 + c] as i32 * w11;
            out[c] = ((v + (1 << 14)) >> 15) as u8;
        }
    } else if sx >= w || sx + 1 < 0 || sy >= h || sy + 1 < 0 {
        out[..3].fill(PAD_VALUE);
    } else {
        let px = |x: i32, y: i32| -> [i32; 3] {
            if x >= 0 && y >= 0 && x < w && y < h {
                let p = src.get(x as usize, y as usize);
                [p[0] as i32, p[1] as i32, p[2] as i32]
            } else {
                [PAD_VALUE as i32; 3]
            }
        };
        let (p00, p01, p10, p11) = (px(sx, sy), px(sx + 1, sy), px(sx, sy + 1), px(sx + 1, sy + 1));
        for c in 0..3 {
            let v = p00[c] * w00 + p01[c] * w01 + p10[c] * w10 + p11[c] * w11;
            out[c] = ((v + (1 << 14)) >> 15) as u8;
        }
    }
}

/// `cv2.warpAffine(src, M[:2], (out_w, out_h), INTER_LINEAR,
/// borderValue=114)`: `m` maps source to destination; every output pixel is
/// inverse-mapped and sampled bilinearly.
pub fn warp_affine(src: &RgbImage, m: &Mat3, out_w: usize, out_h: usize) -> RgbImage {
    // invert the 2x3 part as OpenCV does
    let (m0, m1, m2, m3, m4, m5) = (m[0][0], m[0][1], m[0][2], m[1][0], m[1][1], m[1][2]);
    let d = m0 * m4 - m1 * m3;
    let d = if d != 0.0 { 1.0 / d } else { 0.0 };
    let (i0, i1, i3, i4) = (m4 * d, -m1 * d, -m3 * d, m0 * d);
    let i2 = -i0 * m2 - i1 * m5;
    let i5 = -i3 * m2 - i4 * m5;
    let round_delta = (AB_SCALE as i32) / INTER_TAB / 2;
    let adelta: Vec<i32> = (0..out_w).map(|x| cv_round(i0 * x as f64 * AB_SCALE)).collect();
    let bdelta: Vec<i32> = (0..out_w).map(|x| cv_round(i3 * x as f64 * AB_SCALE)).collect();
    let mut out = RgbImage { width: out_w, height: out_h, data: vec![0; out_w * out_h * 3] };
    for (y, row) in out.data.chunks_exact_mut(out_w * 3).enumerate() {
        let x0 = cv_round((i1 * y as f64 + i2) * AB_SCALE) + round_delta;
        let y0 = cv_round((i4 * y as f64 + i5) * AB_SCALE) + round_delta;
        for (x, px) in row.chunks_exact_mut(3).enumerate() {
            let xq = (x0.wrapping_add(adelta[x])) >> (AB_BITS - INTER_BITS);
            let yq = (y0.wrapping_add(bdelta[x])) >> (AB_BITS - INTER_BITS);
            sample_fixed(src, xq, yq, px);
        }
    }
    out
}

/// `cv2.warpPerspective(src, M, (out_w, out_h), INTER_LINEAR,
/// borderValue=114)`: the inverse of `m` maps each output pixel back.
pub fn warp_perspective(src: &RgbImage, m: &Mat3, out_w: usize, out_h: usize) -> RgbImage {
    let inv = invert(m);
    let mut out = RgbImage { width: out_w, height: out_h, data: vec![0; out_w * out_h * 3] };
    for (y, row) in out.data.chunks_exact_mut(out_w * 3).enumerate() {
        let yf = y as f64;
        let bx = inv[0][1] * yf + inv[0][2];
        let by = inv[1][1] * yf + inv[1][2];
        let bw = inv[2][1] * yf + inv[2][2];
        for (x, px) in row.chunks_exact_mut(3).enumerate() {
            let xf = x as f64;
            let w = inv[2][0] * xf + bw;
            let w = if w != 0.0 { INTER_TAB as f64 / w } else { 0.0 };
            let fx = ((inv[0][0] * xf + bx) * w).clamp(i32::MIN as f64, i32::MAX as f64);
            let fy = ((inv[1][0] * xf + by) * w).clamp(i32::MIN as f64, i32::MAX as f64);
            sample_fixed(src, cv_round(fx), cv_round(fy), px);
        }
    }
    out
}

#[inline]
fn cv_round(v: f64) -> i32 {
    let r = v.round_ties_even();
    r.clamp(i32::MIN as f64, i32::MAX as f64) as i32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::test_images::checker;

    #[test]
    fn identity_warp_is_noop() {
        let img = checker(17, 11);
        assert_eq!(warp_affine(&img, &IDENTITY, 17, 11), img);
        assert_eq!(warp_perspective(&img, &IDENTITY, 17, 11), img);
    }

    #[test]
    fn integer_translation_shifts_pixels_and_pads_grey() {
        let img = checker(10, 8);
        let mut m = IDENTITY;
        m[0][2] = 3.0;
        m[1][2] = -2.0;
        let out = warp_affine(&img, &m, 10, 8);
        for y in 0..8 {
            for x in 0..10 {
                let (sx, sy) = (x as i64 - 3, y as i64 + 2);
                let want = if sx >= 0 && sy < 8 { img.get(sx as usize, sy as usize) } else { [PAD_VALUE; 3] };
                assert_eq!(out.get(x, y), want, "at {x},{y}");
            }
        }
        assert_eq!(warp_perspective(&img, &m, 10, 8), out);
    }

    #[test]
    fn half_pixel_shift_averages() {
        let mut img = RgbImage::filled(4, 1, 0);
        img.put(1, 0, [100, 200, 50]);
        img.put(2, 0, [200, 0, 51]);
        let mut m = IDENTITY;
        m[0][2] = -0.5; // dst(x) = src(x + 0.5)
        let out = warp_affine(&img, &m, 4, 1);
        assert_eq!(out.get(1, 0), [150, 100, 51]); // (50+51)/2 = 50.5 -> 51 (round half up)
    }
}
