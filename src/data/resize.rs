//! `cv2.resize` for 8-bit interleaved images (INTER_LINEAR and INTER_AREA), reproducing
//! OpenCV 4.x's integer and float arithmetic, and upstream `load_image`'s resize rule
//! (utils/dataloaders.py). The one resize of yolo-qat: validation, training, letterbox
//! and plots all go through [`resize`].
//!
//! Bit-exact with OpenCV (4.10, 4.14 and 5.0 agree), checked by `resizes_match_opencv` in
//! `tests/opencv_vectors.rs` on an even and an odd source, shrinking and enlarging by
//! integer and fractional factors and one axis each way:
//! * INTER_LINEAR: 11-bit fixed-point taps from `(d + 0.5) * scale - 0.5`; columns
//!   clamped at the edges with their weights (weight 0 beyond), rows clamped only when
//!   fetched, keeping their weights; the SIMD vertical pass's `>> 4`, high 16 bits and
//!   `+ 2 >> 2` rounding. An exact 2x shrink in both axes takes OpenCV's fast area path.
//! * INTER_AREA: shrinking by an integer factor averages cells (the 2x2 case rounds half
//!   up in integers); by a fractional factor, float area weights; enlarging is bilinear
//!   with area-style coefficients.

use crate::data::image_io::RgbImage;

/// Fractional bits of the fixed-point linear coefficients (INTER_RESIZE_COEF_BITS).
const COEF_BITS: u32 = 11;
const COEF_SCALE: f32 = (1 << COEF_BITS) as f32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interpolation {
    Linear,
    Area,
}

/// Resizes `src` (`sh` rows of `sw * cn` bytes) to `dw` x `dh`, like
/// `cv2.resize(src, (dw, dh), interpolation=interp)`.
pub fn resize(src: &[u8], (sw, sh): (usize, usize), cn: usize, (dw, dh): (usize, usize), interp: Interpolation) -> Vec<u8> {
    assert!(sw > 0 && sh > 0 && dw > 0 && dh > 0 && cn > 0, "empty resize");
    assert_eq!(src.len(), sw * sh * cn, "resize: buffer size does not match its shape");
    if (sw, sh) == (dw, dh) {
        return src.to_vec();
    }
    let img = Src { data: src, w: sw, h: sh, cn };
    let inv_x = dw as f64 / sw as f64;
    let inv_y = dh as f64 / sh as f64;
    let (scale_x, scale_y) = (1.0 / inv_x, 1.0 / inv_y);
    let (iscale_x, iscale_y) = (round_f64(scale_x), round_f64(scale_y));
    let area_fast = (scale_x - iscale_x as f64).abs() < f64::EPSILON && (scale_y - iscale_y as f64).abs() < f64::EPSILON;
    // OpenCV swaps an exact 2x linear shrink for the (identical) fast area path.
    let interp = if interp == Interpolation::Linear && area_fast && iscale_x == 2 && iscale_y == 2 { Interpolation::Area } else { interp };
    let area = interp == Interpolation::Area;
    if area && scale_x >= 1.0 && scale_y >= 1.0 {
        return if area_fast { area_fast_resize(&img, (dw, dh), iscale_x as usize, iscale_y as usize) } else { area_resize(&img, (dw, dh), scale_x, scale_y) };
    }
    // INTER_AREA while enlarging is bilinear with area-style coefficients.
    linear_resize(&img, (dw, dh), (scale_x, scale_y), (inv_x, inv_y), area)
}

/// [`resize`] of an [`RgbImage`] to `w` x `h`.
pub fn resize_image(img: &RgbImage, (w, h): (usize, usize), interp: Interpolation) -> RgbImage {
    RgbImage { width: w, height: h, data: resize(&img.data, (img.width, img.height), 3, (w, h), interp) }
}

/// Upstream `load_image`: scales the image so its long side is `imgsz`, to
/// `(int(w0 * r), int(h0 * r))` with `r = imgsz / max(h0, w0)` (at least 1 pixel), with
/// INTER_LINEAR when training (`augment`) or enlarging and INTER_AREA when shrinking for
/// validation. Unchanged when `r == 1`.
pub fn load_image_resize(img: RgbImage, imgsz: usize, augment: bool) -> RgbImage {
    let (h0, w0) = (img.height as f64, img.width as f64);
    let r = imgsz as f64 / h0.max(w0);
    if r == 1.0 {
        return img;
    }
    let (w, h) = (((w0 * r) as usize).max(1), ((h0 * r) as usize).max(1));
    let interp = if augment || r > 1.0 { Interpolation::Linear } else { Interpolation::Area };
    resize_image(&img, (w, h), interp)
}

