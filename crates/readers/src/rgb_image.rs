//! The one image type of yolo-qat: 8-bit RGB, interleaved (HWC), what the decoder returns
//! and what every resize, letterbox, augmentation and plot works on. Upstream holds BGR
//! numpy arrays; every OpenCV call reproduced here has an RGB twin of the same
//! arithmetic, so only the channel order differs.

/// An interleaved RGB image: `height` rows of `width * 3` bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RgbImage {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl RgbImage {
    /// A `width` x `height` image with every byte set to `value`.
    pub fn filled(width: usize, height: usize, value: u8) -> Self {
        RgbImage { width, height, data: vec![value; width * height * 3] }
    }

    /// Wraps a raw HWC buffer; `None` when its length is not `width * height * 3`.
    pub fn from_raw(width: usize, height: usize, data: Vec<u8>) -> Option<Self> {
        (data.len() == width * height * 3).then_some(RgbImage { width, height, data })
    }

    /// (height, width), the order upstream's shapes use.
    pub fn hw(&self) -> (usize, usize) {
        (self.height, self.width)
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

    /// Writes the image as planar CHW into `out` (`3 * width * height` bytes), the
    /// network's input layout.
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

    /// The image as planar CHW bytes.
    pub fn to_chw(&self) -> Vec<u8> {
        let mut out = vec![0; self.data.len()];
        self.write_chw(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chw_layout_and_pixel_access() {
        let mut img = RgbImage::from_raw(2, 1, vec![1, 2, 3, 4, 5, 6]).unwrap();
        assert_eq!(img.to_chw(), vec![1, 4, 2, 5, 3, 6]);
        assert_eq!(img.get(1, 0), [4, 5, 6]);
        img.put(0, 0, [9, 9, 9]);
        img.fill_rect(1, 0, 5, 5, [7, 7, 7]);
        assert_eq!(img.data, vec![9, 9, 9, 7, 7, 7]);
        assert!(RgbImage::from_raw(2, 2, vec![0; 11]).is_none());
        assert_eq!(RgbImage::filled(3, 2, 5).hw(), (2, 3));
    }
}
