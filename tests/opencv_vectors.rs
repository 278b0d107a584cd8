//! The image code against OpenCV itself: every output byte of our HSV conversions,
//! resizes, warps, letterbox and `augment_hsv` equals what OpenCV computed for the same
//! input. The reference outputs are in `tests/data/opencv/` (made once by
//! `scripts/make_opencv_vectors.py`; `manifest.json` says with which OpenCV, how each
//! file was made, and holds the exact matrices, sizes and gains).

mod common;

use std::path::PathBuf;

use serde_json::Value;
use yolo_qat::data::hsv::{apply_hsv_luts, hsv_luts, hsv_to_rgb, hsv_to_rgb_row, hsv_to_rgb_scalar, rgb_to_hsv, HSV2RGB_SIMD_PIXELS};
use yolo_qat::data::image_io::decode_rgb8;
use yolo_qat::data::letterbox::letterbox;
use yolo_qat::data::resize::{resize_image, Interpolation};
use yolo_qat::data::warp::{warp_affine, warp_perspective, Mat3};
use yolo_qat::data::RgbImage;

fn path(name: &str) -> PathBuf {
    common::test_data(&format!("opencv/{name}"))
}

fn manifest() -> Value {
    let text = std::fs::read_to_string(path("manifest.json")).unwrap();
    serde_json::from_str(&text).expect("manifest.json parses")
}

fn png(name: &str) -> RgbImage {
    decode_rgb8(&path(name)).unwrap_or_else(|e| panic!("{e}"))
}

fn source(case: &Value) -> RgbImage {
    png(&format!("src_{}.png", str_of(&case["source"])))
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

fn usize_of(v: &Value) -> usize {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}")) as usize
}

fn cases<'a>(m: &'a Value, key: &str) -> &'a [Value] {
    m[key]["cases"].as_array().unwrap_or_else(|| panic!("manifest has no {key} cases"))
}

/// An f64 written by the script as the hex of its little-endian IEEE-754 bytes (JSON
/// decimals need not parse back to the same bits).
fn f64_bits(v: &Value) -> f64 {
    let hex = str_of(v);
    let bytes: Vec<u8> = (0..16).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
    f64::from_le_bytes(bytes.try_into().unwrap())
}

/// `None` when equal, else how the images differ (first differing pixel, count, largest gap).
fn difference(got: &RgbImage, want: &RgbImage) -> Option<String> {
    if (got.width, got.height) != (want.width, want.height) {
        return Some(format!("size {}x{}, OpenCV {}x{}", got.width, got.height, want.width, want.height));
    }
    let first = got.data.iter().zip(&want.data).position(|(a, b)| a != b)?;
    let n = got.data.iter().zip(&want.data).filter(|(a, b)| a != b).count();
    let gap = got.data.iter().zip(&want.data).map(|(&a, &b)| a.abs_diff(b)).max().unwrap_or(0);
    let (x, y, c) = ((first / 3) % got.width, first / 3 / got.width, first % 3);
    Some(format!("{n} bytes differ (largest gap {gap}); first at x {x}, y {y}, channel {c}: {} vs OpenCV {}", got.data[first], want.data[first]))
}

fn check_all(failures: Vec<String>, what: &str, total: usize) {
    assert!(failures.is_empty(), "{} of {total} {what} differ from OpenCV:\n{}", failures.len(), failures.join("\n"));
}

// ---------------------------------------------------------------- HSV

const FNV_OFFSET: u64 = 0xCBF2_9CE4_8422_2325;
const FNV_PRIME: u64 = 0x100_0000_01B3;

fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET, |h, &b| (h ^ b as u64).wrapping_mul(FNV_PRIME))
}

/// The script's digest: per plane of `out` (pixels in input order), FNV-1a 64 of the
/// plane's row digests (little-endian), a row digest being FNV-1a 64 of 256 pixels.
fn plane_digests(out: &[u8], planes: usize) -> Vec<String> {
    let rows: Vec<u64> = out.chunks_exact(256 * 3).map(fnv1a64).collect();
    rows.chunks_exact(rows.len() / planes).map(|p| format!("{:016x}", fnv1a64(&p.iter().flat_map(|r| r.to_le_bytes()).collect::<Vec<u8>>()))).collect()
}

