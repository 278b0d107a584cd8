//! Upstream `mixup` (utils/augmentations.py): two mosaics blended with a
//! `Beta(32, 32)` ratio, their labels concatenated.

use crate::data::image_io::RgbImage;
use crate::data::labels::Label;
use crate::data::rng::Rng;
use crate::data::segments::Polygon;

/// Upstream `mixup`: `r ~ Beta(32, 32)`, `img = uint8(img * r + img2 * (1 - r))`
/// (truncating, as numpy's `astype`), labels (and their polygons, if both have them) concatenated.
pub fn mixup(img: &mut RgbImage, labels: &mut Vec<Label>, polys: &mut Vec<Polygon>, img2: &RgbImage, labels2: &[Label], polys2: &[Polygon], rng: &mut Rng) {
    assert_eq!((img.width, img.height), (img2.width, img2.height), "mixup of different sizes");
    let r = rng.beta(32.0, 32.0);
    let mut ta = [0f64; 256];
    let mut tb = [0f64; 256];
    for i in 0..256 {
        ta[i] = i as f64 * r;
        tb[i] = i as f64 * (1.0 - r);
    }
    for (a, &b) in img.data.iter_mut().zip(&img2.data) {
        *a = (ta[*a as usize] + tb[b as usize]) as u8;
    }
    labels.extend_from_slice(labels2);
    polys.extend_from_slice(polys2);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixup_truncates_and_concatenates() {
        let mut a = RgbImage::filled(2, 2, 200);
        let b = RgbImage::filled(2, 2, 100);
        let mut la = vec![Label { class: 0, xyxy: [0.0, 0.0, 1.0, 1.0] }];
        let lb = vec![Label { class: 1, xyxy: [0.0, 0.0, 2.0, 2.0] }];
        let mut rng = Rng::new(3);
        let r = rng.clone().beta(32.0, 32.0);
        mixup(&mut a, &mut la, &mut vec![], &b, &lb, &[], &mut rng);
        assert_eq!(a.data[0], (200.0 * r + 100.0 * (1.0 - r)) as u8);
        assert_eq!(la.len(), 2);
    }
}