struct Src<'a> {
    data: &'a [u8],
    w: usize,
    h: usize,
    cn: usize,
}

impl Src<'_> {
    fn row(&self, y: usize) -> &[u8] {
        let stride = self.w * self.cn;
        &self.data[y * stride..(y + 1) * stride]
    }
}

/// cvRound: round half to even.
fn round_f64(v: f64) -> i64 {
    v.round_ties_even() as i64
}

fn sat_u8_f32(v: f32) -> u8 {
    v.round_ties_even().clamp(0.0, 255.0) as u8
}

fn sat_i16_f32(v: f32) -> i16 {
    v.round_ties_even().clamp(i16::MIN as f32, i16::MAX as f32) as i16
}

// ---------------------------------------------------------------- INTER_AREA, integer scale

fn area_fast_resize(img: &Src, (dw, dh): (usize, usize), sx: usize, sy: usize) -> Vec<u8> {
    let cn = img.cn;
    let mut dst = vec![0u8; dw * dh * cn];
    let full_w = (img.w / sx) * cn; // elements computed from complete cells
    let scale = 1.0f32 / (sx * sy) as f32;
    for (dy, drow) in dst.chunks_exact_mut(dw * cn).enumerate() {
        let y0 = dy * sy;
        if y0 >= img.h {
            continue;
        }
        let w = if y0 + sy <= img.h { full_w.min(dw * cn) } else { 0 };
        for (dx, d) in drow.iter_mut().enumerate() {
            let (x0, c) = ((dx / cn) * sx, dx % cn);
            *d = if dx < w && sx == 2 && sy == 2 && matches!(cn, 1 | 3 | 4) {
                // The 2x2 path rounds half up in integers, not half to even.
                let (r0, r1) = (img.row(y0), img.row(y0 + 1));
                let i = x0 * cn + c;
                let s = r0[i] as u32 + r0[i + cn] as u32 + r1[i] as u32 + r1[i + cn] as u32;
                ((s + 2) >> 2) as u8
            } else if dx < w {
                let s = cell_sum(img, x0, y0, c, sx, sy).0;
                sat_u8_f32(s as f32 * scale)
            } else {
                let (s, n) = cell_sum(img, x0, y0, c, sx, sy);
                sat_u8_f32(s as f32 / n as f32)
            };
        }
    }
    dst
}

/// Sum and count of the cell's pixels of channel `c` that lie inside the image.
fn cell_sum(img: &Src, x0: usize, y0: usize, c: usize, sx: usize, sy: usize) -> (i32, i32) {
    let (mut s, mut n) = (0i32, 0i32);
    for y in y0..(y0 + sy).min(img.h) {
        let row = img.row(y);
        for x in x0..(x0 + sx).min(img.w) {
            s += row[x * img.cn + c] as i32;
            n += 1;
        }
    }
    (s, n)
}

// ---------------------------------------------------------------- INTER_AREA, fractional scale

/// One source-to-destination weight (OpenCV's DecimateAlpha).
#[derive(Clone, Copy)]
struct Tap {
    di: usize,
    si: usize,
    alpha: f32,
}

fn area_taps(ssize: usize, dsize: usize, cn: usize, scale: f64) -> Vec<Tap> {
    let mut tab = Vec::with_capacity(ssize * 2);
    for dx in 0..dsize {
        let fsx1 = dx as f64 * scale;
        let fsx2 = fsx1 + scale;
        let cell = scale.min(ssize as f64 - fsx1);
        let mut sx2 = fsx2.floor() as i64;
        sx2 = sx2.min(ssize as i64 - 1);
        let sx1 = (fsx1.ceil() as i64).min(sx2);
        if sx1 as f64 - fsx1 > 1e-3 {
            let alpha = ((sx1 as f64 - fsx1) / cell) as f32;
            tab.push(Tap { di: dx * cn, si: (sx1 - 1) as usize * cn, alpha });
        }
        for sx in sx1..sx2 {
            tab.push(Tap { di: dx * cn, si: sx as usize * cn, alpha: (1.0 / cell) as f32 });
        }
        if fsx2 - sx2 as f64 > 1e-3 {
            let alpha = ((fsx2 - sx2 as f64).min(1.0).min(cell) / cell) as f32;
            tab.push(Tap { di: dx * cn, si: sx2 as usize * cn, alpha });
        }
    }
    tab
}

