//! The first batches of an evaluation as val.py plots them (`val_batch{0,1,2}_labels.jpg`
//! / `_pred.jpg`, upstream utils/plots.py `plot_images`): letterboxed images with their
//! labels and detections in letterboxed pixels.

use crate::data::image_io::RgbImage;
use crate::data::labels::Label;
use crate::data::val_set::{ValBatch, ValItem};
use crate::eval::nms::Detection;

/// Batches kept for pictures (val.py: `batch_i < 3`).
pub const SAMPLE_BATCHES: usize = 3;

#[derive(Clone, Debug)]
pub struct SampleImage {
    pub file_name: String,
    pub image: RgbImage,
    pub labels: Vec<Label>,
    pub detections: Vec<Detection>,
}

/// One sampled batch, images in batch order.
pub type SampleBatch = Vec<SampleImage>;

/// A batch's images (CHW u8 in the batch) as interleaved RGB, with letterboxed labels and
/// the detections before they were mapped back to the original image.
pub fn sample_batch(batch: &ValBatch, dets: &[Vec<Detection>]) -> SampleBatch {
    let plane = batch.height * batch.width;
    batch
        .items
        .iter()
        .zip(dets)
        .enumerate()
        .map(|(i, (item, d))| {
            let chw = &batch.images[i * 3 * plane..(i + 1) * 3 * plane];
            let mut data = vec![0u8; 3 * plane];
            for (p, px) in data.chunks_exact_mut(3).enumerate() {
                px.copy_from_slice(&[chw[p], chw[plane + p], chw[2 * plane + p]]);
            }
            SampleImage {
                file_name: item.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
                image: RgbImage { width: batch.width, height: batch.height, data },
                labels: item.labels.iter().map(|l| to_letterbox(l, item)).collect(),
                detections: d.clone(),
            }
        })
        .collect()
}

/// Original pixels to letterboxed ones (the inverse of `scale_boxes`).
fn to_letterbox(l: &Label, item: &ValItem) -> Label {
    let (g, px, py) = (item.ratio.0 as f32, item.pad.0 as f32, item.pad.1 as f32);
    let b = l.xyxy;
    Label { class: l.class, xyxy: [b[0] * g + px, b[1] * g + py, b[2] * g + px, b[3] * g + py] }
}
