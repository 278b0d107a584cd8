//! Upstream `letterbox(im, new_shape, auto=False, scaleup)` (utils/augmentations.py) and
//! its inverse, `scale_boxes` (utils/general.py): the one letterbox of yolo-qat, for
//! validation (`scaleup = false`, rectangular batch shapes), training (`imgsz` squares)
//! and predict.
//!
//! Bit-exact with upstream's `cv2.resize(INTER_LINEAR)` + `cv2.copyMakeBorder(114)`,
//! ratio and padding included, checked by `letterboxes_match_opencv` in
//! `tests/opencv_vectors.rs` (square and rectangular targets, shrinking, enlarging, odd
//! padding).

use super::image_io::RgbImage;
use super::resize::{resize_image, Interpolation};
use super::PAD_VALUE;

#[derive(Clone, Debug, PartialEq)]
pub struct Letterboxed {
    pub image: RgbImage,
    /// Scale applied to the input, (width, height) as upstream returns it.
    pub ratio: (f64, f64),
    /// Half the padding, (dw, dh), before rounding into left/top borders.
    pub pad: (f64, f64),
}

/// Resizes (bilinear) and pads `img` to `new_hw` = (height, width), keeping its
/// aspect ratio; `scaleup = false` never enlarges (what val uses).
pub fn letterbox(img: &RgbImage, new_hw: (usize, usize), scaleup: bool) -> Letterboxed {
    let (h, w) = (img.height as f64, img.width as f64);
    let mut r = (new_hw.0 as f64 / h).min(new_hw.1 as f64 / w);
    if !scaleup {
        r = r.min(1.0);
    }
    let unpad_w = (w * r).round_ties_even() as usize;
    let unpad_h = (h * r).round_ties_even() as usize;
    let dw = (new_hw.1 - unpad_w) as f64 / 2.0;
    let dh = (new_hw.0 - unpad_h) as f64 / 2.0;
    let resized;
    let src = if (img.width, img.height) != (unpad_w, unpad_h) {
        resized = resize_image(img, (unpad_w, unpad_h), Interpolation::Linear);
        &resized
    } else {
        img
    };
    // Upstream rounds dw -/+ 0.1, which puts an odd pixel on the bottom/right.
    let top = (dh - 0.1).round_ties_even() as usize;
    let left = (dw - 0.1).round_ties_even() as usize;
    let image = pad_into(src, new_hw, (top, left));
    Letterboxed { image, ratio: (r, r), pad: (dw, dh) }
}

fn pad_into(src: &RgbImage, (h, w): (usize, usize), (top, left): (usize, usize)) -> RgbImage {
    let mut data = vec![PAD_VALUE; h * w * 3];
    let row_len = src.width * 3;
    for (y, row) in src.data.chunks_exact(row_len).enumerate() {
        let start = ((top + y) * w + left) * 3;
        data[start..start + row_len].copy_from_slice(row);
    }
    RgbImage { width: w, height: h, data }
}

/// Upstream `scale_boxes` with an explicit ratio_pad, then `clip_boxes`: maps an
/// xyxy box from letterboxed pixels back to the original image, in f32 like torch.
pub fn scale_box_to_original(xyxy: [f32; 4], gain: f64, pad: (f64, f64), orig_hw: (usize, usize)) -> [f32; 4] {
    let (px, py, g) = (pad.0 as f32, pad.1 as f32, gain as f32);
    let (w0, h0) = (orig_hw.1 as f32, orig_hw.0 as f32);
    [((xyxy[0] - px) / g).clamp(0.0, w0), ((xyxy[1] - py) / g).clamp(0.0, h0), ((xyxy[2] - px) / g).clamp(0.0, w0), ((xyxy[3] - py) / g).clamp(0.0, h0)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn solid(w: usize, h: usize, v: u8) -> RgbImage {
        RgbImage::filled(w, h, v)
    }

    #[test]
    fn odd_padding_goes_bottom_right() {
        // 256x171 into 192x256: dh = 10.5 -> top round(10.4) = 10, bottom 11.
        let lb = letterbox(&solid(256, 171, 7), (192, 256), false);
        assert_eq!(lb.pad, (0.0, 10.5));
        assert_eq!(lb.ratio, (1.0, 1.0));
        let px = |x: usize, y: usize| lb.image.data[(y * 256 + x) * 3];
        assert_eq!((px(0, 9), px(0, 10), px(0, 180), px(0, 181)), (114, 7, 7, 114));
    }

    #[test]
    fn even_padding_is_symmetric_and_no_scaleup() {
        let lb = letterbox(&solid(10, 6, 1), (10, 14), false);
        assert_eq!(lb.pad, (2.0, 2.0));
        let row = |y: usize| lb.image.data[y * 14 * 3..(y + 1) * 14 * 3].to_vec();
        assert!(row(0).iter().chain(&row(1)).all(|&v| v == 114));
        assert_eq!(&row(2)[..6], &[114; 6]);
        assert_eq!(&row(2)[6..36], &[1; 30]);
        assert_eq!(&row(2)[36..], &[114; 6]);
    }

    #[test]
    fn shrinks_when_larger_than_target() {
        let lb = letterbox(&solid(40, 20, 50), (16, 16), false);
        assert_eq!(lb.ratio, (0.4, 0.4));
        assert_eq!((lb.image.width, lb.image.height), (16, 16));
        assert_eq!(lb.pad, (0.0, 4.0));
        assert_eq!(lb.image.data[(8 * 16 + 8) * 3], 50);
    }

    #[test]
    fn scale_back_subtracts_pad_divides_and_clips() {
        let b = scale_box_to_original([10.0, 20.5, 110.0, 400.0], 0.5, (5.0, 0.5), (300, 100));
        assert_eq!(b, [10.0, 40.0, 100.0, 300.0]);
    }

    #[test]
    fn square_canvas_reports_offsets() {
        let lb = letterbox(&solid(64, 40, 7), (64, 64), true);
        assert_eq!((lb.image.width, lb.image.height), (64, 64));
        assert_eq!(lb.ratio, (1.0, 1.0));
        assert_eq!(lb.pad, (0.0, 12.0));
        assert_eq!(lb.image.get(10, 11), [PAD_VALUE; 3]);
        assert_eq!(lb.image.get(10, 12), [7; 3]);
        assert_eq!(lb.image.get(10, 51), [7; 3]);
        assert_eq!(lb.image.get(10, 52), [PAD_VALUE; 3]);
        // odd padding: 64 - 39 = 25 -> top 12, bottom 13, dh = 12.5
        let lb = letterbox(&solid(64, 39, 7), (64, 64), true);
        assert_eq!(lb.pad.1, 12.5);
        assert_eq!(lb.image.get(0, 11), [PAD_VALUE; 3]);
        assert_eq!(lb.image.get(0, 12), [7; 3]);
        assert_eq!(lb.image.get(0, 50), [7; 3]);
        assert_eq!(lb.image.get(0, 51), [PAD_VALUE; 3]);
    }
}
