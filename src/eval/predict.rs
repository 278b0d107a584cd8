//! Detections on one image, as upstream detect.py finds them: letterboxed to the model's
//! input (the long side `imgsz`, the short one padded to a multiple of the stride),
//! NMS, then boxes back in the image's own pixels.

use super::nms::{non_max_suppression, Detection, NmsConfig};
use super::validate::Infer;
use crate::data::image_io::RgbImage;
use crate::data::letterbox::{letterbox, scale_box_to_original};
use anyhow::{anyhow, Result};
use tch::{Device, Kind, Tensor};

/// detect.py's defaults: conf 0.25, IoU 0.45, best class only, up to 1000 boxes.
pub fn detect_nms(conf_thres: f32, iou_thres: f64) -> NmsConfig {
    NmsConfig { conf_thres, iou_thres, max_det: 1000, multi_label: false, ..NmsConfig::default() }
}

/// Network input (height, width) for an image: the long side `imgsz`, the other the
/// smallest multiple of `stride` that holds it (detect.py's `auto` letterbox).
pub fn input_shape(orig_hw: (usize, usize), imgsz: usize, stride: usize) -> (usize, usize) {
    let r = imgsz as f64 / orig_hw.0.max(orig_hw.1) as f64;
    let up = |v: usize| ((v as f64 * r).round() as usize).div_ceil(stride) * stride;
    (up(orig_hw.0).max(stride), up(orig_hw.1).max(stride))
}

/// Detections of `m` on `img` at input size `shape`, in `img`'s pixels.
pub fn detect(m: &dyn Infer, img: &RgbImage, shape: (usize, usize), nms: &NmsConfig, device: Device) -> Result<Vec<Detection>> {
    let lb = letterbox(img, shape, true);
    let (h, w) = shape;
    let plane = h * w;
    let mut chw = vec![0u8; 3 * plane];
    for (p, px) in lb.image.data.chunks_exact(3).enumerate() {
        (0..3).for_each(|c| chw[c * plane + p] = px[c]);
    }
    let x = Tensor::from_slice(&chw).view([1, 3, h as i64, w as i64]).to_device(device).to_kind(Kind::Float) / 255.0;
    let out = m.infer(&x)?.to_kind(Kind::Float).to_device(Device::Cpu).contiguous();
    let pred = Vec::<f32>::try_from(out.view([-1])).map_err(|e| anyhow!("model output: {e}"))?;
    let nc = m.names().len();
    if nc == 0 || !pred.len().is_multiple_of(4 + nc) {
        return Err(anyhow!("model output of {} values is not (4 + {nc}) x anchors", pred.len()));
    }
    let dets = non_max_suppression(&pred, nc, nms);
    Ok(dets.into_iter().map(|d| Detection { xyxy: scale_box_to_original(d.xyxy, lb.ratio.0, lb.pad, img.hw()), ..d }).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_shape_pads_the_short_side_to_the_stride() {
        // 480 x 640 at 640: unchanged; 500 x 640: 500 -> 512; 1000 x 2000 at 320: 160 x 320
        assert_eq!(input_shape((480, 640), 640, 32), (480, 640));
        assert_eq!(input_shape((500, 640), 640, 32), (512, 640));
        assert_eq!(input_shape((1000, 2000), 320, 32), (160, 320));
    }
}
