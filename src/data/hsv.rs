//! Upstream `augment_hsv` (utils/augmentations.py): random hue, saturation and value
//! gains applied through look-up tables in OpenCV's 8-bit HSV, i.e.
//! `cv2.cvtColor(BGR2HSV)`, `cv2.LUT` per channel, `cv2.cvtColor(HSV2BGR)`. Our images
//! are RGB, so the RGB variants of the same conversions run; the results are the same.
//!
//! Bit-exactness with OpenCV (checked by `tests/opencv_vectors.rs` against
//! `tests/data/opencv`, made by `scripts/make_opencv_vectors.py` with OpenCV 4.14 on
//! x86-64; 4.10 and 5.0 give the same per-path results):
//! * [`rgb_to_hsv`]: OpenCV's integer algorithm (`hsv_shift = 12` division tables) for
//!   all 2^24 colours (`rgb_to_hsv_all_colours`; its SIMD and scalar code agree).
//! * [`hsv_to_rgb`]: OpenCV's SIMD float algorithm (`hscale = 6/180`, fused
//!   `1 - s*h`, truncation to `u8`) for all 180 x 256 x 256 values
//!   (`hsv_to_rgb_all_values_simd_path`).
//! * [`hsv_to_rgb_scalar`]: the scalar code OpenCV runs on the last pixels of a row that
//!   do not fill a SIMD block (`fmod`, also fused, rounding to `u8`), for all values
//!   (`hsv_to_rgb_all_values_scalar_path`).
//! * [`hsv_to_rgb_row`] / [`apply_hsv_luts`]: which pixels of a row take which path
//!   ([`HSV2RGB_SIMD_PIXELS`]; `hsv_to_rgb_rows_mix_both_paths`,
//!   `augment_hsv_with_fixed_gains`).

use std::sync::OnceLock;

use crate::data::image_io::RgbImage;
use crate::data::rng::Rng;

/// Pixels per SIMD block of OpenCV's 8-bit HSV→RGB: each row is converted in blocks of
/// 4 float vectors (truncating), the rest of the row by scalar code (rounding). 64 is
/// OpenCV 4.14 on a CPU with AVX-512, what the reference vectors were made with; the
/// AVX2 kernel (OpenCV 4.10 and 5.0, or 4.14 without AVX-512) has 32, SSE-only builds
/// 16. Rows whose width is a multiple of the block, as `imgsz` 320 and 640 are, never
/// take the scalar path, whatever the build.
pub const HSV2RGB_SIMD_PIXELS: usize = 64;

const HSV_SHIFT: u32 = 12;

/// OpenCV's `sdiv_table` and `hdiv_table180`.
fn hsv_tables() -> &'static ([i32; 256], [i32; 256]) {
    static T: OnceLock<([i32; 256], [i32; 256])> = OnceLock::new();
    T.get_or_init(|| {
        let mut sdiv = [0i32; 256];
        let mut hdiv = [0i32; 256];
        for i in 1..256 {
            sdiv[i] = ((255 << HSV_SHIFT) as f64 / i as f64).round_ties_even() as i32;
            hdiv[i] = ((180 << HSV_SHIFT) as f64 / (6.0 * i as f64)).round_ties_even() as i32;
        }
        (sdiv, hdiv)
    })
}

#[inline]
fn rgb_to_hsv_with(t: &([i32; 256], [i32; 256]), p: [u8; 3]) -> [u8; 3] {
    let (r, g, b) = (p[0] as i32, p[1] as i32, p[2] as i32);
    let v = r.max(g).max(b);
    let vmin = r.min(g).min(b);
    let diff = v - vmin;
    let s = (diff * t.0[v as usize] + (1 << (HSV_SHIFT - 1))) >> HSV_SHIFT;
    let h = if v == r {
        g - b
    } else if v == g {
        b - r + 2 * diff
    } else {
        r - g + 4 * diff
    };
    let mut h = (h * t.1[diff as usize] + (1 << (HSV_SHIFT - 1))) >> HSV_SHIFT;
    if h < 0 {
        h += 180;
    }
    [h.clamp(0, 255) as u8, s as u8, v as u8]
}