fn area_resize(img: &Src, (dw, dh): (usize, usize), scale_x: f64, scale_y: f64) -> Vec<u8> {
    let cn = img.cn;
    let width = dw * cn;
    let xtab = area_taps(img.w, dw, cn, scale_x);
    let ytab = area_taps(img.h, dh, 1, scale_y);
    let mut dst = vec![0u8; width * dh];
    let mut buf = vec![0f32; width];
    let mut sum = vec![0f32; width];
    let mut prev_dy = ytab[0].di;
    for t in &ytab {
        buf.fill(0.0);
        let row = img.row(t.si);
        for x in &xtab {
            for c in 0..cn {
                buf[x.di + c] += row[x.si + c] as f32 * x.alpha;
            }
        }
        if t.di != prev_dy {
            store_row(&sum, &mut dst[prev_dy * width..(prev_dy + 1) * width]);
            sum.iter_mut().zip(&buf).for_each(|(s, b)| *s = t.alpha * b);
            prev_dy = t.di;
        } else {
            sum.iter_mut().zip(&buf).for_each(|(s, b)| *s += t.alpha * b);
        }
    }
    store_row(&sum, &mut dst[prev_dy * width..(prev_dy + 1) * width]);
    dst
}

fn store_row(sum: &[f32], out: &mut [u8]) {
    out.iter_mut().zip(sum).for_each(|(o, s)| *o = sat_u8_f32(*s));
}

// ---------------------------------------------------------------- INTER_LINEAR (8-bit fixed point)

/// Per destination column: element offsets of the two source taps and their weights.
struct LinearAxis {
    ofs: Vec<[usize; 2]>,
    w: Vec<[i32; 2]>,
}

/// Source index and fractional offset for destination index `d` (OpenCV's fx/sx).
fn linear_coef(d: usize, scale: f64, inv_scale: f64, area: bool) -> (i64, f32) {
    if area {
        let s = (d as f64 * scale).floor() as i64;
        let f = ((d + 1) as f64 - (s + 1) as f64 * inv_scale) as f32;
        (s, if f <= 0.0 { 0.0 } else { f - f.floor() })
    } else {
        let f = ((d as f64 + 0.5) * scale - 0.5) as f32;
        let s = f.floor() as i64;
        (s, f - s as f32)
    }
}

fn fixed_weights(f: f32) -> [i16; 2] {
    [sat_i16_f32((1.0 - f) * COEF_SCALE), sat_i16_f32(f * COEF_SCALE)]
}

fn linear_axis(ssize: usize, dsize: usize, cn: usize, scale: f64, inv_scale: f64, area: bool) -> LinearAxis {
    let mut ofs = Vec::with_capacity(dsize);
    let mut w = Vec::with_capacity(dsize);
    for d in 0..dsize {
        let (mut s, mut f) = linear_coef(d, scale, inv_scale, area);
        if s < 0 {
            (s, f) = (0, 0.0);
        }
        // Past the right edge OpenCV uses the last column alone (weights 2048, 0).
        if s >= ssize as i64 - 1 {
            (s, f) = (ssize as i64 - 1, 0.0);
        }
        let s = s as usize;
        ofs.push([s * cn, (s + 1).min(ssize - 1) * cn]);
        w.push(fixed_weights(f).map(i32::from));
    }
    LinearAxis { ofs, w }
}

fn linear_resize(img: &Src, (dw, dh): (usize, usize), (scale_x, scale_y): (f64, f64), (inv_x, inv_y): (f64, f64), area: bool) -> Vec<u8> {
    let cn = img.cn;
    let xa = linear_axis(img.w, dw, cn, scale_x, inv_x, area);
    let ya = linear_rows(dh, scale_y, inv_y, area);
    let width = dw * cn;
    let mut dst = vec![0u8; width * dh];
    let mut cache = RowCache { rows: [(usize::MAX, vec![0; width]), (usize::MAX, vec![0; width])] };
    for (dy, drow) in dst.chunks_exact_mut(width).enumerate() {
        let (sy, [b0, b1]) = ya[dy];
        let top = sy.clamp(0, img.h as i64 - 1) as usize;
        let bottom = (sy + 1).clamp(0, img.h as i64 - 1) as usize;
        let t = cache.fetch(top, bottom, img, &xa, cn);
        let b = cache.fetch(bottom, top, img, &xa, cn);
        vresize_row(&cache.rows[t].1, &cache.rows[b].1, b0 as i32, b1 as i32, drow);
    }
    dst
}

