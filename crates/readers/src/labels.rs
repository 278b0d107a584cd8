//! YOLO label files: where they live, how they parse, and upstream's checks
//! (`verify_image_label`).

use std::cmp::Ordering;
use std::path::{Path, PathBuf};

use crate::regular_file::{read_regular, ReadError};

/// One label as stored in a YOLO label file: class and normalized (cx, cy, w, h), in f32
/// like upstream. Training and validation both start from these rows.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LabelRow {
    pub class: usize,
    pub xywhn: [f32; 4],
}

/// A box label in pixels: class and corners (x1, y1, x2, y2), f32 like upstream's arrays.
/// Validation keeps ground truth in original-image pixels (as val.py compares it); the
/// training augmentations move these boxes through mosaics, warps and flips.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Label {
    pub class: usize,
    pub xyxy: [f32; 4],
}

impl From<(usize, [f32; 4])> for LabelRow {
    fn from((class, xywhn): (usize, [f32; 4])) -> Self {
        LabelRow { class, xywhn }
    }
}

impl LabelRow {
    /// Upstream `xywhn2xyxy(x, w, h, padw, padh)`: to pixel corners of an image `w` x `h`
    /// placed at offset (`padw`, `padh`). Upstream's scalars are Python floats applied to a
    /// float32 array, so the arithmetic is f32.
    pub fn to_pixels(&self, w: f64, h: f64, padw: f64, padh: f64) -> Label {
        let b = self.xywhn;
        let (w, h, pw, ph) = (w as f32, h as f32, padw as f32, padh as f32);
        let xyxy = [w * (b[0] - b[2] / 2.0) + pw, h * (b[1] - b[3] / 2.0) + ph, w * (b[0] + b[2] / 2.0) + pw, h * (b[1] + b[3] / 2.0) + ph];
        Label { class: self.class, xyxy }
    }
}

impl Label {
    /// Upstream `xyxy2xywhn(x, w, h, clip=True, eps)`: clips the corners to
    /// `[0, w - eps] x [0, h - eps]`, then normalizes to centre and size (f32).
    pub fn to_normalized_clipped(&self, w: f64, h: f64, eps: f64) -> LabelRow {
        let (cw, ch) = ((w - eps) as f32, (h - eps) as f32);
        let b = self.xyxy;
        let (x1, y1, x2, y2) = (b[0].clamp(0.0, cw), b[1].clamp(0.0, ch), b[2].clamp(0.0, cw), b[3].clamp(0.0, ch));
        let (w, h) = (w as f32, h as f32);
        LabelRow { class: self.class, xywhn: [((x1 + x2) / 2.0) / w, ((y1 + y2) / 2.0) / h, (x2 - x1) / w, (y2 - y1) / h] }
    }
}

/// The rows kept from one label file and the warnings it raised.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LabelFile {
    pub rows: Vec<LabelRow>,
    /// One normalized polygon per row (segmentation labels); empty polygons when the file holds boxes.
    pub segments: Vec<Vec<[f32; 2]>>,
    pub warnings: Vec<String>,
}

/// Upstream `img2label_paths`: last `/images/` becomes `/labels/`, extension becomes `.txt`.
pub fn label_path_for(image: &Path) -> PathBuf {
    let s = image.to_string_lossy();
    let sep = std::path::MAIN_SEPARATOR;
    let (sa, sb) = (format!("{sep}images{sep}"), format!("{sep}labels{sep}"));
    let swapped = match s.rfind(&sa) {
        Some(i) => format!("{}{}{}", &s[..i], sb, &s[i + sa.len()..]),
        None => s.into_owned(),
    };
    let stem = swapped.rsplit_once('.').map_or(swapped.as_str(), |(a, _)| a);
    PathBuf::from(format!("{stem}.txt"))
}

/// Largest label file read: far above any real one (a COCO image's polygons take a few
/// KB), far below what a mistaken path (`/dev/zero`, a video) could make us allocate.
pub const MAX_LABEL_BYTES: u64 = 16 << 20;

