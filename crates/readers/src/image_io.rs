//! Image decoding to interleaved RGB8 (JPEG, PNG, BMP, WebP), EXIF orientation
//! applied as `cv2.imread` does. JPEGs go through libjpeg (mozjpeg, built from
//! source) so that pixels are bit-identical to OpenCV's: the `image` crate's own
//! decoder rounds differently, enough to move mAP in the third decimal.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::regular_file::read_regular;
pub use crate::rgb_image::RgbImage;

use image::{DynamicImage, ImageDecoder, ImageReader};

#[derive(Debug, thiserror::Error)]
#[error("{path}: cannot decode image: {reason}")]
pub struct DecodeError {
    pub path: PathBuf,
    pub reason: String,
}

/// Upstream's loader refuses images over PIL's decompression-bomb limit:
/// `Image.MAX_IMAGE_PIXELS = 1024 * 1024 * 1024 // 4 // 3`, an error above twice that
/// (PIL/Image.py, `_decompression_bomb_check`).
pub const DEFAULT_MAX_PIXELS: u64 = 2 * (1024 * 1024 * 1024 / 4 / 3);

/// Largest image file read (a BMP at the pixel limit is ~540 MB).
pub const MAX_IMAGE_BYTES: u64 = 1 << 30;

static MAX_PIXELS: AtomicU64 = AtomicU64::new(DEFAULT_MAX_PIXELS);

/// Sets the process-wide pixel limit (`--max-pixels`), as PIL's module-level
/// `Image.MAX_IMAGE_PIXELS` is set for a whole program.
pub fn set_max_pixels(n: u64) {
    MAX_PIXELS.store(n, Ordering::Relaxed);
}

pub fn max_pixels() -> u64 {
    MAX_PIXELS.load(Ordering::Relaxed)
}

/// Decodes `path` to RGB8 (alpha dropped, 16-bit reduced to 8-bit, EXIF orientation applied).
/// Only regular files are read; an image whose header claims more than [`max_pixels`]
/// pixels is refused before any pixel memory is allocated.
pub fn decode_rgb8(path: &Path) -> Result<RgbImage, DecodeError> {
    let err = |reason: String| DecodeError { path: path.to_path_buf(), reason };
    let bytes = read_regular(path, MAX_IMAGE_BYTES).map_err(|e| err(e.to_string()))?;
    decode_bytes(&bytes, max_pixels()).map_err(err)
}

/// [`decode_rgb8`] on the bytes of a file, with the pixel limit `limit`.
pub fn decode_bytes(bytes: &[u8], limit: u64) -> Result<RgbImage, String> {
    decode_unchecked(bytes, limit).map_err(|e| one_line(&e))
}

fn decode_unchecked(bytes: &[u8], limit: u64) -> Result<RgbImage, String> {
    let mut reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| e.to_string())?;
    let mut limits = image::Limits::default();
    // room for the decoder's widest buffer (RGBA, 16 bits) at the pixel limit
    limits.max_alloc = Some(limit.saturating_mul(8).max(1 << 20));
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(|e| e.to_string())?;
    let (w, h) = decoder.dimensions();
    check_pixels(w as u64, h as u64, limit)?;
    let orientation = decoder.orientation().map_err(|e| e.to_string())?;
    let mut img = match decode_jpeg(bytes, limit) {
        Some(r) => r?,
        None => DynamicImage::from_decoder(decoder).map_err(|e| e.to_string())?,
    };
    img.apply_orientation(orientation);
    let rgb = img.into_rgb8();
    let (width, height) = (rgb.width() as usize, rgb.height() as usize);
    Ok(RgbImage { width, height, data: rgb.into_raw() })
}

/// Decoder messages can hold newlines (zune-jpeg ends some with one, found by fuzzing);
/// a warning is one line: control characters become spaces, at most 300 characters.
fn one_line(msg: &str) -> String {
    let flat: String = msg.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    flat.trim().chars().take(300).collect()
}

fn check_pixels(w: u64, h: u64, limit: u64) -> Result<(), String> {
    let n = w.saturating_mul(h);
    if n > limit {
        return Err(format!("{w}x{h} = {n} pixels is over the limit of {limit} (a decompression bomb? see --max-pixels)"));
    }
    Ok(())
}

/// Width, height and RGB bytes, or why the image is refused (over the pixel limit).
type JpegPixels = Result<(usize, usize, Vec<u8>), String>;

/// libjpeg decoding for JPEG data (None for other formats). CMYK and YCCK JPEGs are
/// converted as OpenCV's `imread` does (see `cmyk_to_rgb`).
fn decode_jpeg(bytes: &[u8], limit: u64) -> Option<Result<DynamicImage, String>> {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    // mozjpeg reports corrupt data by panicking; keep that inside.
    let decoded = std::panic::catch_unwind(|| -> std::io::Result<JpegPixels> {
        let d = mozjpeg::Decompress::new_mem(bytes)?;
        let (w, h) = (d.width(), d.height());
        if let Err(e) = check_pixels(w as u64, h as u64, limit) {
            return Ok(Err(e));
        }
        let cmyk = matches!(d.color_space(), mozjpeg::ColorSpace::JCS_CMYK | mozjpeg::ColorSpace::JCS_YCCK);
        let raw = if cmyk {
            let mut d = d.to_colorspace(mozjpeg::ColorSpace::JCS_CMYK)?;
            let px = d.read_scanlines::<[u8; 4]>()?;
            d.finish()?;
            px.iter().flat_map(|&p| cmyk_to_rgb(p)).collect()
        } else {
            let mut d = d.rgb()?;
            let px = d.read_scanlines::<[u8; 3]>()?;
            d.finish()?;
            px.into_iter().flatten().collect()
        };
        Ok(Ok((w, h, raw)))
    });
    Some(match decoded {
        Ok(Ok(Ok((w, h, raw)))) if raw.len() == w * h * 3 => {
            image::RgbImage::from_raw(w as u32, h as u32, raw).map(DynamicImage::ImageRgb8).ok_or_else(|| "bad JPEG dimensions".to_string())
        }
        Ok(Ok(Ok(_))) => Err("truncated JPEG data".to_string()),
        Ok(Ok(Err(e))) => Err(e),
        Ok(Err(e)) => Err(format!("corrupt JPEG: {e}")),
        Err(_) => Err("corrupt JPEG data".to_string()),
    })
}

/// OpenCV's `icvCvt_CMYK2BGR_8u_C4C3R` (modules/imgcodecs/src/utils.cpp), which reads
/// libjpeg's CMYK output as Adobe's inverted CMYK: `c = k - ((255 - c) * k >> 8)`, and
/// likewise for m and y, give R, G, B.
pub fn cmyk_to_rgb([c, m, y, k]: [u8; 4]) -> [u8; 3] {
    let f = |v: u8| (k as i32 - (((255 - v as i32) * k as i32) >> 8)) as u8;
    [f(c), f(m), f(y)]
}