/// The last two horizontally resized source rows, as OpenCV reuses them.
struct RowCache {
    rows: [(usize, Vec<i32>); 2],
}

impl RowCache {
    /// Slot holding source row `y`, computed if needed without evicting row `keep`.
    fn fetch(&mut self, y: usize, keep: usize, img: &Src, xa: &LinearAxis, cn: usize) -> usize {
        if let Some(i) = (0..2).find(|&i| self.rows[i].0 == y) {
            return i;
        }
        // Rows only move down: an empty slot, else the smaller row, is the stale one.
        let age = |i: usize| self.rows[i].0.wrapping_add(1);
        let slot = if self.rows[0].0 == keep {
            1
        } else if self.rows[1].0 == keep {
            0
        } else {
            usize::from(age(1) < age(0))
        };
        hresize_row(img.row(y), xa, cn, &mut self.rows[slot].1);
        self.rows[slot].0 = y;
        slot
    }
}

/// Vertical taps: unlike columns, rows are clamped only when fetched.
fn linear_rows(dsize: usize, scale: f64, inv_scale: f64, area: bool) -> Vec<(i64, [i16; 2])> {
    (0..dsize)
        .map(|d| {
            let (s, f) = linear_coef(d, scale, inv_scale, area);
            (s, fixed_weights(f))
        })
        .collect()
}

fn hresize_row(row: &[u8], xa: &LinearAxis, cn: usize, out: &mut [i32]) {
    if cn == 3 {
        return hresize_row_rgb(row, xa, out);
    }
    for ((o, &[s0, s1]), &[a0, a1]) in out.chunks_exact_mut(cn).zip(&xa.ofs).zip(&xa.w) {
        for (c, v) in o.iter_mut().enumerate() {
            *v = row[s0 + c] as i32 * a0 + row[s1 + c] as i32 * a1;
        }
    }
}

/// [`hresize_row`] for RGB, the loader's case: fixed-size pixels, so no per-channel bounds
/// checks or loop (the same arithmetic).
fn hresize_row_rgb(row: &[u8], xa: &LinearAxis, out: &mut [i32]) {
    for ((o, &[s0, s1]), &[a0, a1]) in out.chunks_exact_mut(3).zip(&xa.ofs).zip(&xa.w) {
        let (p0, p1): (&[u8; 3], &[u8; 3]) = (row[s0..s0 + 3].try_into().expect("3 bytes"), row[s1..s1 + 3].try_into().expect("3 bytes"));
        let o: &mut [i32; 3] = o.try_into().expect("3 values");
        for c in 0..3 {
            o[c] = p0[c] as i32 * a0 + p1[c] as i32 * a1;
        }
    }
}

