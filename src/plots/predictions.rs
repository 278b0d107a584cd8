//! `predict`'s pictures: detections drawn on an image as detect.py does (class colour,
//! "name conf" tags), and two models' pictures side by side (`--compare`).

use super::annotate::{annotate, Mark, Style};
use super::colors::class_color;
use crate::data::image_io::RgbImage;
use crate::eval::nms::Detection;
use anyhow::Result;
use plotters::style::RGBColor;

/// A copy of `img` with `dets` drawn; `title` (the model) in the top-left corner when given.
pub fn draw_detections(img: &RgbImage, dets: &[Detection], names: &[String], title: Option<&str>) -> Result<RgbImage> {
    let mut out = img.clone();
    let mut marks: Vec<Mark> = dets
        .iter()
        .map(|d| Mark::Box { xyxy: d.xyxy, color: class_color(d.class), label: format!("{} {:.2}", names.get(d.class).map_or("?", |n| n.as_str()), d.conf) })
        .collect();
    if let Some(t) = title {
        marks.push(Mark::Tag { at: (0, 0), color: RGBColor(40, 40, 40), text: t.to_string() });
    }
    annotate(&mut out, &marks, Style::for_image(img.width, img.height))?;
    Ok(out)
}

/// `a` and `b` (same height) next to each other, a 4-pixel white gap between.
pub fn side_by_side(a: &RgbImage, b: &RgbImage) -> RgbImage {
    const GAP: usize = 4;
    let (w, h) = (a.width + GAP + b.width, a.height.max(b.height));
    let mut out = RgbImage { width: w, height: h, data: vec![255; w * h * 3] };
    for (img, x0) in [(a, 0), (b, a.width + GAP)] {
        for (y, row) in img.data.chunks_exact(img.width * 3).enumerate() {
            let start = (y * w + x0) * 3;
            out.data[start..start + row.len()].copy_from_slice(row);
        }
    }
    out
}
