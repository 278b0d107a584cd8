//! Training-time image augmentations, after upstream YOLOv9
//! `utils/augmentations.py` (`augment_hsv`, `letterbox`, `random_perspective`,
//! `mixup`, `box_candidates`) and the flips of
//! `LoadImagesAndLabels.__getitem__`.
//!
//! Everything here is a pure function on [`Rgb8`] (RGB, HWC, `u8`) buffers and
//! pixel-space [`BoxLabel`]s, drawing randomness from the small deterministic
//! [`Rng`]. Upstream works on BGR images; colour conversions here use the RGB
//! variants of the same OpenCV formulas, so results are the same.
//!
//! Pixel-level fidelity to OpenCV's 8-bit code paths. Each of these was
//! checked bit-exact against opencv-python-headless 4.14 (x86-64): all 2^24
//! RGB→HSV colours, all 180x256x256 HSV→RGB values, and resizes and warps of
//! a real image:
//! * RGB→HSV: OpenCV's integer algorithm (`hsv_shift = 12` division tables).
//! * HSV→RGB: OpenCV's vectorised float algorithm (`hscale = 6/180`, fused
//!   `1 - s*h`, truncation to `u8`). OpenCV's scalar tail (the last
//!   `width mod 32|64` pixels of a row) rounds instead; widths that are
//!   multiples of 64, as `imgsz` 320/640 are, have no tail.
//! * `resize_linear`: `cv2.resize(INTER_LINEAR)` (11-bit fixed point; edge
//!   weights clamped horizontally, not vertically, as OpenCV does).
//! * `warp_affine` / `warp_perspective`: `cv2.warpAffine` /
//!   `cv2.warpPerspective` with INTER_LINEAR: every output pixel is
//!   inverse-mapped to 1/32-pixel fixed point and sampled bilinearly with
//!   15-bit weights, constant border 114.

use std::sync::OnceLock;

use crate::data::hyp::Hyp;

/// Grey used for padding (letterbox, mosaic canvas, warp border).
pub const PAD_VALUE: u8 = 114;

// ---------------------------------------------------------------------------
// Image and label types
// ---------------------------------------------------------------------------

/// An 8-bit RGB image, rows of `width` pixels of 3 bytes (HWC).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rgb8 {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl Rgb8 {
    /// A `width` x `height` image with every byte set to `value`.
    pub fn filled(width: usize, height: usize, value: u8) -> Self {
        Rgb8 { width, height, data: vec![value; width * height * 3] }
    }

    /// Wraps a raw HWC buffer; `None` when its length is not `width*height*3`.
    pub fn from_raw(width: usize, height: usize, data: Vec<u8>) -> Option<Self> {
        (data.len() == width * height * 3).then_some(Rgb8 { width, height, data })
    }

    #[inline]
    pub fn get(&self, x: usize, y: usize) -> [u8; 3] {
        let i = (y * self.width + x) * 3;
        [self.data[i], self.data[i + 1], self.data[i + 2]]
    }

    #[inline]
    pub fn put(&mut self, x: usize, y: usize, p: [u8; 3]) {
        let i = (y * self.width + x) * 3;
        self.data[i..i + 3].copy_from_slice(&p);
    }

    /// Fills the pixel rectangle `[x0, x1) x [y0, y1)` (clamped to the image).
    pub fn fill_rect(&mut self, x0: usize, y0: usize, x1: usize, y1: usize, p: [u8; 3]) {
        let (x1, y1) = (x1.min(self.width), y1.min(self.height));
        for y in y0..y1 {
            for x in x0..x1 {
                self.put(x, y, p);
            }
        }
    }

    /// Writes the image as planar CHW into `out` (`3 * width * height` bytes).
    pub fn write_chw(&self, out: &mut [u8]) {
        let plane = self.width * self.height;
        assert_eq!(out.len(), 3 * plane, "CHW buffer size");
        let (r, rest) = out.split_at_mut(plane);
        let (g, b) = rest.split_at_mut(plane);
        for (i, px) in self.data.chunks_exact(3).enumerate() {
            r[i] = px[0];
            g[i] = px[1];
            b[i] = px[2];
        }
    }
}

/// A box label in pixels: class and corners `x1, y1, x2, y2`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BoxLabel {
    pub cls: usize,
    pub xyxy: [f32; 4],
}

/// Upstream `xywhn2xyxy`: normalized centre/size to pixel corners, scaled by
/// `w`, `h` and offset by `padw`, `padh`.
pub fn xywhn_to_xyxy(b: [f32; 4], w: f64, h: f64, padw: f64, padh: f64) -> [f32; 4] {
    let (w, h, pw, ph) = (w as f32, h as f32, padw as f32, padh as f32);
    [w * (b[0] - b[2] / 2.0) + pw, h * (b[1] - b[3] / 2.0) + ph, w * (b[0] + b[2] / 2.0) + pw, h * (b[1] + b[3] / 2.0) + ph]
}

