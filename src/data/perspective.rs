//! Upstream `random_perspective` and `box_candidates` (utils/augmentations.py): a random
//! rotation, scale, shear, perspective and translation about the image centre, drawn in
//! upstream's order, applied to the image by [`warp_affine`] / [`warp_perspective`] and
//! to the box labels by their warped corners, keeping the boxes upstream keeps.

use crate::data::hyp::Hyp;
use crate::data::image_io::RgbImage;
use crate::data::labels::Label;
use crate::data::rng::Rng;
use crate::data::segments::{resample, segment2box, Polygon};
use crate::data::warp::{matmul, warp_affine, warp_perspective, Mat3, IDENTITY};

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
pub fn transform_boxes(labels: &[Label], m: &Mat3, s: f64, width: usize, height: usize, perspective: bool) -> Vec<Label> {
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
            box_candidates(before, new, 2.0, 100.0, 0.10).then(|| Label { class: l.class, xyxy: new.map(|v| v as f32) })
        })
        .collect()
}

/// The warp of upstream's segment `random_perspective`: each polygon resampled to 1000
/// points and warped by `m` (divided by w under perspective; not clipped); its box is
/// [`segment2box`]; candidates kept by `box_candidates` with `area_thr = 0.01` against the
/// scaled box before (`s` is the warp's scale).
pub fn transform_segments(
    labels: &[Label],
    polys: &[Polygon],
    m: &[[f64; 3]; 3],
    s: f64,
    width: usize,
    height: usize,
    perspective: bool,
) -> (Vec<Label>, Vec<Polygon>) {
    let (mut out, mut out_polys) = (Vec::new(), Vec::new());
    for (l, poly) in labels.iter().zip(polys) {
        let warped: Vec<[f64; 2]> = resample(poly, 1000)
            .iter()
            .map(|&[x, y]| {
                let (x, y) = (x as f64, y as f64);
                let (u, v) = (m[0][0] * x + m[0][1] * y + m[0][2], m[1][0] * x + m[1][1] * y + m[1][2]);
                if perspective {
                    let w = m[2][0] * x + m[2][1] * y + m[2][2];
                    [u / w, v / w]
                } else {
                    [u, v]
                }
            })
            .collect();
        let new = segment2box(&warped, width as f64, height as f64);
        let before = l.xyxy.map(|v| v as f64 * s);
        if box_candidates(before, new, 2.0, 100.0, 0.01) {
            out.push(Label { class: l.class, xyxy: new.map(|v| v as f32) });
            out_polys.push(warped.iter().map(|p| [p[0] as f32, p[1] as f32]).collect());
        }
    }
    (out, out_polys)
}

/// Upstream `random_perspective(im, targets, segments, degrees, translate, scale, shear,
/// perspective, border)`. `border = (border_y, border_x)` grows (positive) or
/// crops (negative, e.g. `-imgsz/2` for a mosaic) the output on each side.
/// Labels are pixel corners in and out. With one polygon per label (`segments`, pixels)
/// the boxes come from the warped polygons ([`transform_segments`]), which are returned;
/// otherwise from the warped corners, and no polygons are returned.
pub fn random_perspective(
    img: &RgbImage,
    labels: &[Label],
    segments: &[Polygon],
    p: &WarpParams,
    border: (i64, i64),
    rng: &mut Rng,
) -> (RgbImage, Vec<Label>, Vec<Polygon>) {
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
    if !segments.is_empty() && segments.len() == labels.len() {
        let (labels, polys) = transform_segments(labels, segments, &m, s, width, height, p.perspective != 0.0);
        return (out, labels, polys);
    }
    (out, transform_boxes(labels, &m, s, width, height, p.perspective != 0.0), Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::test_images::checker;

    #[test]
    fn zero_gains_draw_the_identity() {
        let img = checker(17, 11);
        // with all geometric gains zero and no border, the drawn M is exactly I
        let p = WarpParams { degrees: 0.0, translate: 0.0, scale: 0.0, shear: 0.0, perspective: 0.0 };
        let labels = vec![Label { class: 3, xyxy: [2.0, 3.0, 9.0, 8.0] }];
        let (out, l2, _) = random_perspective(&img, &labels, &[], &p, (0, 0), &mut Rng::new(5));
        assert_eq!(out, img);
        assert_eq!(l2, labels);
    }

    #[test]
    fn scale_down_warp_moves_box_consistently() {
        // a white box on black; warp by a random matrix; the warped label must
        // cover the white pixels of the warped image
        let mut img = RgbImage::filled(64, 64, 0);
        img.fill_rect(20, 10, 40, 30, [255, 255, 255]);
        let labels = vec![Label { class: 1, xyxy: [20.0, 10.0, 40.0, 30.0] }];
        let p = WarpParams { degrees: 0.0, translate: 0.1, scale: 0.5, shear: 0.0, perspective: 0.0 };
        for seed in 0..20 {
            let (out, l2, _) = random_perspective(&img, &labels, &[], &p, (0, 0), &mut Rng::new(seed));
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
}
