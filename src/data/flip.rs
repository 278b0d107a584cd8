//! The flips of upstream `LoadImagesAndLabels.__getitem__` (utils/dataloaders.py):
//! `np.flipud` with probability `hyp.flipud`, then `np.fliplr` with probability
//! `hyp.fliplr`, each mirroring the normalized labels' centres with the image.

use crate::data::image_io::RgbImage;
use crate::data::labels::LabelRow;

/// Mirror left-right in place (`np.fliplr`).
pub fn flip_lr(img: &mut RgbImage) {
    let w = img.width;
    for row in img.data.chunks_exact_mut(w * 3) {
        for x in 0..w / 2 {
            let (a, b) = (x * 3, (w - 1 - x) * 3);
            for c in 0..3 {
                row.swap(a + c, b + c);
            }
        }
    }
}

/// Mirror up-down in place (`np.flipud`).
pub fn flip_ud(img: &mut RgbImage) {
    let stride = img.width * 3;
    let h = img.height;
    for y in 0..h / 2 {
        let (top, bottom) = img.data.split_at_mut((h - 1 - y) * stride);
        top[y * stride..(y + 1) * stride].swap_with_slice(&mut bottom[..stride]);
    }
}

/// [`flip_ud`] with its labels: `y = 1 - y`.
pub fn flip_ud_with_labels(img: &mut RgbImage, labels: &mut [LabelRow]) {
    flip_ud(img);
    labels.iter_mut().for_each(|l| l.xywhn[1] = 1.0 - l.xywhn[1]);
}

/// [`flip_lr`] with its labels: `x = 1 - x`.
pub fn flip_lr_with_labels(img: &mut RgbImage, labels: &mut [LabelRow]) {
    flip_lr(img);
    labels.iter_mut().for_each(|l| l.xywhn[0] = 1.0 - l.xywhn[0]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::test_images::checker;

    #[test]
    fn flips() {
        let img = checker(5, 4);
        let mut lr = img.clone();
        flip_lr(&mut lr);
        let mut ud = img.clone();
        flip_ud(&mut ud);
        for y in 0..4 {
            for x in 0..5 {
                assert_eq!(lr.get(x, y), img.get(4 - x, y));
                assert_eq!(ud.get(x, y), img.get(x, 3 - y));
            }
        }
        flip_lr(&mut lr);
        flip_ud(&mut ud);
        assert_eq!(lr, img);
        assert_eq!(ud, img);
    }
}