/// Reads and checks a label file. A missing or empty file has no objects.
/// `Err(reason)` means upstream rejects the whole image ("ignoring corrupt
/// image/label"); rows with a class outside [0, nc) are dropped with a warning.
/// Only a regular file of at most [`MAX_LABEL_BYTES`] is read.
pub fn read_label_file(path: &Path, nc: usize) -> Result<LabelFile, String> {
    let bytes = match read_regular(path, MAX_LABEL_BYTES) {
        Ok(b) => b,
        Err(ReadError::NotFound) => return Ok(LabelFile::default()),
        Err(e) => return Err(e.to_string()),
    };
    let text = String::from_utf8(bytes).map_err(|_| "stream did not contain valid UTF-8".to_string())?;
    parse_labels(&text, nc)
}

/// Parses label text with upstream's rules (see [`read_label_file`]).
pub fn parse_labels(text: &str, nc: usize) -> Result<LabelFile, String> {
    let rows: Vec<Vec<&str>> = text.trim().lines().filter(|l| !l.is_empty()).map(|l| l.split_whitespace().collect()).collect();
    if rows.is_empty() {
        return Ok(LabelFile::default());
    }
    let polygons = rows.iter().any(|r| r.len() > 6);
    let mut table = if polygons { segments_to_boxes(&rows)? } else { parse_table(&rows)? };
    check_values(&table)?;
    let mut segments: Vec<Vec<[f32; 2]>> =
        if polygons { rows.iter().map(|r| parse_points(r)).collect::<Result<_, _>>()? } else { vec![Vec::new(); table.len()] };
    let mut warnings = Vec::new();
    if let Some(kept) = dedup_rows(&mut table) {
        warnings.push(format!("{} duplicate labels removed", segments.len() - kept.len()));
        segments = kept.into_iter().map(|i| std::mem::take(&mut segments[i])).collect();
    }
    let mut out = Vec::with_capacity(table.len());
    let mut kept_segments = Vec::with_capacity(table.len());
    for (r, seg) in table.into_iter().zip(segments) {
        let class = r[0] as usize; // upstream truncates the class with astype(int)
        if class >= nc {
            warnings.push(format!("class {class} outside [0, {nc}), label dropped"));
            continue;
        }
        out.push(LabelRow { class, xywhn: [r[1], r[2], r[3], r[4]] });
        kept_segments.push(seg);
    }
    Ok(LabelFile { rows: out, segments: kept_segments, warnings })
}

/// A polygon row's points (upstream: `np.array(x[1:], dtype=np.float32).reshape(-1, 2)`).
fn parse_points(row: &[&str]) -> Result<Vec<[f32; 2]>, String> {
    let pts: Vec<f32> = row[1..].iter().map(|t| parse_f32(t)).collect::<Result<_, _>>()?;
    Ok(pts.chunks_exact(2).map(|p| [p[0], p[1]]).collect())
}

/// numpy's float32 parse goes through Python float (f64) first.
fn parse_f32(tok: &str) -> Result<f32, String> {
    tok.parse::<f64>().map(|v| v as f32).map_err(|_| format!("could not convert string to float: '{tok}'"))
}

fn parse_table(rows: &[Vec<&str>]) -> Result<Vec<[f32; 5]>, String> {
    let cols = rows[0].len();
    if rows.iter().any(|r| r.len() != cols) {
        return Err("rows have different numbers of columns".into());
    }
    if cols != 5 {
        return Err(format!("labels require 5 columns, {cols} columns detected"));
    }
    rows.iter().map(|r| Ok([parse_f32(r[0])?, parse_f32(r[1])?, parse_f32(r[2])?, parse_f32(r[3])?, parse_f32(r[4])?])).collect()
}

