//! Where pictures are drawn and written: a white RGB buffer that plotters draws on,
//! encoded as PNG or JPEG (by the file's extension) and written atomically.

use super::font;
use crate::data::image_io::RgbImage;
use crate::util::write_atomic;
use anyhow::{anyhow, bail, Result};
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::{ExtendedColorType, ImageEncoder, ImageFormat};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

/// The drawing area pictures draw on.
pub type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// Draws on a white `width` x `height` canvas with `draw`, then writes `path`.
pub fn render(path: &Path, (width, height): (u32, u32), draw: impl FnOnce(&Area) -> Result<()>) -> Result<()> {
    let mut img = RgbImage { width: width as usize, height: height as usize, data: vec![255; width as usize * height as usize * 3] };
    draw_on(&mut img, draw).map_err(|e| anyhow!("{}: {e:#}", path.display()))?;
    save(path, &img)
}

/// Draws on an existing image (boxes on a photo).
pub fn draw_on(img: &mut RgbImage, draw: impl FnOnce(&Area) -> Result<()>) -> Result<()> {
    font::ensure()?;
    let size = (img.width as u32, img.height as u32);
    let area = BitMapBackend::with_buffer(&mut img.data, size).into_drawing_area();
    draw(&area)?;
    area.present().map_err(|e| anyhow!("drawing: {e}"))
}

/// PNG or JPEG (quality 95) by extension.
pub fn save(path: &Path, img: &RgbImage) -> Result<()> {
    let mut bytes = Vec::new();
    let (w, h) = (img.width as u32, img.height as u32);
    let ext = path.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase()).unwrap_or_default();
    match ext.as_str() {
        "png" => PngEncoder::new(&mut bytes).write_image(&img.data, w, h, ExtendedColorType::Rgb8),
        "jpg" | "jpeg" => JpegEncoder::new_with_quality(&mut bytes, 95).write_image(&img.data, w, h, ExtendedColorType::Rgb8),
        _ => match ImageFormat::from_extension(&ext) {
            Some(format) => write_other(&mut bytes, img, format),
            None => bail!("{}: unknown picture format", path.display()),
        },
    }
    .map_err(|e| anyhow!("{}: cannot encode: {e}", path.display()))?;
    write_atomic(path, &bytes)
}

/// BMP, WebP, … through the `image` crate's encoders.
fn write_other(bytes: &mut Vec<u8>, img: &RgbImage, format: ImageFormat) -> image::ImageResult<()> {
    let buf = image::RgbImage::from_raw(img.width as u32, img.height as u32, img.data.clone()).expect("buffer matches its size");
    image::DynamicImage::ImageRgb8(buf).write_to(&mut std::io::Cursor::new(bytes), format)
}

/// A plotters error as anyhow (their error types borrow the backend).
pub fn err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("drawing: {e}")
}
