//! COCO-format `annotations.json` (ground truth) and `predictions.json` (results)
//! that pycocotools' COCO / loadRes / COCOeval accept.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::data::labels::Label;
use crate::eval::nms::Detection;

/// One evaluated image: labels and detections both in original pixels.
#[derive(Clone, Debug)]
pub struct CocoImage {
    pub path: PathBuf,
    pub orig_hw: (usize, usize),
    pub labels: Vec<Label>,
    pub detections: Vec<Detection>,
}

#[derive(Serialize)]
struct ImageEntry {
    id: u64,
    file_name: String,
    width: usize,
    height: usize,
}

#[derive(Serialize)]
struct Annotation {
    id: u64,
    image_id: u64,
    category_id: usize,
    bbox: [f64; 4],
    area: f64,
    iscrowd: u8,
}

#[derive(Serialize)]
struct Category {
    id: usize,
    name: String,
}

#[derive(Serialize)]
struct Annotations {
    images: Vec<ImageEntry>,
    annotations: Vec<Annotation>,
    categories: Vec<Category>,
}

#[derive(Serialize)]
struct Prediction {
    image_id: u64,
    category_id: usize,
    bbox: [f64; 4],
    score: f64,
}

/// Image ids: the numeric file stems when they all are numeric and distinct
/// (so ids match official COCO annotations), else 1, 2, ... in the given order.
pub fn image_ids(paths: &[PathBuf]) -> Vec<u64> {
    let stems: Option<Vec<u64>> = paths.iter().map(|p| p.file_stem()?.to_str()?.parse::<u64>().ok()).collect();
    if let Some(ids) = stems {
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() == ids.len() {
            return ids;
        }
    }
    (1..=paths.len() as u64).collect()
}

/// xyxy -> COCO [x, y, w, h], rounded to 3 decimals like val.py's save_one_json.
fn coco_bbox(xyxy: [f32; 4]) -> [f64; 4] {
    let r3 = |v: f32| (v as f64 * 1000.0).round() / 1000.0;
    let (w, h) = (xyxy[2] - xyxy[0], xyxy[3] - xyxy[1]);
    [r3(xyxy[0]), r3(xyxy[1]), r3(w), r3(h)]
}

/// Writes `annotations.json` and `predictions.json` into `dir`; category ids are class indices.
pub fn write_coco_json(dir: &Path, images: &[CocoImage], names: &[String]) -> Result<(PathBuf, PathBuf)> {
    let ids = image_ids(&images.iter().map(|i| i.path.clone()).collect::<Vec<_>>());
    let mut anns = Annotations {
        images: Vec::with_capacity(images.len()),
        annotations: Vec::new(),
        categories: names.iter().enumerate().map(|(id, n)| Category { id, name: n.clone() }).collect(),
    };
    let mut preds = Vec::new();
    for (img, &id) in images.iter().zip(&ids) {
        let file_name = img.path.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        anns.images.push(ImageEntry { id, file_name, width: img.orig_hw.1, height: img.orig_hw.0 });
        for l in &img.labels {
            let bbox = coco_bbox(l.xyxy);
            // ids start at 1: COCOeval treats a matched gt id of 0 as "unmatched"
            let ann_id = anns.annotations.len() as u64 + 1;
            anns.annotations.push(Annotation { id: ann_id, image_id: id, category_id: l.class, bbox, area: bbox[2] * bbox[3], iscrowd: 0 });
        }
        for d in &img.detections {
            let score = (d.conf as f64 * 1e5).round() / 1e5;
            preds.push(Prediction { image_id: id, category_id: d.class, bbox: coco_bbox(d.xyxy), score });
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let (a, p) = (dir.join("annotations.json"), dir.join("predictions.json"));
    crate::util::write_atomic(&a, &serde_json::to_vec(&anns)?)?;
    crate::util::write_atomic(&p, &serde_json::to_vec(&preds)?)?;
    Ok((a, p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_from_numeric_stems_else_sequential() {
        let p = |s: &str| PathBuf::from(s);
        assert_eq!(image_ids(&[p("a/000000139.jpg"), p("b/42.png")]), vec![139, 42]);
        assert_eq!(image_ids(&[p("a/1.jpg"), p("b/1.png")]), vec![1, 2]);
        assert_eq!(image_ids(&[p("val_0.jpg"), p("3.jpg")]), vec![1, 2]);
    }

    #[test]
    fn writes_consistent_files() {
        let t = tempfile::tempdir().unwrap();
        let img = CocoImage {
            path: PathBuf::from("/x/images/val_7.jpg"),
            orig_hw: (300, 400),
            labels: vec![Label { class: 1, xyxy: [10.0, 20.0, 50.5, 80.0] }],
            detections: vec![Detection { xyxy: [11.0, 21.0, 51.0, 79.0], conf: 0.123456, class: 1 }],
        };
        let names = vec!["a".to_string(), "b".to_string()];
        let (a, p) = write_coco_json(t.path(), &[img], &names).unwrap();
        let a: serde_json::Value = serde_json::from_slice(&std::fs::read(a).unwrap()).unwrap();
        let p: serde_json::Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
        assert_eq!(a["images"][0]["id"], 1);
        assert_eq!(a["images"][0]["width"], 400);
        assert_eq!(a["annotations"][0]["id"], 1);
        assert_eq!(a["annotations"][0]["bbox"], serde_json::json!([10.0, 20.0, 40.5, 60.0]));
        assert_eq!(a["annotations"][0]["area"], 2430.0);
        assert_eq!(a["annotations"][0]["iscrowd"], 0);
        assert_eq!(a["categories"][1], serde_json::json!({"id": 1, "name": "b"}));
        assert_eq!(p[0]["image_id"], a["images"][0]["id"]);
        assert_eq!(p[0]["category_id"], 1);
        assert_eq!(p[0]["bbox"], serde_json::json!([11.0, 21.0, 40.0, 58.0]));
        assert_eq!(p[0]["score"], 0.12346);
    }
}