/// OpenCV's SIMD vertical pass (used for whole rows in 4.x): each tap is
/// pre-shifted by 4, multiplied keeping the high 16 bits, then rounded by 2 bits.
fn vresize_row(r0: &[i32], r1: &[i32], b0: i32, b1: i32, out: &mut [u8]) {
    let n = out.len();
    let (r0, r1) = (&r0[..n], &r1[..n]);
    // Indexed over equal-length slices so the compiler vectorizes it (same arithmetic).
    for i in 0..n {
        let a = ((r0[i] >> 4).clamp(-32768, 32767) * b0) >> 16;
        let b = ((r1[i] >> 4).clamp(-32768, 32767) * b1) >> 16;
        out[i] = ((a + b + 2) >> 2).clamp(0, 255) as u8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Interpolation::{Area, Linear};

    // Expected outputs were produced by cv2.resize (opencv-python-headless 4.14.0;
    // 4.8.1 and 5.0.0 agree) and, where noted, checked by hand.

    #[test]
    fn area_fractional_scale() {
        let src = [10, 20, 30, 40, 250, 0, 255, 128, 7, 9, 100, 101, 102, 103, 104];
        // dst[0]: x weights 0.6/0.4, y weights 2/3, 1/3:
        // 2/3 * (0.6*10 + 0.4*20) + 1/3 * (0.6*0 + 0.4*255) = 43.33 -> 43
        assert_eq!(resize(&src, (5, 3), 1, (3, 2), Area), [43, 63, 113, 101, 111, 72]);
    }

    #[test]
    fn area_integer_scale_rounds_half_up_for_2x2() {
        // 1+2+3+4 = 10 -> 2.5 -> 3 (the SIMD-compatible (sum + 2) >> 2)
        assert_eq!(resize(&[1, 2, 3, 4], (2, 2), 1, (1, 1), Area), [3]);
        let src = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 0, 0, 255, 254];
        assert_eq!(resize(&src, (4, 4), 1, (2, 2), Area), [4, 6, 5, 133]);
        // an exact 2x linear shrink takes the same path
        assert_eq!(resize(&src, (4, 4), 1, (2, 2), Linear), [4, 6, 5, 133]);
        // 3x3 cells: sum 13 * (1/9) = 1.44 -> 1
        assert_eq!(resize(&[1, 2, 1, 3, 4, 0, 0, 0, 2], (3, 3), 1, (1, 1), Area), [1]);
    }

    #[test]
    fn linear_enlarge_with_edge_clamping() {
        let src = [0, 100, 200, 50, 150, 255];
        let expected = [
            0, 14, 57, 100, 143, 186, 200, 5, 19, 62, 105, 148, 191, 205, 25, 39, 82, 125, 169, 213, 228, 45, 59, 102, 145, 190, 234, 249, 50, 64, 107, 150,
            195, 240, 255,
        ];
        assert_eq!(resize(&src, (3, 2), 1, (7, 5), Linear), expected);
    }

    #[test]
    fn area_enlarge_is_area_weighted_bilinear() {
        let src = [0, 100, 200, 50, 150, 255];
        let expected = [0, 33, 100, 167, 200, 0, 33, 100, 167, 200, 50, 83, 150, 220, 255, 50, 83, 150, 220, 255];
        assert_eq!(resize(&src, (3, 2), 1, (5, 4), Area), expected);
    }

    #[test]
    fn three_channels() {
        let src: Vec<u8> = (0..18).map(|v| v * 13).collect();
        let expected = [
            0, 13, 26, 10, 23, 36, 29, 42, 55, 49, 62, 75, 68, 81, 94, 78, 91, 104, 29, 42, 55, 39, 52, 65, 58, 71, 84, 78, 91, 104, 97, 110, 123, 107, 120,
            133, 88, 101, 114, 97, 110, 123, 117, 130, 143, 136, 149, 162, 156, 169, 182, 166, 179, 192, 117, 130, 143, 127, 140, 153, 146, 159, 172, 166, 179,
            192, 185, 198, 211, 195, 208, 221,
        ];
        assert_eq!(resize(&src, (3, 2), 3, (6, 4), Linear), expected);
        let src: Vec<u8> = (0..162).collect();
        let expected = [
            15, 16, 18, 22, 23, 24, 29, 30, 31, 36, 36, 38, 70, 70, 72, 76, 77, 78, 83, 84, 85, 90, 90, 92, 124, 124, 126, 130, 131, 132, 137, 138, 139, 144,
            144, 146,
        ];
        assert_eq!(resize(&src, (9, 6), 3, (4, 3), Area), expected);
    }

    #[test]
    fn load_image_resize_truncates_the_short_side_like_upstream_yolov9() {
        // cv2.resize(im, (int(w0 * r), int(h0 * r))): 332 * 256/498 = 170.67 -> 170, and
        // 498 * (256/498) = 255.99999999999997 -> 255 in Python's float64 as here.
        let img = RgbImage::filled(498, 332, 0);
        assert_eq!(load_image_resize(img.clone(), 256, false).hw(), (170, 255));
        let img = RgbImage::filled(40, 30, 9);
        assert_eq!(load_image_resize(img.clone(), 40, true), img);
        assert_eq!(load_image_resize(img, 64, false).hw(), (48, 64));
    }

    #[test]
    fn same_size_is_a_copy() {
        assert_eq!(resize(&[1, 2, 3], (1, 1), 3, (1, 1), Area), [1, 2, 3]);
    }
}