/// `cv2.cvtColor(COLOR_RGB2HSV)` for one 8-bit pixel: H in `[0, 180)`, S and V in
/// `[0, 255]`.
pub fn rgb_to_hsv(p: [u8; 3]) -> [u8; 3] {
    rgb_to_hsv_with(hsv_tables(), p)
}

/// `1 - a*b` rounded once, as the fused multiply-add OpenCV's x86-64 builds contract it
/// to: the f64 product of two f32 is exact, and so is its difference from 1 here
/// (`a*b` is in [0, 1] with 48 significant bits at most), so the only rounding is to f32.
#[inline]
fn one_minus_product(a: f32, b: f32) -> f32 {
    (1.0 - a as f64 * b as f64) as f32
}

/// HSV (H in degrees / 2) to (r, g, b) in [0, 1], OpenCV's `HSV2RGB` sector table; `h`
/// already in sectors (`H * 6/180`, below 6).
#[inline]
fn sectors_to_rgb(h: f32, s: f32, v: f32) -> (f32, f32, f32) {
    const SECTOR: [[usize; 3]; 6] = [[1, 3, 0], [1, 0, 2], [3, 0, 1], [0, 2, 1], [0, 1, 3], [2, 1, 0]];
    let mut sector = h.floor() as i32;
    let mut h = h - sector as f32;
    if !(0..6).contains(&sector) {
        sector = 0;
        h = 0.0;
    }
    let tab = [v, v * (1.0 - s), v * one_minus_product(s, h), v * one_minus_product(s, 1.0 - h)];
    let sd = SECTOR[sector as usize];
    // the sector table yields (b, g, r)
    (tab[sd[2]], tab[sd[1]], tab[sd[0]])
}

/// `cv2.cvtColor(COLOR_HSV2RGB)` for one 8-bit pixel as OpenCV's SIMD path computes it
/// (float math, truncated to `u8`): every pixel of a row but its last
/// `width % HSV2RGB_SIMD_PIXELS`.
pub fn hsv_to_rgb(p: [u8; 3]) -> [u8; 3] {
    let s = p[1] as f32 * (1.0 / 255.0);
    let v = p[2] as f32 * (1.0 / 255.0);
    let mut h = p[0] as f32 * (6.0f32 / 180.0);
    if h >= 6.0 {
        h %= 6.0; // only for H >= 180, which OpenCV never produces
    }
    let (r, g, b) = sectors_to_rgb(h, s, v);
    let cvt = |x: f32| (x * 255.0).clamp(0.0, 255.0) as u8;
    [cvt(r), cvt(g), cvt(b)]
}

/// The same conversion as OpenCV's scalar code computes it (`fmod`, rounding half to
/// even to `u8`): the last `width % HSV2RGB_SIMD_PIXELS` pixels of a row.
pub fn hsv_to_rgb_scalar(p: [u8; 3]) -> [u8; 3] {
    let s = p[1] as f32 * (1.0 / 255.0);
    let v = p[2] as f32 * (1.0 / 255.0);
    let (r, g, b) = if s == 0.0 { (v, v, v) } else { sectors_to_rgb((p[0] as f32 * (6.0f32 / 180.0)) % 6.0, s, v) };
    let cvt = |x: f32| (x * 255.0).round_ties_even().clamp(0.0, 255.0) as u8;
    [cvt(r), cvt(g), cvt(b)]
}

/// `cv2.cvtColor(COLOR_HSV2RGB)` of one row of HSV pixels, in place: SIMD blocks of
/// [`HSV2RGB_SIMD_PIXELS`], then the scalar tail.
pub fn hsv_to_rgb_row(row: &mut [u8]) {
    let n = row.len() / 3;
    let simd = n / HSV2RGB_SIMD_PIXELS * HSV2RGB_SIMD_PIXELS;
    for (i, px) in row.chunks_exact_mut(3).enumerate() {
        let p = [px[0], px[1], px[2]];
        px.copy_from_slice(&if i < simd { hsv_to_rgb(p) } else { hsv_to_rgb_scalar(p) });
    }
}

