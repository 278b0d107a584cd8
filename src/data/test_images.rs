//! Test images the augmentation modules share.

use super::RgbImage;

/// A `w` x `h` image whose every pixel and channel differs from its neighbours, so
/// that any misplaced pixel shows.
pub fn checker(w: usize, h: usize) -> RgbImage {
    let mut img = RgbImage::filled(w, h, 0);
    for y in 0..h {
        for x in 0..w {
            img.put(x, y, [(x * 7 + y * 3) as u8, (x * 13) as u8 ^ (y as u8), (255 - x - y) as u8]);
        }
    }
    img
}