/// Upstream `xyxy2xywhn(clip=True, eps)`: clips corners to
/// `[0, w - eps] x [0, h - eps]`, then converts to normalized centre/size.
pub fn xyxy_to_xywhn_clip(b: [f32; 4], w: f64, h: f64, eps: f64) -> [f32; 4] {
    let (cw, ch) = ((w - eps) as f32, (h - eps) as f32);
    let x1 = b[0].clamp(0.0, cw);
    let y1 = b[1].clamp(0.0, ch);
    let x2 = b[2].clamp(0.0, cw);
    let y2 = b[3].clamp(0.0, ch);
    let (w, h) = (w as f32, h as f32);
    [((x1 + x2) / 2.0) / w, ((y1 + y2) / 2.0) / h, (x2 - x1) / w, (y2 - y1) / h]
}

// ---------------------------------------------------------------------------
// Random numbers
// ---------------------------------------------------------------------------

/// Small deterministic PRNG (xoshiro256++ seeded through SplitMix64).
#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
}

#[inline]
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        let mut x = seed;
        let s = [splitmix64(&mut x), splitmix64(&mut x), splitmix64(&mut x), splitmix64(&mut x)];
        Rng { s }
    }

    /// A stream keyed by several numbers, e.g. `(seed, epoch, index)`; distinct
    /// keys give independent streams.
    pub fn from_parts(parts: &[u64]) -> Self {
        let mut h = 0x243F_6A88_85A3_08D3u64;
        for &p in parts {
            let mut x = h ^ p;
            h = splitmix64(&mut x);
        }
        Rng::new(h)
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in `[0, 1)` (Python `random.random()`).
    #[inline]
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// `lo + (hi - lo) * random()` (Python `random.uniform`).
    #[inline]
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.f64()
    }

    /// Uniform integer in `[0, n)`, unbiased. Panics if `n == 0`.
    pub fn below(&mut self, n: usize) -> usize {
        assert!(n > 0, "Rng::below(0)");
        let n = n as u64;
        let threshold = n.wrapping_neg() % n;
        loop {
            let m = (self.next_u64() as u128) * (n as u128);
            if (m as u64) >= threshold {
                return (m >> 64) as usize;
            }
        }
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.f64(); // (0, 1]
        let u2 = self.f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Gamma(shape, 1) (Marsaglia-Tsang).
    pub fn gamma(&mut self, shape: f64) -> f64 {
        assert!(shape > 0.0, "gamma shape must be positive");
        if shape < 1.0 {
            let u = self.f64().max(f64::MIN_POSITIVE);
            return self.gamma(shape + 1.0) * u.powf(1.0 / shape);
        }
        let d = shape - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        loop {
            let x = self.normal();
            let v = 1.0 + c * x;
            if v <= 0.0 {
                continue;
            }
            let v = v * v * v;
            let u = self.f64();
            if u < 1.0 - 0.0331 * x * x * x * x || u.max(f64::MIN_POSITIVE).ln() < 0.5 * x * x + d * (1.0 - v + v.ln()) {
                return d * v;
            }
        }
    }

    /// Beta(a, b) (numpy `random.beta`).
    pub fn beta(&mut self, a: f64, b: f64) -> f64 {
        let x = self.gamma(a);
        let y = self.gamma(b);
        x / (x + y)
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
}

// ---------------------------------------------------------------------------
// Resize and letterbox
// ---------------------------------------------------------------------------

const RESIZE_BITS: u32 = 11;
const RESIZE_ONE: f32 = (1 << RESIZE_BITS) as f32;

/// Per-output-coordinate source taps and fixed-point weights, as
/// `cv2.resize(INTER_LINEAR)` computes them. OpenCV clamps the coordinate
/// (weight 0 beyond the edge) horizontally, but vertically only clamps the
/// source rows and keeps the weights (`clamp_weights = false`).
fn linear_taps(src_len: usize, dst_len: usize, clamp_weights: bool) -> Vec<(usize, usize, i32, i32)> {
    let inv_scale = dst_len as f64 / src_len as f64;
    let scale = 1.0 / inv_scale;
    let last = src_len as i64 - 1;
    (0..dst_len)
        .map(|d| {
            let fx = ((d as f64 + 0.5) * scale - 0.5) as f32;
            let mut sx = fx.floor() as i64;
            let mut f = fx - sx as f32;
            if clamp_weights {
                if sx < 0 {
                    sx = 0;
                    f = 0.0;
                }
                if sx >= last {
                    sx = last;
                    f = 0.0;
                }
            }
            let a0 = ((1.0 - f) * RESIZE_ONE).round_ties_even() as i32;
            let a1 = (f * RESIZE_ONE).round_ties_even() as i32;
            (sx.clamp(0, last) as usize, (sx + 1).clamp(0, last) as usize, a0, a1)
        })
        .collect()
}

/// Bilinear resize with `cv2.resize(..., interpolation=INTER_LINEAR)`
/// semantics (half-pixel centres, edge clamping, 11-bit fixed point).
pub fn resize_linear(src: &Rgb8, dst_w: usize, dst_h: usize) -> Rgb8 {
    assert!(src.width > 0 && src.height > 0 && dst_w > 0 && dst_h > 0, "resize of an empty image");
    if src.width == dst_w && src.height == dst_h {
        return src.clone();
    }
    let xt = linear_taps(src.width, dst_w, true);
    let yt = linear_taps(src.height, dst_h, false);
    let mut out = Rgb8 { width: dst_w, height: dst_h, data: vec![0; dst_w * dst_h * 3] };
    let row_len = dst_w * 3;
    // Horizontally resampled source rows, cached by source row index.
    let mut rows: [(usize, Vec<i32>); 2] = [(usize::MAX, vec![0; row_len]), (usize::MAX, vec![0; row_len])];
    let hresize = |sy: usize, buf: &mut [i32]| {
        let srow = &src.data[sy * src.width * 3..(sy + 1) * src.width * 3];
        for (dx, &(x0, x1, a0, a1)) in xt.iter().enumerate() {
            let (p, q) = (x0 * 3, x1 * 3);
            let o = dx * 3;
            buf[o] = srow[p] as i32 * a0 + srow[q] as i32 * a1;
            buf[o + 1] = srow[p + 1] as i32 * a0 + srow[q + 1] as i32 * a1;
            buf[o + 2] = srow[p + 2] as i32 * a0 + srow[q + 2] as i32 * a1;
        }
    };
    for (dy, &(y0, y1, b0, b1)) in yt.iter().enumerate() {
        // make rows[0] hold y0 and rows[1] hold y1
        if rows[0].0 != y0 {
            if rows[1].0 == y0 {
                rows.swap(0, 1);
            } else {
                hresize(y0, &mut rows[0].1);
                rows[0].0 = y0;
            }
        }
        if rows[1].0 != y1 {
            hresize(y1, &mut rows[1].1);
            rows[1].0 = y1;
        }
        let (r0, r1) = (&rows[0].1, &rows[1].1);
        let orow = &mut out.data[dy * row_len..(dy + 1) * row_len];
        for i in 0..row_len {
            // OpenCV's vectorised 8-bit vertical pass
            let v = (((b0 * (r0[i] >> 4)) >> 16) + ((b1 * (r1[i] >> 4)) >> 16) + 2) >> 2;
            orow[i] = v.clamp(0, 255) as u8;
        }
    }
    out
}

/// Upstream `load_image` resize rule: scale so the long side is `imgsz`
/// (`int(w0 * r)`, `int(h0 * r)` with `r = imgsz / max(h0, w0)`), bilinear.
pub fn resize_long_side(src: &Rgb8, imgsz: usize) -> Rgb8 {
    let r = imgsz as f64 / src.width.max(src.height) as f64;
    if r == 1.0 {
        return src.clone();
    }
    let w = ((src.width as f64 * r) as usize).max(1);
    let h = ((src.height as f64 * r) as usize).max(1);
    resize_linear(src, w, h)
}

/// Upstream `letterbox(im, new_shape, auto=False, scaleup)` to a square
/// `new_shape` canvas, grey 114. Returns the image, the scale ratio and the
/// (fractional) padding `(dw, dh)` that labels are shifted by.
pub fn letterbox(src: &Rgb8, new_shape: usize, scaleup: bool) -> (Rgb8, f64, (f64, f64)) {
    let (h, w) = (src.height as f64, src.width as f64);
    let s = new_shape as f64;
    let mut r = (s / h).min(s / w);
    if !scaleup {
        r = r.min(1.0);
    }
    let new_w = (w * r).round_ties_even() as usize;
    let new_h = (h * r).round_ties_even() as usize;
    let dw = (new_shape as f64 - new_w as f64) / 2.0;
    let dh = (new_shape as f64 - new_h as f64) / 2.0;
    let resized;
    let im = if (src.width, src.height) != (new_w, new_h) {
        resized = resize_linear(src, new_w, new_h);
        &resized
    } else {
        src
    };
    let top = (dh - 0.1).round_ties_even().max(0.0) as usize;
    let left = (dw - 0.1).round_ties_even().max(0.0) as usize;
    let mut out = Rgb8::filled(new_shape, new_shape, PAD_VALUE);
    let copy_w = new_w.min(new_shape.saturating_sub(left));
    for y in 0..new_h.min(new_shape.saturating_sub(top)) {
        let so = y * new_w * 3;
        let o = ((top + y) * new_shape + left) * 3;
        out.data[o..o + copy_w * 3].copy_from_slice(&im.data[so..so + copy_w * 3]);
    }
    (out, r, (dw, dh))
}

// ---------------------------------------------------------------------------
// HSV
// ---------------------------------------------------------------------------

const HSV_SHIFT: u32 = 12;

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

/// `cv2.cvtColor(COLOR_RGB2HSV)` for one 8-bit pixel: H in `[0, 180)`, S and V
/// in `[0, 255]`.
pub fn rgb_to_hsv(p: [u8; 3]) -> [u8; 3] {
    rgb_to_hsv_with(hsv_tables(), p)
}

/// `cv2.cvtColor(COLOR_HSV2RGB)` for one 8-bit pixel (H in degrees / 2), as
/// OpenCV's vectorised path computes it (float math, truncated to `u8`).
pub fn hsv_to_rgb(p: [u8; 3]) -> [u8; 3] {
    let h = p[0] as f32;
    let s = p[1] as f32 * (1.0 / 255.0);
    let v = p[2] as f32 * (1.0 / 255.0);
    let (r, g, b) = if s == 0.0 {
        (v, v, v)
    } else {
        const SECTOR: [[usize; 3]; 6] = [[1, 3, 0], [1, 0, 2], [3, 0, 1], [0, 2, 1], [0, 1, 3], [2, 1, 0]];
        let mut h = h * (6.0f32 / 180.0);
        if h >= 6.0 {
            h %= 6.0; // only for H >= 180, which OpenCV never produces
        }
        let mut sector = h as i32; // h >= 0: truncation is floor
        h -= sector as f32;
        if !(0..6).contains(&sector) {
            sector = 0;
            h = 0.0;
        }
        // OpenCV's SIMD build contracts `1 - s*h` into a fused multiply-add;
        // an f64 product is exact, so this matches it (bar double rounding).
        let fms = |a: f32, b: f32| (1.0 - a as f64 * b as f64) as f32;
        let tab = [v, v * (1.0 - s), v * fms(s, h), v * fms(s, 1.0 - h)];
        let sd = SECTOR[sector as usize];
        // sector table yields (b, g, r)
        (tab[sd[2]], tab[sd[1]], tab[sd[0]])
    };
    // OpenCV's vectorised 8-bit path truncates (its scalar tail rounds)
    let cvt = |x: f32| (x * 255.0).clamp(0.0, 255.0) as u8;
    [cvt(r), cvt(g), cvt(b)]
}

/// Upstream's HSV look-up tables for gains `r = [rh, rs, rv]`:
/// `hue = (x * rh) % 180`, `sat = clip(x * rs, 0, 255)`,
/// `val = clip(x * rv, 0, 255)`, each truncated to `u8`.
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

/// RGB→HSV, per-channel LUT, HSV→RGB over the whole image, in place.
pub fn apply_hsv_luts(img: &mut Rgb8, luts: &[[u8; 256]; 3]) {
    let t = hsv_tables();
    let mut last_in: Option<[u8; 3]> = None;
    let mut last_out = [0u8; 3];
    for px in img.data.chunks_exact_mut(3) {
        let p = [px[0], px[1], px[2]];
        if last_in != Some(p) {
            let hsv = rgb_to_hsv_with(t, p);
            last_out = hsv_to_rgb([luts[0][hsv[0] as usize], luts[1][hsv[1] as usize], luts[2][hsv[2] as usize]]);
            last_in = Some(p);
        }
        px.copy_from_slice(&last_out);
    }
}

/// Upstream `augment_hsv`: random gains `1 + U(-1, 1) * [hgain, sgain, vgain]`
/// applied through LUTs in HSV. Does nothing (and draws nothing) when all
/// three gains are zero.
pub fn augment_hsv(img: &mut Rgb8, hgain: f64, sgain: f64, vgain: f64, rng: &mut Rng) {
    if hgain == 0.0 && sgain == 0.0 && vgain == 0.0 {
        return;
    }
    let r = [rng.uniform(-1.0, 1.0) * hgain + 1.0, rng.uniform(-1.0, 1.0) * sgain + 1.0, rng.uniform(-1.0, 1.0) * vgain + 1.0];
    apply_hsv_luts(img, &hsv_luts(r));
}

// ---------------------------------------------------------------------------
// Flips
// ---------------------------------------------------------------------------

/// Mirror left-right in place (`np.fliplr`).
pub fn flip_lr(img: &mut Rgb8) {
    let w = img.width;
    for row in img.data.chunks_exact_mut(w * 3) {
        for x in 0..w / 2 {
            let (a, b) = (x * 3, (w - 1 - x) * 3);
            for c in 0..3 {
                row.swap(a + c, b + c);
            }
        }
    }
}

/// Mirror up-down in place (`np.flipud`).
pub fn flip_ud(img: &mut Rgb8) {
    let stride = img.width * 3;
    let h = img.height;
    for y in 0..h / 2 {
        let (top, bottom) = img.data.split_at_mut((h - 1 - y) * stride);
        top[y * stride..(y + 1) * stride].swap_with_slice(&mut bottom[..stride]);
    }
}

// ---------------------------------------------------------------------------
// Perspective / affine warp
// ---------------------------------------------------------------------------

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
fn sample_fixed(src: &Rgb8, xq: i32, yq: i32, out: &mut [u8]) {
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
pub fn warp_affine(src: &Rgb8, m: &Mat3, out_w: usize, out_h: usize) -> Rgb8 {
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
    let mut out = Rgb8 { width: out_w, height: out_h, data: vec![0; out_w * out_h * 3] };
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
pub fn warp_perspective(src: &Rgb8, m: &Mat3, out_w: usize, out_h: usize) -> Rgb8 {
    let inv = invert(m);
    let mut out = Rgb8 { width: out_w, height: out_h, data: vec![0; out_w * out_h * 3] };
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

/// Geometric augmentation parameters (upstream hyp names and meanings).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WarpParams {
    pub degrees: f64,
    pub translate: f64,
    pub scale: f64,
    pub shear: f64,
    pub perspective: f64,
}

impl From<&Hyp> for WarpParams {
    fn from(h: &Hyp) -> Self {
        WarpParams { degrees: h.degrees, translate: h.translate, scale: h.scale, shear: h.shear, perspective: h.perspective }
    }
}

/// Upstream's random matrix `M = T @ S @ R @ P @ C` for a source of
/// `in_w x in_h` warped to `out_w x out_h`; also returns the drawn scale `s`.
/// Draw order: perspective x, y; angle; scale; shear x, y; translate x, y.
pub fn random_perspective_matrix(in_w: usize, in_h: usize, out_w: usize, out_h: usize, p: &WarpParams, rng: &mut Rng) -> (Mat3, f64) {
    let mut c = IDENTITY;
    c[0][2] = -(in_w as f64) / 2.0;
    c[1][2] = -(in_h as f64) / 2.0;

    let mut pm = IDENTITY;
    pm[2][0] = rng.uniform(-p.perspective, p.perspective);
    pm[2][1] = rng.uniform(-p.perspective, p.perspective);

    let a = rng.uniform(-p.degrees, p.degrees);
    let s = rng.uniform(1.0 - p.scale, 1.0 + p.scale);
    // cv2.getRotationMatrix2D(angle=a, center=(0, 0), scale=s)
    let rad = a.to_radians();
    let (alpha, beta) = (rad.cos() * s, rad.sin() * s);
    let r = [[alpha, beta, 0.0], [-beta, alpha, 0.0], [0.0, 0.0, 1.0]];

    let mut sh = IDENTITY;
    sh[0][1] = (rng.uniform(-p.shear, p.shear) * std::f64::consts::PI / 180.0).tan();
    sh[1][0] = (rng.uniform(-p.shear, p.shear) * std::f64::consts::PI / 180.0).tan();

    let mut t = IDENTITY;
    t[0][2] = rng.uniform(0.5 - p.translate, 0.5 + p.translate) * out_w as f64;
    t[1][2] = rng.uniform(0.5 - p.translate, 0.5 + p.translate) * out_h as f64;

    let m = matmul(&t, &matmul(&sh, &matmul(&r, &matmul(&pm, &c))));
    (m, s)
}

/// Upstream `box_candidates(box1, box2, wh_thr=2, ar_thr=100, area_thr)`:
/// `before` is the (scaled) box before augmentation, `after` the warped one.
pub fn box_candidates(before: [f64; 4], after: [f64; 4], wh_thr: f64, ar_thr: f64, area_thr: f64) -> bool {
    const EPS: f64 = 1e-16;
    let (w1, h1) = (before[2] - before[0], before[3] - before[1]);
    let (w2, h2) = (after[2] - after[0], after[3] - after[1]);
    let ar = (w2 / (h2 + EPS)).max(h2 / (w2 + EPS));
    w2 > wh_thr && h2 > wh_thr && w2 * h2 / (w1 * h1 + EPS) > area_thr && ar < ar_thr
}

/// Warps box labels by `m` (corners, then their bounding box), clips them to
/// `width x height` and keeps upstream's box candidates (`area_thr = 0.10`).
pub fn transform_boxes(labels: &[BoxLabel], m: &Mat3, s: f64, width: usize, height: usize, perspective: bool) -> Vec<BoxLabel> {
    let (wf, hf) = (width as f64, height as f64);
    labels
        .iter()
        .filter_map(|l| {
            let [x1, y1, x2, y2] = l.xyxy.map(|v| v as f64);
            let corners = [(x1, y1), (x2, y2), (x1, y2), (x2, y1)];
            let mut lo = [f64::INFINITY; 2];
            let mut hi = [f64::NEG_INFINITY; 2];
            for (x, y) in corners {
                let mut u = m[0][0] * x + m[0][1] * y + m[0][2];
                let mut v = m[1][0] * x + m[1][1] * y + m[1][2];
                if perspective {
                    let w = m[2][0] * x + m[2][1] * y + m[2][2];
                    u /= w;
                    v /= w;
                }
                lo = [lo[0].min(u), lo[1].min(v)];
                hi = [hi[0].max(u), hi[1].max(v)];
            }
            let new = [lo[0].clamp(0.0, wf), lo[1].clamp(0.0, hf), hi[0].clamp(0.0, wf), hi[1].clamp(0.0, hf)];
            let before = [x1 * s, y1 * s, x2 * s, y2 * s];
            box_candidates(before, new, 2.0, 100.0, 0.10).then(|| BoxLabel { cls: l.cls, xyxy: new.map(|v| v as f32) })
        })
        .collect()
}

/// Upstream `random_perspective(im, targets, degrees, translate, scale, shear,
/// perspective, border)`. `border = (border_y, border_x)` grows (positive) or
/// crops (negative, e.g. `-imgsz/2` for a mosaic) the output on each side.
/// Labels are pixel corners in and out.
pub fn random_perspective(img: &Rgb8, labels: &[BoxLabel], p: &WarpParams, border: (i64, i64), rng: &mut Rng) -> (Rgb8, Vec<BoxLabel>) {
    let height = (img.height as i64 + border.0 * 2).max(1) as usize;
    let width = (img.width as i64 + border.1 * 2).max(1) as usize;
    let (m, s) = random_perspective_matrix(img.width, img.height, width, height, p, rng);
    let changed = border != (0, 0) || m != IDENTITY;
    let out = if !changed {
        img.clone()
    } else if p.perspective != 0.0 {
        warp_perspective(img, &m, width, height)
    } else {
        warp_affine(img, &m, width, height)
    };
    let labels = transform_boxes(labels, &m, s, width, height, p.perspective != 0.0);
    (out, labels)
}

// ---------------------------------------------------------------------------
// MixUp
// ---------------------------------------------------------------------------

/// Upstream `mixup`: `r ~ Beta(32, 32)`, `img = uint8(img * r + img2 * (1 - r))`
/// (truncating, as numpy's `astype`), labels concatenated.
pub fn mixup(img: &mut Rgb8, labels: &mut Vec<BoxLabel>, img2: &Rgb8, labels2: &[BoxLabel], rng: &mut Rng) {
    assert_eq!((img.width, img.height), (img2.width, img2.height), "mixup of different sizes");
    let r = rng.beta(32.0, 32.0);
    let mut ta = [0f64; 256];
    let mut tb = [0f64; 256];
    for i in 0..256 {
        ta[i] = i as f64 * r;
        tb[i] = i as f64 * (1.0 - r);
    }
    for (a, &b) in img.data.iter_mut().zip(&img2.data) {
        *a = (ta[*a as usize] + tb[b as usize]) as u8;
    }
    labels.extend_from_slice(labels2);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checker(w: usize, h: usize) -> Rgb8 {
        let mut img = Rgb8::filled(w, h, 0);
        for y in 0..h {
            for x in 0..w {
                img.put(x, y, [(x * 7 + y * 3) as u8, (x * 13) as u8 ^ (y as u8), (255 - x - y) as u8]);
            }
        }
        img
    }

    #[test]
    fn rng_is_deterministic_and_uniformish() {
        let mut a = Rng::from_parts(&[1, 2, 3]);
        let mut b = Rng::from_parts(&[1, 2, 3]);
        let mut c = Rng::from_parts(&[1, 2, 4]);
        let va: Vec<u64> = (0..8).map(|_| a.next_u64()).collect();
        let vb: Vec<u64> = (0..8).map(|_| b.next_u64()).collect();
        let vc: Vec<u64> = (0..8).map(|_| c.next_u64()).collect();
        assert_eq!(va, vb);
        assert_ne!(va, vc);
        let mut r = Rng::new(7);
        let n = 20000;
        let mean = (0..n).map(|_| r.f64()).sum::<f64>() / n as f64;
        assert!((mean - 0.5).abs() < 0.01, "{mean}");
        let mut counts = [0usize; 5];
        for _ in 0..n {
            counts[r.below(5)] += 1;
        }
        assert!(counts.iter().all(|&c| (c as f64 - 4000.0).abs() < 300.0), "{counts:?}");
    }

    #[test]
    fn beta_32_32_moments() {
        let mut r = Rng::new(11);
        let n = 20000;
        let xs: Vec<f64> = (0..n).map(|_| r.beta(32.0, 32.0)).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        // Beta(32,32): mean 0.5, variance 1/260
        assert!((mean - 0.5).abs() < 0.003, "{mean}");
        assert!((var - 1.0 / 260.0).abs() < 0.0004, "{var}");
        assert!(xs.iter().all(|&x| x > 0.0 && x < 1.0));
    }

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
        let mut img = Rgb8::filled(4, 1, 0);
        for (i, p) in [[255, 0, 0], [0, 255, 0], [0, 0, 255], [114, 114, 114]].into_iter().enumerate() {
            img.put(i, 0, p);
        }
        let before = img.clone();
        apply_hsv_luts(&mut img, &hsv_luts([1.0, 1.0, 1.0]));
        assert_eq!(img, before);
    }

    #[test]
    fn flips() {
        let img = checker(5, 4);
        let mut lr = img.clone();
        flip_lr(&mut lr);
        let mut ud = img.clone();
        flip_ud(&mut ud);
        for y in 0..4 {
            for x in 0..5 {
                assert_eq!(lr.get(x, y), img.get(4 - x, y));
                assert_eq!(ud.get(x, y), img.get(x, 3 - y));
            }
        }
        flip_lr(&mut lr);
        flip_ud(&mut ud);
        assert_eq!(lr, img);
        assert_eq!(ud, img);
    }

    #[test]
    fn identity_warp_is_noop() {
        let img = checker(17, 11);
        assert_eq!(warp_affine(&img, &IDENTITY, 17, 11), img);
        assert_eq!(warp_perspective(&img, &IDENTITY, 17, 11), img);
        // with all geometric gains zero and no border, the drawn M is exactly I
        let p = WarpParams { degrees: 0.0, translate: 0.0, scale: 0.0, shear: 0.0, perspective: 0.0 };
        let labels = vec![BoxLabel { cls: 3, xyxy: [2.0, 3.0, 9.0, 8.0] }];
        let (out, l2) = random_perspective(&img, &labels, &p, (0, 0), &mut Rng::new(5));
        assert_eq!(out, img);
        assert_eq!(l2, labels);
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
        let mut img = Rgb8::filled(4, 1, 0);
        img.put(1, 0, [100, 200, 50]);
        img.put(2, 0, [200, 0, 51]);
        let mut m = IDENTITY;
        m[0][2] = -0.5; // dst(x) = src(x + 0.5)
        let out = warp_affine(&img, &m, 4, 1);
        assert_eq!(out.get(1, 0), [150, 100, 51]); // (50+51)/2 = 50.5 -> 51 (round half up)
    }

    #[test]
    fn scale_down_warp_moves_box_consistently() {
        // a white box on black; warp by a random matrix; the warped label must
        // cover the white pixels of the warped image
        let mut img = Rgb8::filled(64, 64, 0);
        img.fill_rect(20, 10, 40, 30, [255, 255, 255]);
        let labels = vec![BoxLabel { cls: 1, xyxy: [20.0, 10.0, 40.0, 30.0] }];
        let p = WarpParams { degrees: 0.0, translate: 0.1, scale: 0.5, shear: 0.0, perspective: 0.0 };
        for seed in 0..20 {
            let (out, l2) = random_perspective(&img, &labels, &p, (0, 0), &mut Rng::new(seed));
            assert!(l2.len() <= 1);
            let Some(b) = l2.first() else { continue };
            let (mut x1, mut y1, mut x2, mut y2) = (usize::MAX, usize::MAX, 0, 0);
            for y in 0..64 {
                for x in 0..64 {
                    if out.get(x, y)[0] > 127 {
                        x1 = x1.min(x);
                        y1 = y1.min(y);
                        x2 = x2.max(x + 1);
                        y2 = y2.max(y + 1);
                    }
                }
            }
            for (got, want) in b.xyxy.iter().zip([x1, y1, x2, y2]) {
                assert!((got - want as f32).abs() <= 1.0, "seed {seed}: {:?} vs {:?}", b.xyxy, (x1, y1, x2, y2));
            }
        }
    }

    #[test]
    fn box_candidates_rules() {
        let b = [0.0, 0.0, 10.0, 10.0];
        assert!(box_candidates(b, [0.0, 0.0, 5.0, 5.0], 2.0, 100.0, 0.1));
        assert!(!box_candidates(b, [0.0, 0.0, 2.0, 10.0], 2.0, 100.0, 0.1)); // too thin
        assert!(!box_candidates(b, [0.0, 0.0, 3.0, 3.0], 2.0, 100.0, 0.1)); // 9% of area
        let long = [0.0, 0.0, 300.0, 2.5]; // aspect ratio 120
        assert!(!box_candidates(long, long, 2.0, 100.0, 0.1));
        let ok = [0.0, 0.0, 250.0, 2.6]; // aspect ratio ~96
        assert!(box_candidates(ok, ok, 2.0, 100.0, 0.1));
    }

    #[test]
    fn resize_matches_opencv_reference() {
        // cv2.resize(np.arange(4*1*3).reshape(1,4,3).astype(np.uint8)*20, (8, 1), INTER_LINEAR)
        let src = Rgb8::from_raw(4, 1, (0..12u8).map(|v| v * 20).collect()).unwrap();
        let out = resize_linear(&src, 8, 1);
        let want: Vec<u8> = vec![0, 20, 40, 15, 35, 55, 45, 65, 85, 75, 95, 115, 105, 125, 145, 135, 155, 175, 165, 185, 205, 180, 200, 220];
        assert_eq!(out.data, want);
        // identity and shape
        assert_eq!(resize_linear(&src, 4, 1), src);
        let big = checker(40, 30);
        let r = resize_long_side(&big, 64);
        assert_eq!((r.width, r.height), (64, 48));
    }

    #[test]
    fn letterbox_pads_and_reports_offsets() {
        let img = Rgb8::filled(64, 40, 7);
        let (out, r, (dw, dh)) = letterbox(&img, 64, true);
        assert_eq!((out.width, out.height), (64, 64));
        assert_eq!(r, 1.0);
        assert_eq!((dw, dh), (0.0, 12.0));
        assert_eq!(out.get(10, 11), [PAD_VALUE; 3]);
        assert_eq!(out.get(10, 12), [7; 3]);
        assert_eq!(out.get(10, 51), [7; 3]);
        assert_eq!(out.get(10, 52), [PAD_VALUE; 3]);
        // odd padding: 64 - 39 = 25 -> top 12, bottom 13, dh = 12.5
        let (out, _, (_, dh)) = letterbox(&Rgb8::filled(64, 39, 7), 64, true);
        assert_eq!(dh, 12.5);
        assert_eq!(out.get(0, 11), [PAD_VALUE; 3]);
        assert_eq!(out.get(0, 12), [7; 3]);
        assert_eq!(out.get(0, 50), [7; 3]);
        assert_eq!(out.get(0, 51), [PAD_VALUE; 3]);
    }

    #[test]
    fn mixup_truncates_and_concatenates() {
        let mut a = Rgb8::filled(2, 2, 200);
        let b = Rgb8::filled(2, 2, 100);
        let mut la = vec![BoxLabel { cls: 0, xyxy: [0.0, 0.0, 1.0, 1.0] }];
        let lb = vec![BoxLabel { cls: 1, xyxy: [0.0, 0.0, 2.0, 2.0] }];
        let mut rng = Rng::new(3);
        let r = rng.clone().beta(32.0, 32.0);
        mixup(&mut a, &mut la, &b, &lb, &mut rng);
        assert_eq!(a.data[0], (200.0 * r + 100.0 * (1.0 - r)) as u8);
        assert_eq!(la.len(), 2);
    }

    #[test]
    fn box_conversions() {
        let b = xywhn_to_xyxy([0.5, 0.5, 0.2, 0.4], 100.0, 50.0, 3.0, 4.0);
        for (g, w) in b.iter().zip([43.0, 19.0, 63.0, 39.0]) {
            assert!((g - w).abs() < 1e-4, "{b:?}");
        }
        let n = xyxy_to_xywhn_clip([-5.0, 10.0, 50.0, 60.0], 100.0, 50.0, 1e-3);
        assert!((n[0] - 0.25).abs() < 1e-6 && (n[2] - 0.5).abs() < 1e-6);
        assert!((n[3] - (50.0 - 1e-3 - 10.0) / 50.0).abs() < 1e-5);
    }
}
