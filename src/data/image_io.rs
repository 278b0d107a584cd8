//! Image decoding to interleaved RGB8 (JPEG, PNG, BMP, WebP), EXIF orientation
//! applied as `cv2.imread` does. JPEGs go through libjpeg (mozjpeg, built from
//! source) so that pixels are bit-identical to OpenCV's: the `image` crate's own
//! decoder rounds differently, enough to move mAP in the third decimal.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageDecoder, ImageReader};

/// An interleaved RGB image: `height` rows of `width * 3` bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RgbImage {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl RgbImage {
    /// (height, width), the order upstream's shapes use.
    pub fn hw(&self) -> (usize, usize) {
        (self.height, self.width)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{path}: cannot decode image: {reason}")]
pub struct DecodeError {
    pub path: PathBuf,
    pub reason: String,
}

/// Decodes `path` to RGB8 (alpha dropped, 16-bit reduced to 8-bit, EXIF orientation applied).
pub fn decode_rgb8(path: &Path) -> Result<RgbImage, DecodeError> {
    let err = |reason: String| DecodeError { path: path.to_path_buf(), reason };
    let file = File::open(path).map_err(|e| err(e.to_string()))?;
    let reader = ImageReader::new(BufReader::new(file)).with_guessed_format().map_err(|e| err(e.to_string()))?;
    let mut decoder = reader.into_decoder().map_err(|e| err(e.to_string()))?;
    let orientation = decoder.orientation().map_err(|e| err(e.to_string()))?;
    let mut img = match decode_jpeg(path) {
        Some(r) => r.map_err(err)?,
        None => DynamicImage::from_decoder(decoder).map_err(|e| err(e.to_string()))?,
    };
    img.apply_orientation(orientation);
    let rgb = img.into_rgb8();
    let (width, height) = (rgb.width() as usize, rgb.height() as usize);
    Ok(RgbImage { width, height, data: rgb.into_raw() })
}

/// libjpeg decoding for JPEG files (None for other formats).
fn decode_jpeg(path: &Path) -> Option<Result<DynamicImage, String>> {
    let bytes = std::fs::read(path).ok()?;
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    // mozjpeg reports corrupt data by panicking; keep that inside.
    let decoded = std::panic::catch_unwind(|| -> std::io::Result<(usize, usize, Vec<[u8; 3]>)> {
        let mut d = mozjpeg::Decompress::new_mem(&bytes)?.rgb()?;
        let (w, h) = (d.width(), d.height());
        let px = d.read_scanlines::<[u8; 3]>()?;
        d.finish()?;
        Ok((w, h, px))
    });
    Some(match decoded {
        Ok(Ok((w, h, px))) if px.len() == w * h => {
            let raw: Vec<u8> = px.into_iter().flatten().collect();
            image::RgbImage::from_raw(w as u32, h as u32, raw).map(DynamicImage::ImageRgb8).ok_or_else(|| "bad JPEG dimensions".to_string())
        }
        Ok(Ok(_)) => Err("truncated JPEG data".to_string()),
        Ok(Err(e)) => Err(format!("corrupt JPEG: {e}")),
        Err(_) => Err("corrupt JPEG data".to_string()),
    })
}
