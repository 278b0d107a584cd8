//! Upstream `LoadImagesAndLabels.load_mosaic`: four images (the requested one
//! plus three random ones, in shuffled order) tiled around a random centre on
//! a `2*imgsz` grey canvas, then `random_perspective` with a border of
//! `-imgsz/2` that crops the result back to `imgsz x imgsz`.
//!
//! Polygon labels (normalized, one per row, or none) are placed with their tile and
//! clipped to the canvas as upstream clips `segments4`; the warp then derives the boxes
//! from them. Upstream also runs `copy_paste` here (with probability `hyp.copy_paste`
//! on images with polygons); it is not implemented.

use std::sync::Arc;

use anyhow::Result;

use crate::data::hyp::Hyp;
use crate::data::image_io::RgbImage;
use crate::data::labels::{Label, LabelRow};
use crate::data::perspective::{random_perspective, WarpParams};
use crate::data::rng::Rng;
use crate::data::segments::Polygon;
use crate::data::PAD_VALUE;

/// Upstream `mosaic_border` component: `-imgsz // 2` (floor division).
pub fn mosaic_border(imgsz: usize) -> i64 {
    (-(imgsz as i64)).div_euclid(2)
}

/// Random mosaic centre `(xc, yc)`: each `int(uniform(imgsz/2, 1.5*imgsz))`;
/// drawn `yc` first, as upstream.
pub fn mosaic_center(imgsz: usize, rng: &mut Rng) -> (i64, i64) {
    let b = mosaic_border(imgsz) as f64;
    let s = imgsz as f64;
    let yc = rng.uniform(-b, 2.0 * s + b) as i64;
    let xc = rng.uniform(-b, 2.0 * s + b) as i64;
    (xc, yc)
}

/// The four dataset indices of a mosaic: `index` plus three uniform draws
/// from `0..n`, shuffled.
pub fn mosaic_indices(index: usize, n: usize, rng: &mut Rng) -> [usize; 4] {
    let mut idx = [index, rng.below(n), rng.below(n), rng.below(n)];
    rng.shuffle(&mut idx);
    idx
}

/// Places four (already resized) tiles top-left, top-right, bottom-left,
/// bottom-right of the centre `(xc, yc)` on a `2*imgsz` square canvas filled
/// with 114, as upstream. Returns the canvas and the tiles' labels in canvas
/// pixels (`x1 y1 x2 y2`), clipped to `[0, 2*imgsz]`.
pub fn place_tiles(tiles: [Tile; 4], imgsz: usize, xc: i64, yc: i64) -> (RgbImage, Vec<Label>, Vec<Polygon>) {
    let s2 = 2 * imgsz as i64;
    let mut canvas = RgbImage::filled(s2 as usize, s2 as usize, PAD_VALUE);
    let (mut labels, mut polys) = (Vec::new(), Vec::new());
    for (i, (img, norm, norm_polys)) in tiles.into_iter().enumerate() {
        let (w, h) = (img.width as i64, img.height as i64);
        // (x1a, y1a, x2a, y2a) on the canvas, (x1b, y1b, x2b, y2b) in the tile
        let (a, b) = match i {
            0 => {
                let a = [(xc - w).max(0), (yc - h).max(0), xc, yc];
                (a, [w - (a[2] - a[0]), h - (a[3] - a[1]), w, h])
            }
            1 => {
                let a = [xc, (yc - h).max(0), (xc + w).min(s2), yc];
                (a, [0, h - (a[3] - a[1]), w.min(a[2] - a[0]), h])
            }
            2 => {
                let a = [(xc - w).max(0), yc, xc, s2.min(yc + h)];
                (a, [w - (a[2] - a[0]), 0, w, (a[3] - a[1]).min(h)])
            }
            _ => {
                let a = [xc, yc, (xc + w).min(s2), s2.min(yc + h)];
                (a, [0, 0, w.min(a[2] - a[0]), (a[3] - a[1]).min(h)])
            }
        };
        let cw = (a[2] - a[0]).min(b[2] - b[0]).max(0) as usize;
        let ch = (a[3] - a[1]).min(b[3] - b[1]).max(0) as usize;
        for y in 0..ch {
            let so = (((b[1] as usize) + y) * img.width + b[0] as usize) * 3;
            let o = (((a[1] as usize) + y) * s2 as usize + a[0] as usize) * 3;
            canvas.data[o..o + cw * 3].copy_from_slice(&img.data[so..so + cw * 3]);
        }
        let (padw, padh) = ((a[0] - b[0]) as f64, (a[1] - b[1]) as f64);
        let lim = s2 as f32;
        for row in norm {
            let mut l = row.to_pixels(w as f64, h as f64, padw, padh);
            l.xyxy = l.xyxy.map(|v| v.clamp(0.0, lim));
            labels.push(l);
        }
        // Upstream `xyn2xy(x, w, h, padw, padh)` (f32 arithmetic), then clipped like the boxes.
        let (wf, hf, pw, ph) = (w as f32, h as f32, padw as f32, padh as f32);
        polys.extend(norm_polys.iter().map(|p| p.iter().map(|&[x, y]| [(wf * x + pw).clamp(0.0, lim), (hf * y + ph).clamp(0.0, lim)]).collect::<Polygon>()));
    }
    (canvas, labels, polys)
}