/// Polygon rows (`cls x1 y1 x2 y2 ...`) become their bounding boxes, as upstream's segments2boxes.
fn segments_to_boxes(rows: &[Vec<&str>]) -> Result<Vec<[f32; 5]>, String> {
    rows.iter()
        .map(|r| {
            let cls = parse_f32(r.first().ok_or("empty label row")?)?;
            let pts: Vec<f32> = r[1..].iter().map(|t| parse_f32(t)).collect::<Result<_, _>>()?;
            if pts.is_empty() || !pts.len().is_multiple_of(2) {
                return Err(format!("segment with {} coordinates cannot form points", pts.len()));
            }
            let (xs, ys): (Vec<f32>, Vec<f32>) = pts.chunks_exact(2).map(|p| (p[0], p[1])).unzip();
            let fold = |v: &[f32], f: fn(f32, f32) -> f32| v.iter().copied().reduce(f).unwrap();
            let (x0, x1, y0, y1) = (fold(&xs, f32::min), fold(&xs, f32::max), fold(&ys, f32::min), fold(&ys, f32::max));
            Ok([cls, (x0 + x1) / 2.0, (y0 + y1) / 2.0, x1 - x0, y1 - y0])
        })
        .collect()
}

fn check_values(table: &[[f32; 5]]) -> Result<(), String> {
    let neg: Vec<f32> = table.iter().flatten().copied().filter(|v| *v < 0.0).collect();
    if !neg.is_empty() {
        return Err(format!("negative label values {neg:?}"));
    }
    let big: Vec<f32> = table.iter().flat_map(|r| r[1..].iter().copied()).filter(|v| *v > 1.0).collect();
    if !big.is_empty() {
        return Err(format!("non-normalized or out of bounds coordinates {big:?}"));
    }
    // NaN passes neither comparison above but fails upstream's >= 0 test.
    if table.iter().flatten().any(|v| v.is_nan()) {
        return Err("label values are NaN".into());
    }
    Ok(())
}