/// Compares plane digests; `label` names a plane by its index (the r or h value).
fn check_planes(got: &[String], want: &Value, label: &str) {
    let want: Vec<&str> = want.as_array().expect("plane digests").iter().map(str_of).collect();
    assert_eq!(got.len(), want.len(), "number of planes");
    let bad: Vec<usize> = (0..got.len()).filter(|&i| got[i] != want[i]).collect();
    assert!(bad.is_empty(), "{} of {} planes differ from OpenCV, {label} = {:?}", bad.len(), got.len(), &bad[..bad.len().min(20)]);
}

fn samples(m: &Value, key: &str, record: usize) -> Vec<Vec<u8>> {
    let entry = &m["hsv"][key];
    let bytes = std::fs::read(path(str_of(&entry["file"]))).unwrap();
    assert_eq!(bytes.len(), usize_of(&entry["count"]) * record, "{key}: file size");
    bytes.chunks_exact(record).map(<[u8]>::to_vec).collect()
}

fn hsv_inputs() -> impl Iterator<Item = [u8; 3]> {
    (0u32..180 << 16).map(|i| [(i >> 16) as u8, (i >> 8) as u8, i as u8])
}

#[test]
fn rgb_to_hsv_all_colours() {
    let m = manifest();
    // the sampled triples first: a mismatch there names the colour
    for r in samples(&m, "rgb2hsv_samples", 6) {
        assert_eq!(rgb_to_hsv([r[0], r[1], r[2]]), [r[3], r[4], r[5]], "RGB {:?}", &r[..3]);
    }
    let out: Vec<u8> = (0u32..1 << 24).flat_map(|i| rgb_to_hsv([(i >> 16) as u8, (i >> 8) as u8, i as u8])).collect();
    check_planes(&plane_digests(&out, 256), &m["hsv"]["rgb2hsv_all"]["planes"], "r");
}

#[test]
fn hsv_to_rgb_all_values_simd_path() {
    let m = manifest();
    for r in samples(&m, "hsv2rgb_samples", 9) {
        assert_eq!(hsv_to_rgb([r[0], r[1], r[2]]), [r[3], r[4], r[5]], "HSV {:?}", &r[..3]);
    }
    let out: Vec<u8> = hsv_inputs().flat_map(hsv_to_rgb).collect();
    check_planes(&plane_digests(&out, 180), &m["hsv"]["hsv2rgb_vector_all"]["planes"], "h");
}

#[test]
fn hsv_to_rgb_all_values_scalar_path() {
    let m = manifest();
    for r in samples(&m, "hsv2rgb_samples", 9) {
        assert_eq!(hsv_to_rgb_scalar([r[0], r[1], r[2]]), [r[6], r[7], r[8]], "HSV {:?}", &r[..3]);
    }
    let out: Vec<u8> = hsv_inputs().flat_map(hsv_to_rgb_scalar).collect();
    check_planes(&plane_digests(&out, 180), &m["hsv"]["hsv2rgb_scalar_all"]["planes"], "h");
}

#[test]
fn hsv_to_rgb_rows_mix_both_paths() {
    let m = manifest();
    let block = usize_of(&m["hsv"]["hsv2rgb_simd_block"]);
    assert_eq!(
        block, HSV2RGB_SIMD_PIXELS,
        "the vectors were made by an OpenCV whose HSV->RGB SIMD block is {block} pixels (opencv {}); HSV2RGB_SIMD_PIXELS reproduces {HSV2RGB_SIMD_PIXELS}",
        m["opencv"]
    );
    let rows = m["hsv"]["hsv2rgb_rows"].as_array().unwrap();
    assert!(!rows.is_empty());
    for t in rows {
        let (w, h) = (usize_of(&t["width"]), usize_of(&t["height"]));
        let bytes = std::fs::read(path(str_of(&t["file"]))).unwrap();
        assert_eq!(bytes.len(), 2 * w * h * 3, "{}", t["file"]);
        let (input, want) = bytes.split_at(w * h * 3);
        let mut got = input.to_vec();
        got.chunks_exact_mut(w * 3).for_each(hsv_to_rgb_row);
        let got = RgbImage::from_raw(w, h, got).unwrap();
        let want = RgbImage::from_raw(w, h, want.to_vec()).unwrap();
        if let Some(d) = difference(&got, &want) {
            panic!("rows of {w} pixels: {d}");
        }
    }
}