/// Upstream's HSV look-up tables for gains `r = [rh, rs, rv]`:
/// `hue = (x * rh) % 180`, `sat = clip(x * rs, 0, 255)`, `val = clip(x * rv, 0, 255)`,
/// each truncated to `u8` (numpy `astype`).
pub fn hsv_luts(r: [f64; 3]) -> [[u8; 256]; 3] {
    let mut luts = [[0u8; 256]; 3];
    let [hue, sat, val] = &mut luts;
    for (x, ((h, s), v)) in hue.iter_mut().zip(sat.iter_mut()).zip(val.iter_mut()).enumerate() {
        let xf = x as f64;
        *h = (xf * r[0]).rem_euclid(180.0) as u8;
        *s = (xf * r[1]).clamp(0.0, 255.0) as u8;
        *v = (xf * r[2]).clamp(0.0, 255.0) as u8;
    }
    luts
}

/// RGB→HSV, the three LUTs, HSV→RGB over the whole image, in place: upstream
/// `augment_hsv` for fixed gains.
pub fn apply_hsv_luts(img: &mut RgbImage, luts: &[[u8; 256]; 3]) {
    let t = hsv_tables();
    let simd = img.width / HSV2RGB_SIMD_PIXELS * HSV2RGB_SIMD_PIXELS;
    // neighbouring pixels are often equal: remember the last one (and its path)
    let mut last: Option<([u8; 3], bool)> = None;
    let mut last_out = [0u8; 3];
    for row in img.data.chunks_exact_mut(img.width * 3) {
        for (x, px) in row.chunks_exact_mut(3).enumerate() {
            let key = ([px[0], px[1], px[2]], x < simd);
            if last != Some(key) {
                let hsv = rgb_to_hsv_with(t, key.0);
                let mapped = [luts[0][hsv[0] as usize], luts[1][hsv[1] as usize], luts[2][hsv[2] as usize]];
                last_out = if key.1 { hsv_to_rgb(mapped) } else { hsv_to_rgb_scalar(mapped) };
                last = Some(key);
            }
            px.copy_from_slice(&last_out);
        }
    }
}