/// np.unique(rows, axis=0, return_index=True): only when duplicates exist are rows
/// replaced by the lexicographically sorted unique rows; returns then the original
/// index of each kept row (its first occurrence), so that polygons follow their rows.
fn dedup_rows(table: &mut Vec<[f32; 5]>) -> Option<Vec<usize>> {
    let cmp =
        |a: &[f32; 5], b: &[f32; 5]| a.iter().zip(b).map(|(x, y)| x.partial_cmp(y).unwrap_or(Ordering::Equal)).find(|o| o.is_ne()).unwrap_or(Ordering::Equal);
    let mut order: Vec<usize> = (0..table.len()).collect();
    order.sort_by(|&a, &b| cmp(&table[a], &table[b])); // stable: first occurrence first
    order.dedup_by(|a, b| cmp(&table[*a], &table[*b]).is_eq());
    if order.len() == table.len() {
        return None;
    }
    *table = order.iter().map(|&i| table[i]).collect();
    Some(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_path_swaps_last_images_folder_and_extension() {
        let p = label_path_for(Path::new("/d/images/x/images/val/a.b.JPG"));
        assert_eq!(p, PathBuf::from("/d/images/x/labels/val/a.b.txt"));
        assert_eq!(label_path_for(Path::new("/d/pics/a.png")), PathBuf::from("/d/pics/a.txt"));
    }

    #[test]
    fn parses_rows_as_f32() {
        let f = parse_labels("0 0.251401 0.566144 0.085241 0.101888\n\n2 0.5 0.5 1 1\n", 6).unwrap();
        assert_eq!(f.rows.len(), 2);
        assert_eq!(f.rows[0], LabelRow { class: 0, xywhn: [0.251401, 0.566144, 0.085241, 0.101888] });
        assert!(f.warnings.is_empty());
    }

    #[test]
    fn empty_text_has_no_objects() {
        assert_eq!(parse_labels("  \n", 3).unwrap(), LabelFile::default());
    }

    #[test]
    fn polygons_follow_their_rows_through_dedup_and_class_filter() {
        let text = "3 0.5 0.5 0.6 0.5 0.6 0.6 0.5 0.6\n7 0.1 0.1 0.2 0.1 0.2 0.2 0.1 0.2\n1 0.2 0.2 0.3 0.2 0.3 0.3\n3 0.5 0.5 0.6 0.5 0.6 0.6 0.5 0.6\n";
        let f = parse_labels(text, 6).unwrap();
        assert_eq!(f.rows.iter().map(|r| r.class).collect::<Vec<_>>(), vec![1, 3]);
        assert_eq!(f.segments.iter().map(Vec::len).collect::<Vec<_>>(), vec![3, 4]);
        assert_eq!(f.segments[0][0], [0.2, 0.2]);
    }

    #[test]
    fn duplicates_are_removed_and_rows_sorted() {
        let f = parse_labels("3 0.5 0.5 0.1 0.1\n1 0.2 0.2 0.1 0.1\n3 0.5 0.5 0.1 0.1\n", 6).unwrap();
        assert_eq!(f.rows.iter().map(|r| r.class).collect::<Vec<_>>(), vec![1, 3]);
        assert_eq!(f.warnings, vec!["1 duplicate labels removed".to_string()]);
    }

    #[test]
    fn class_out_of_range_is_dropped_with_warning() {
        let f = parse_labels("7 0.5 0.5 0.1 0.1\n1 0.2 0.2 0.1 0.1\n", 6).unwrap();
        assert_eq!(f.rows.len(), 1);
        assert_eq!(f.warnings, vec!["class 7 outside [0, 6), label dropped".to_string()]);
    }

    #[test]
    fn corrupt_files_are_rejected_with_upstream_reasons() {
        assert!(parse_labels("0 0.5 0.5 0.1\n", 6).unwrap_err().contains("5 columns, 4 columns"));
        assert!(parse_labels("0 0.5 0.5 0.1 0.1 0.9\n", 6).unwrap_err().contains("6 columns"));
        assert!(parse_labels("0 0.5 -0.5 0.1 0.1\n", 6).unwrap_err().contains("negative"));
        assert!(parse_labels("0 0.5 1.0001 0.1 0.1\n", 6).unwrap_err().contains("non-normalized"));
        assert!(parse_labels("0 0.5 x 0.1 0.1\n", 6).unwrap_err().contains("float"));
        // exactly 1 is fine
        assert!(parse_labels("0 0.5 1 1 1\n", 6).is_ok());
    }

    #[test]
    fn box_conversions() {
        let b = LabelRow { class: 3, xywhn: [0.5, 0.5, 0.2, 0.4] }.to_pixels(100.0, 50.0, 3.0, 4.0);
        assert_eq!(b.class, 3);
        for (g, w) in b.xyxy.iter().zip([43.0, 19.0, 63.0, 39.0]) {
            assert!((g - w).abs() < 1e-4, "{b:?}");
        }
        let n = Label { class: 1, xyxy: [-5.0, 10.0, 50.0, 60.0] }.to_normalized_clipped(100.0, 50.0, 1e-3).xywhn;
        assert!((n[0] - 0.25).abs() < 1e-6 && (n[2] - 0.5).abs() < 1e-6);
        assert!((n[3] - (50.0 - 1e-3 - 10.0) / 50.0).abs() < 1e-5);
    }

    #[test]
    fn segments_become_boxes() {
        let f = parse_labels("2 0.1 0.2 0.5 0.2 0.5 0.6 0.1 0.6\n", 6).unwrap();
        assert_eq!(f.segments, vec![vec![[0.1, 0.2], [0.5, 0.2], [0.5, 0.6], [0.1, 0.6]]]);
        let r = f.rows[0];
        assert_eq!(r.class, 2);
        assert_eq!(r.xywhn, [(0.1f32 + 0.5) / 2.0, (0.2f32 + 0.6) / 2.0, 0.5 - 0.1f32, 0.6 - 0.2f32]);
    }
}