#[test]
fn augment_hsv_with_fixed_gains() {
    let m = manifest();
    let all = cases(&m, "augment_hsv");
    let mut failures = Vec::new();
    for c in all {
        let mut img = source(c);
        let g: Vec<f64> = c["gains_bits"].as_array().unwrap().iter().map(f64_bits).collect();
        apply_hsv_luts(&mut img, &hsv_luts([g[0], g[1], g[2]]));
        if let Some(d) = difference(&img, &png(str_of(&c["file"]))) {
            failures.push(format!("{} (gains {:?}): {d}", c["file"], g));
        }
    }
    check_all(failures, "augment_hsv outputs", all.len());
}

// ---------------------------------------------------------------- geometry

#[test]
fn resizes_match_opencv() {
    let m = manifest();
    let all = cases(&m, "resize");
    let mut failures = Vec::new();
    for c in all {
        let interp = match str_of(&c["interpolation"]) {
            "linear" => Interpolation::Linear,
            "area" => Interpolation::Area,
            other => panic!("interpolation {other}"),
        };
        let got = resize_image(&source(c), (usize_of(&c["width"]), usize_of(&c["height"])), interp);
        if let Some(d) = difference(&got, &png(str_of(&c["file"]))) {
            failures.push(format!("{}: {d}", c["file"]));
        }
    }
    check_all(failures, "resizes", all.len());
}

#[test]
fn warps_match_opencv() {
    let m = manifest();
    let all = cases(&m, "warp");
    let mut failures = Vec::new();
    for c in all {
        let mut mat: Mat3 = [[0.0; 3]; 3];
        for (i, row) in mat.iter_mut().enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                *v = f64_bits(&c["m_bits"][i][j]);
            }
        }
        let (src, w, h) = (source(c), usize_of(&c["width"]), usize_of(&c["height"]));
        let got = match str_of(&c["kind"]) {
            "affine" => warp_affine(&src, &mat, w, h),
            "perspective" => warp_perspective(&src, &mat, w, h),
            other => panic!("warp kind {other}"),
        };
        if let Some(d) = difference(&got, &png(str_of(&c["file"]))) {
            failures.push(format!("{}: {d}", c["file"]));
        }
    }
    check_all(failures, "warps", all.len());
}

#[test]
fn letterboxes_match_opencv() {
    let m = manifest();
    let all = cases(&m, "letterbox");
    let mut failures = Vec::new();
    for c in all {
        let hw = (usize_of(&c["new_hw"][0]), usize_of(&c["new_hw"][1]));
        let lb = letterbox(&source(c), hw, c["scaleup"].as_bool().unwrap());
        let (ratio, pad) = (f64_bits(&c["ratio_bits"]), (c["pad"][0].as_f64().unwrap(), c["pad"][1].as_f64().unwrap()));
        if lb.ratio != (ratio, ratio) || lb.pad != pad {
            failures.push(format!("{}: ratio {:?} pad {:?}, upstream {ratio} {pad:?}", c["file"], lb.ratio, lb.pad));
        }
        if let Some(d) = difference(&lb.image, &png(str_of(&c["file"]))) {
            failures.push(format!("{}: {d}", c["file"]));
        }
    }
    check_all(failures, "letterboxes", all.len());
}

#[test]
fn fixtures_stay_small() {
    let dir = path("manifest.json").parent().unwrap().to_path_buf();
    let total: u64 = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
    assert!(total < 1 << 20, "{} holds {total} bytes; keep the OpenCV vectors under 1 MiB", dir.display());
}
