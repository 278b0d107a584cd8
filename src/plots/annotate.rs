//! Boxes with labels drawn on an image: upstream utils/plots.py `Annotator.box_label`
//! (outline in the class colour, a filled tag above the box with white text).

use super::canvas::{draw_on, err, Area};
use super::font::FAMILY;
use crate::data::image_io::RgbImage;
use anyhow::Result;
use plotters::prelude::*;

/// What to draw on an image.
pub enum Mark {
    /// A labelled box, xyxy in the image's pixels.
    Box { xyxy: [f32; 4], color: RGBColor, label: String },
    /// Text at a point (top-left).
    Text { at: (i32, i32), color: RGBColor, text: String },
    /// White text on a filled tag, top-left at a point (a model's name on its picture).
    Tag { at: (i32, i32), color: RGBColor, text: String },
    /// An unlabelled outline (mosaic tile borders).
    Frame { xyxy: [i32; 4], color: RGBColor, width: u32 },
}

/// Line width and font size, in pixels.
#[derive(Clone, Copy, Debug)]
pub struct Style {
    pub line_width: u32,
    pub font_px: u32,
}

impl Style {
    /// Upstream `Annotator`'s defaults for an image of this size: line width
    /// max(round((h + w) / 2 * 0.003), 2), PIL font max(round((h + w) / 2 * 0.035), 12).
    pub fn for_image(width: usize, height: usize) -> Style {
        let half = (width + height) as f64 / 2.0;
        Style { line_width: ((half * 0.003).round() as u32).max(2), font_px: ((half * 0.035).round() as u32).max(12) }
    }
}

pub fn annotate(img: &mut RgbImage, marks: &[Mark], style: Style) -> Result<()> {
    draw_on(img, |area| marks.iter().try_for_each(|m| draw_mark(area, m, style)))
}

fn draw_mark(area: &Area, m: &Mark, s: Style) -> Result<()> {
    match m {
        Mark::Box { xyxy, color, label } => box_label(area, xyxy.map(|v| v.round() as i32), *color, label, s),
        Mark::Text { at, color, text } => area.draw(&Text::new(text.as_str(), *at, (FAMILY, s.font_px).into_font().color(color))).map_err(err),
        Mark::Frame { xyxy, color, width } => outline(area, *xyxy, *color, *width),
        Mark::Tag { at, color, text } => tag(area, *at, *color, text, s),
    }
}

fn box_label(area: &Area, b: [i32; 4], color: RGBColor, label: &str, s: Style) -> Result<()> {
    outline(area, b, color, s.line_width)?;
    if label.is_empty() {
        return Ok(());
    }
    let th = text_size(area, label, s)?.1;
    // Above the box when it fits, else inside its top edge (upstream's `outside`).
    let y = if b[1] - th >= 0 { b[1] - th } else { b[1] };
    tag(area, (b[0], y), color, label, s)
}

/// A filled rectangle the size of `label` at `at`, the label on it in white.
fn tag(area: &Area, at: (i32, i32), color: RGBColor, label: &str, s: Style) -> Result<()> {
    let (tw, th) = text_size(area, label, s)?;
    area.draw(&Rectangle::new([at, (at.0 + tw + 1, at.1 + th + 1)], color.filled())).map_err(err)?;
    area.draw(&Text::new(label, at, (FAMILY, s.font_px).into_font().color(&WHITE))).map_err(err)
}

fn text_size(area: &Area, label: &str, s: Style) -> Result<(i32, i32)> {
    let (w, h) = area.estimate_text_size(label, &TextStyle::from((FAMILY, s.font_px).into_font())).map_err(err)?;
    Ok((w as i32, h as i32))
}

/// A rectangle outline `width` pixels thick, drawn inward from the box edge.
fn outline(area: &Area, b: [i32; 4], color: RGBColor, width: u32) -> Result<()> {
    for k in 0..width as i32 {
        area.draw(&Rectangle::new([(b[0] + k, b[1] + k), (b[2] - k, b[3] - k)], color.stroke_width(1))).map_err(err)?;
    }
    Ok(())
}