/// Upstream `augment_hsv(im, hgain, sgain, vgain)`: random gains
/// `1 + U(-1, 1) * [hgain, sgain, vgain]` applied through [`apply_hsv_luts`]. Does
/// nothing (and draws nothing) when all three gains are zero.
pub fn augment_hsv(img: &mut RgbImage, hgain: f64, sgain: f64, vgain: f64, rng: &mut Rng) {
    if hgain == 0.0 && sgain == 0.0 && vgain == 0.0 {
        return;
    }
    let r = [rng.uniform(-1.0, 1.0) * hgain + 1.0, rng.uniform(-1.0, 1.0) * sgain + 1.0, rng.uniform(-1.0, 1.0) * vgain + 1.0];
    apply_hsv_luts(img, &hsv_luts(r));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::test_images::checker;

    #[test]
    fn hsv_matches_hand_computation() {
        assert_eq!(rgb_to_hsv([255, 0, 0]), [0, 255, 255]);
        assert_eq!(rgb_to_hsv([0, 255, 0]), [60, 255, 255]);
        assert_eq!(rgb_to_hsv([0, 0, 255]), [120, 255, 255]);
        assert_eq!(rgb_to_hsv([114, 114, 114]), [0, 0, 114]);
        assert_eq!(rgb_to_hsv([0, 0, 0]), [0, 0, 0]);
        // v=128, min=32, diff=96: S = 96*255/128 = 191.25 -> 191; H = 60*32/96/2 = 10
        assert_eq!(rgb_to_hsv([128, 64, 32]), [10, 191, 128]);
        // v=g=200, min=r=50: H = (120 + 60*(100-50)/150)/2 = 70, S = 150*255/200 = 191.25
        assert_eq!(rgb_to_hsv([50, 200, 100]), [70, 191, 200]);
        // magenta-ish: v=b=255, r=255 wins ties -> (g-b)/diff*60 = -60 -> 300 deg -> 150
        assert_eq!(rgb_to_hsv([255, 0, 255]), [150, 255, 255]);

        assert_eq!(hsv_to_rgb([0, 255, 255]), [255, 0, 0]);
        assert_eq!(hsv_to_rgb([60, 255, 255]), [0, 255, 0]);
        assert_eq!(hsv_to_rgb([120, 255, 255]), [0, 0, 255]);
        assert_eq!(hsv_to_rgb([0, 0, 114]), [114, 114, 114]);
        // h=30 (60 deg) is sector 1 boundary: yellow
        assert_eq!(hsv_to_rgb([30, 255, 255]), [255, 255, 0]);
        // h=10 -> 20 deg, s=191/255, v=128/255: r=128, b=v(1-s)=32.1->32, g=v(1-s(1-1/3))=64.06->64
        assert_eq!(hsv_to_rgb([10, 191, 128]), [128, 64, 32]);
        // the scalar path rounds where the SIMD one truncates (values from OpenCV 4.14)
        assert_eq!(hsv_to_rgb([17, 200, 201]), [201, 132, 43]);
        assert_eq!(hsv_to_rgb_scalar([17, 200, 201]), [201, 133, 43]);
    }

    #[test]
    fn rows_switch_to_the_scalar_path_after_the_last_block() {
        let n = HSV2RGB_SIMD_PIXELS + 5;
        let px = [17u8, 200, 201];
        let mut row: Vec<u8> = (0..n).flat_map(|_| px).collect();
        hsv_to_rgb_row(&mut row);
        assert_eq!(row[..3], hsv_to_rgb(px));
        assert_eq!(row[(n - 1) * 3..], hsv_to_rgb_scalar(px));
    }

    #[test]
    fn hsv_luts_match_hand_computation() {
        let l = hsv_luts([1.01, 0.5, 1.3]);
        assert_eq!(l[0][0], 0);
        assert_eq!(l[0][100], 101); // 101.0
        assert_eq!(l[0][179], 0); // 180.79 % 180 = 0.79 -> 0
        assert_eq!(l[0][178], 179); // 179.78 -> 179
        assert_eq!(l[1][255], 127); // 127.5 -> 127
        assert_eq!(l[1][3], 1); // 1.5 -> 1
        assert_eq!(l[2][100], 130);
        assert_eq!(l[2][200], 255); // 260 clipped
        let id = hsv_luts([1.0, 1.0, 1.0]);
        for (x, (&h, &s)) in id[0].iter().zip(&id[1]).enumerate() {
            assert_eq!(s as usize, x);
            assert_eq!(h as usize, x % 180);
        }
    }

    #[test]
    fn hsv_zero_gain_draws_nothing_and_changes_nothing() {
        let mut img = checker(9, 7);
        let before = img.clone();
        let mut rng = Rng::new(1);
        let mut probe = rng.clone();
        augment_hsv(&mut img, 0.0, 0.0, 0.0, &mut rng);
        assert_eq!(img, before);
        assert_eq!(rng.next_u64(), probe.next_u64());
    }

    #[test]
    fn hsv_identity_gain_roundtrips_saturated_colours() {
        let mut img = RgbImage::filled(4, 1, 0);
        for (i, p) in [[255, 0, 0], [0, 255, 0], [0, 0, 255], [114, 114, 114]].into_iter().enumerate() {
            img.put(i, 0, p);
        }
        let before = img.clone();
        apply_hsv_luts(&mut img, &hsv_luts([1.0, 1.0, 1.0]));
        assert_eq!(img, before);
    }
}
