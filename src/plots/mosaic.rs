//! `val_batch{i}_labels.jpg` / `_pred.jpg`: upstream utils/plots.py `plot_images` — up to
//! 16 letterboxed images tiled column by column, scaled to fit 1920 pixels, file names in
//! the corners, labels (class name) or detections above conf 0.25 (name and conf).

use super::annotate::{annotate, Mark, Style};
use super::canvas::save;
use super::colors::class_color;
use crate::data::image_io::RgbImage;
use crate::data::resize::{resize, Interpolation};
use crate::eval::samples::SampleImage;
use anyhow::{bail, Result};
use plotters::style::RGBColor;
use std::path::Path;

const MAX_SIZE: f64 = 1920.0;
const MAX_TILES: usize = 16;
/// Detections drawn on `_pred` pictures (upstream: conf > 0.25).
const PRED_CONF: f32 = 0.25;

/// Labels or detections: which boxes a mosaic shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Show {
    Labels,
    Predictions,
}

/// The mosaic's pixel size for `n` tiles of `w` x `h` (after the 1920 px cap).
pub fn mosaic_size(n: usize, w: usize, h: usize) -> (usize, usize) {
    let (ns, tw, th) = grid(n, w, h);
    (ns * tw, ns * th)
}

/// Tiles per side and the (scaled) tile size.
fn grid(n: usize, w: usize, h: usize) -> (usize, usize, usize) {
    let ns = (n.min(MAX_TILES) as f64).sqrt().ceil() as usize;
    let scale = MAX_SIZE / ns as f64 / w.max(h) as f64;
    if scale < 1.0 {
        (ns, (scale * w as f64).ceil() as usize, (scale * h as f64).ceil() as usize)
    } else {
        (ns, w, h)
    }
}

pub fn write(path: &Path, images: &[SampleImage], names: &[String], show: Show) -> Result<()> {
    let Some(first) = images.first() else { bail!("{}: no images to draw", path.display()) };
    let (w, h) = (first.image.width, first.image.height);
    let (ns, tw, th) = grid(images.len(), w, h);
    let scale = tw as f32 / w as f32;
    let mut canvas = RgbImage { width: ns * w, height: ns * h, data: vec![255; ns * w * ns * h * 3] };
    let tiles: Vec<&SampleImage> = images.iter().take(MAX_TILES).collect();
    for (i, s) in tiles.iter().enumerate() {
        paste(&mut canvas, &s.image, origin(i, ns, w, h));
    }
    if (tw, th) != (w, h) {
        canvas = RgbImage { width: ns * tw, height: ns * th, data: resize(&canvas.data, (ns * w, ns * h), 3, (ns * tw, ns * th), Interpolation::Linear) };
    }
    let font_px = ((tw + th) * ns) as f64 * 0.01;
    let style = Style { line_width: ((font_px / 10.0).round() as u32).max(1), font_px: (font_px as u32).max(8) };
    let marks: Vec<Mark> = tiles.iter().enumerate().flat_map(|(i, s)| tile_marks(s, origin(i, ns, tw, th), scale, names, show)).collect();
    annotate(&mut canvas, &marks, style)?;
    save(path, &canvas)
}

/// Tile i's top-left corner: tiles fill columns first (upstream's x = w * (i // ns)).
fn origin(i: usize, ns: usize, w: usize, h: usize) -> (usize, usize) {
    (w * (i / ns), h * (i % ns))
}

fn paste(canvas: &mut RgbImage, img: &RgbImage, (x, y): (usize, usize)) {
    let row = img.width * 3;
    for (r, src) in img.data.chunks_exact(row).enumerate() {
        let start = ((y + r) * canvas.width + x) * 3;
        canvas.data[start..start + row].copy_from_slice(src);
    }
}

fn tile_marks(s: &SampleImage, (x, y): (usize, usize), scale: f32, names: &[String], show: Show) -> Vec<Mark> {
    let (w, h) = ((s.image.width as f32 * scale).ceil() as i32, (s.image.height as f32 * scale).ceil() as i32);
    let (x, y) = (x as i32, y as i32);
    let mut marks = vec![
        Mark::Frame { xyxy: [x, y, x + w, y + h], color: RGBColor(255, 255, 255), width: 2 },
        Mark::Text { at: (x + 5, y + 5), color: RGBColor(220, 220, 220), text: s.file_name.chars().take(40).collect() },
    ];
    let shift = |b: [f32; 4]| [b[0] * scale + x as f32, b[1] * scale + y as f32, b[2] * scale + x as f32, b[3] * scale + y as f32];
    let name = |c: usize| names.get(c).cloned().unwrap_or_else(|| c.to_string());
    match show {
        Show::Labels => marks.extend(s.labels.iter().map(|l| Mark::Box { xyxy: shift(l.xyxy), color: class_color(l.class), label: name(l.class) })),
        Show::Predictions => marks.extend(s.detections.iter().filter(|d| d.conf > PRED_CONF).map(|d| Mark::Box {
            xyxy: shift(d.xyxy),
            color: class_color(d.class),
            label: format!("{} {:.1}", name(d.class), d.conf),
        })),
    }
    marks
}