/// One mosaic tile: the resized image, its normalized label rows and their normalized polygons (or none).
pub type Tile<'a> = (&'a RgbImage, &'a [LabelRow], &'a [Polygon]);

/// What a mosaic's `load` returns for one dataset index: the resized image, its rows and polygons.
pub type Loaded = (Arc<RgbImage>, Arc<Vec<LabelRow>>, Arc<Vec<Polygon>>);

/// Upstream `load_mosaic(index)`: `load(i)` returns image `i` resized so its
/// long side is `imgsz` (upstream `load_image`) and its normalized labels.
/// Any load error is returned (the caller decides how to replace the sample).
/// The result is `imgsz x imgsz` (for even `imgsz`) with pixel-corner labels.
pub fn load_mosaic<F>(index: usize, n: usize, imgsz: usize, hyp: &Hyp, rng: &mut Rng, mut load: F) -> Result<(RgbImage, Vec<Label>, Vec<Polygon>)>
where
    F: FnMut(usize) -> Result<Loaded>,
{
    let (xc, yc) = mosaic_center(imgsz, rng);
    let idx = mosaic_indices(index, n, rng);
    let t0 = load(idx[0])?;
    let t1 = load(idx[1])?;
    let t2 = load(idx[2])?;
    let t3 = load(idx[3])?;
    let tiles = [&t0, &t1, &t2, &t3].map(|t| (&*t.0, &t.1[..], &t.2[..]));
    let (canvas, labels, polys) = place_tiles(tiles, imgsz, xc, yc);
    let border = mosaic_border(imgsz);
    Ok(random_perspective(&canvas, &labels, &polys, &WarpParams::from(hyp), (border, border), rng))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn solid(w: usize, h: usize, v: u8) -> RgbImage {
        RgbImage::filled(w, h, v)
    }

    #[test]
    fn border_and_center_ranges() {
        assert_eq!(mosaic_border(640), -320);
        assert_eq!(mosaic_border(63), -32);
        let mut rng = Rng::new(0);
        for _ in 0..1000 {
            let (xc, yc) = mosaic_center(640, &mut rng);
            assert!((320..960).contains(&xc) && (320..960).contains(&yc));
        }
        let idx = mosaic_indices(5, 10, &mut rng);
        assert!(idx.contains(&5) && idx.iter().all(|&i| i < 10));
    }

    #[test]
    fn tiles_meet_at_the_centre() {
        let s = 32;
        let a = solid(32, 20, 10);
        let b = solid(20, 32, 20);
        let c = solid(32, 32, 30);
        let d = solid(16, 32, 40);
        let la = vec![LabelRow { class: 0, xywhn: [0.5, 0.5, 1.0, 1.0] }];
        let none: Vec<LabelRow> = vec![];
        let (xc, yc) = (30i64, 40i64);
        let (canvas, labels, _) = place_tiles([(&a, &la, &[]), (&b, &none, &[]), (&c, &none, &[]), (&d, &la, &[])], s, xc, yc);
        assert_eq!((canvas.width, canvas.height), (64, 64));
        // just up-left of the centre is tile 0, up-right tile 1, ...
        assert_eq!(canvas.get(29, 39), [10; 3]);
        assert_eq!(canvas.get(30, 39), [20; 3]);
        assert_eq!(canvas.get(29, 40), [30; 3]);
        assert_eq!(canvas.get(30, 40), [40; 3]);
        // tile 0 spans x in [0, 30) (cropped), y in [20, 40)
        assert_eq!(canvas.get(0, 20), [10; 3]);
        assert_eq!(canvas.get(0, 19), [PAD_VALUE; 3]);
        // tile 3 (16 wide) spans x in [30, 46), y in [40, 64)
        assert_eq!(canvas.get(45, 63), [40; 3]);
        assert_eq!(canvas.get(46, 63), [PAD_VALUE; 3]);
        // labels: tile 0's full-image box -> [xc - 32, yc - 20, xc, yc] clipped at 0
        assert_eq!(labels[0].xyxy, [0.0, 20.0, 30.0, 40.0]);
        assert_eq!(labels[1].xyxy, [30.0, 40.0, 46.0, 64.0]);
    }

    #[test]
    fn mosaic_output_is_imgsz() {
        let imgs: Vec<Arc<RgbImage>> = (0..5).map(|i| Arc::new(solid(64, 48, 50 + i as u8))).collect();
        let lab = Arc::new(vec![LabelRow { class: 1, xywhn: [0.5, 0.5, 0.5, 0.5] }]);
        let hyp = Hyp::scratch_high();
        let mut rng = Rng::new(9);
        let (img, labels, _) = load_mosaic(2, 5, 64, &hyp, &mut rng, |i| Ok((imgs[i].clone(), lab.clone(), Arc::new(vec![])))).unwrap();
        assert_eq!((img.width, img.height), (64, 64));
        for l in labels {
            assert!(l.xyxy.iter().all(|&v| (0.0..=64.0).contains(&v)));
            assert!(l.xyxy[2] > l.xyxy[0] + 2.0 && l.xyxy[3] > l.xyxy[1] + 2.0);
        }
    }
}
