//! Hostile data sets: decompression bombs, CMYK JPEGs, symlink loops,
//! files linked twice, label files that are devices or huge, image "files" that are FIFOs.
//! The bomb and loop tests bound time and this process's peak memory.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use yolo_qat::data::image_io::{cmyk_to_rgb, decode_bytes, decode_rgb8, DEFAULT_MAX_PIXELS};
use yolo_qat::data::val_set::{ValSet, ValSetOptions};

const VAL: &str = "../shared/data/shapes-mini/images/val";

/// Peak resident memory of this process so far (VmHWM), in MiB.
fn peak_rss_mib() -> u64 {
    let s = fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kb: u64 = s.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.split_whitespace().next()?.parse().ok()).expect("VmHWM");
    kb / 1024
}

fn val_images() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(VAL).expect("shapes-mini val images").map(|e| e.unwrap().path()).collect();
    v.sort();
    assert_eq!(v.len(), 16, "the shapes-mini fixture changed");
    v
}

/// A data set folder `root/images/val` with the first `n` shapes-mini val images and labels.
fn small_set(root: &Path, n: usize) -> PathBuf {
    let (img, lab) = (root.join("images/val"), root.join("labels/val"));
    fs::create_dir_all(&img).unwrap();
    fs::create_dir_all(&lab).unwrap();
    for p in val_images().iter().take(n) {
        fs::copy(p, img.join(p.file_name().unwrap())).unwrap();
        let label = PathBuf::from(VAL.replace("/images/", "/labels/")).join(p.file_name().unwrap()).with_extension("txt");
        fs::copy(&label, lab.join(label.file_name().unwrap())).unwrap();
    }
    img
}

/// A real JPEG whose SOF header claims `w` x `h` (the pixels stay those of a small image).
fn jpeg_claiming(w: u16, h: u16) -> Vec<u8> {
    let mut b = fs::read(&val_images()[0]).unwrap();
    let sof = (0..b.len() - 9).find(|&i| b[i] == 0xFF && (0xC0..=0xC2).contains(&b[i + 1])).expect("a SOF marker");
    // FFCn, length (2), precision (1), height (2), width (2)
    b[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
    b[sof + 7..sof + 9].copy_from_slice(&w.to_be_bytes());
    b
}

fn crc32(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &byte in data {
        c ^= byte as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
        }
    }
    !c
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
    out.extend((data.len() as u32).to_be_bytes());
    let mut body = kind.to_vec();
    body.extend(data);
    out.extend(&body);
    out.extend(crc32(&body).to_be_bytes());
}

/// A PNG whose IHDR claims `w` x `h` RGB8, with a tiny (truncated) zlib stream.
fn png_claiming(w: u32, h: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    png_chunk(&mut out, b"IHDR", &ihdr);
    png_chunk(&mut out, b"IDAT", &[0x78, 0x9c, 0x63, 0x00, 0x00]);
    png_chunk(&mut out, b"IEND", &[]);
    out
}

#[test]
fn image_bombs_are_refused_from_the_header_in_bounded_time_and_memory() {
    let d = tempfile::tempdir().unwrap();
    let img = small_set(d.path(), 3);
    fs::write(img.join("bomb.jpg"), jpeg_claiming(65500, 65500)).unwrap();
    fs::write(img.join("bomb.png"), png_claiming(60000, 60000)).unwrap();
    let t = Instant::now();
    for name in ["bomb.jpg", "bomb.png"] {
        let e = decode_rgb8(&img.join(name)).unwrap_err().to_string();
        assert!(e.contains("pixels is over the limit of 178956970"), "{e}");
    }
    let set = ValSet::load(std::slice::from_ref(&img), 6, ValSetOptions { imgsz: 160, batch_size: 4, ..Default::default() }).unwrap();
    assert_eq!(set.len(), 3);
    assert_eq!(set.warnings.iter().filter(|w| w.contains("ignoring corrupt image/label") && w.contains("over the limit")).count(), 2, "{:?}", set.warnings);
    assert!(t.elapsed() < Duration::from_secs(20), "took {:?}", t.elapsed());
    // 65500² RGB would be 12.9 GB, 60000² 10.8 GB.
    assert!(peak_rss_mib() < 1024, "peak RSS {} MiB", peak_rss_mib());
}

#[test]
fn the_pixel_limit_is_inclusive_and_adjustable() {
    let jpg = fs::read(&val_images()[0]).unwrap();
    let img = decode_bytes(&jpg, DEFAULT_MAX_PIXELS).unwrap();
    let n = (img.width * img.height) as u64;
    assert!(decode_bytes(&jpg, n).is_ok());
    let e = decode_bytes(&jpg, n - 1).unwrap_err();
    assert!(e.contains(&format!("{}x{} = {n} pixels is over the limit of {}", img.width, img.height, n - 1)), "{e}");
    // PIL: MAX_IMAGE_PIXELS = int(1024 * 1024 * 1024 // 4 // 3), refused above twice that.
    assert_eq!(DEFAULT_MAX_PIXELS, 2 * 89_478_485);
}

/// A flat `w` x `h` CMYK JPEG (Adobe marker, as libjpeg writes CMYK) at quality 100.
fn cmyk_jpeg(px: [u8; 4], w: usize, h: usize) -> Vec<u8> {
    let mut c = mozjpeg::Compress::new(mozjpeg::ColorSpace::JCS_CMYK);
    c.set_size(w, h);
    c.set_quality(100.0);
    let mut s = c.start_compress(Vec::new()).unwrap();
    let data: Vec<u8> = std::iter::repeat_n(px, w * h).flatten().collect();
    s.write_scanlines(&data).unwrap();
    s.finish().unwrap()
}

#[test]
fn a_cmyk_jpeg_decodes_as_opencv_reads_it() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("cmyk.jpg");
    let px = [255u8, 0, 128, 200];
    fs::write(&p, cmyk_jpeg(px, 32, 24)).unwrap();
    let img = decode_rgb8(&p).unwrap_or_else(|e| panic!("a CMYK JPEG must decode: {e}"));
    assert_eq!(img.hw(), (24, 32));
    // OpenCV (imgcodecs utils.cpp): c' = k - ((255 - c) * k >> 8): 200 - 0 = 200,
    // 200 - (255 * 200 >> 8) = 1, 200 - (127 * 200 >> 8) = 101.
    assert_eq!(cmyk_to_rgb(px), [200, 1, 101]);
    for (i, got) in img.data.chunks_exact(3).enumerate() {
        for (g, want) in got.iter().zip([200u8, 1, 101]) {
            assert!(g.abs_diff(want) <= 2, "pixel {i}: {got:?} vs [200, 1, 101]");
        }
    }
}

#[test]
fn symlink_loops_and_double_links_count_each_image_once() {
    let d = tempfile::tempdir().unwrap();
    let img = small_set(d.path(), 4);
    std::os::unix::fs::symlink(".", img.join("loop")).unwrap();
    std::os::unix::fs::symlink(&img, img.join("abs_loop")).unwrap();
    fs::create_dir(img.join("sub")).unwrap();
    std::os::unix::fs::symlink("..", img.join("sub/up")).unwrap();
    let first = val_images()[0].file_name().unwrap().to_owned();
    std::os::unix::fs::symlink(&first, img.join("zz_same.jpg")).unwrap();
    fs::hard_link(img.join(&first), img.join("zz_hard.jpg")).unwrap();
    let t = Instant::now();
    let set = ValSet::load(std::slice::from_ref(&img), 6, ValSetOptions { imgsz: 160, batch_size: 4, ..Default::default() }).unwrap();
    assert_eq!(set.len(), 4, "{:?}", set.entries.iter().map(|e| &e.path).collect::<Vec<_>>());
    assert!(t.elapsed() < Duration::from_secs(20), "took {:?}", t.elapsed());
    assert!(peak_rss_mib() < 1024, "peak RSS {} MiB", peak_rss_mib());
    // the first name in order is kept, the plain file
    assert!(set.entries.iter().any(|e| e.path == img.join(&first)));
    // a list naming one file twice (./x and the absolute path) counts it once too
    let list = d.path().join("val.txt");
    fs::write(&list, format!("./images/val/{0}\n{1}\n", first.to_string_lossy(), img.join(&first).display())).unwrap();
    assert_eq!(ValSet::load(&[list], 6, ValSetOptions { imgsz: 160, batch_size: 4, ..Default::default() }).unwrap().len(), 1);
}

#[test]
fn labels_and_images_must_be_regular_files() {
    let d = tempfile::tempdir().unwrap();
    let img = small_set(d.path(), 3);
    let names: Vec<String> = val_images().iter().take(3).map(|p| p.file_stem().unwrap().to_string_lossy().into_owned()).collect();
    let lab = d.path().join("labels/val");
    // a label that is /dev/zero (read until memory runs out before) and one over the size cap
    fs::remove_file(lab.join(format!("{}.txt", names[0]))).unwrap();
    std::os::unix::fs::symlink("/dev/zero", lab.join(format!("{}.txt", names[0]))).unwrap();
    fs::OpenOptions::new().write(true).open(lab.join(format!("{}.txt", names[1]))).unwrap().set_len(17 << 20).unwrap();
    // an "image" that is a FIFO (opening it blocked forever before)
    assert!(std::process::Command::new("mkfifo").arg(img.join("fifo.jpg")).status().unwrap().success());
    let t = Instant::now();
    let set = ValSet::load(std::slice::from_ref(&img), 6, ValSetOptions { imgsz: 160, batch_size: 4, ..Default::default() }).unwrap();
    assert!(t.elapsed() < Duration::from_secs(20), "took {:?}", t.elapsed());
    assert_eq!(set.len(), 1, "{:?}", set.warnings);
    let w = set.warnings.join("\n");
    assert!(w.contains(&format!("{}.txt: not a regular file", names[0])), "{w}");
    assert!(w.contains(&format!("{}.txt: larger than the 16777216 bytes allowed", names[1])), "{w}");
    assert!(w.contains("fifo.jpg: ignoring corrupt image/label: not a regular file"), "{w}");
    assert!(peak_rss_mib() < 1024, "peak RSS {} MiB", peak_rss_mib());
}

#[test]
fn decoder_errors_are_one_line() {
    // Found by fuzzing (docs/fuzzing.md): zune-jpeg's error for this file ends in "\n".
    let found = fs::read("tests/data/fuzz-decode-image-multiline-error.jpg").expect("the fuzz regression input");
    let e = decode_bytes(&found, DEFAULT_MAX_PIXELS).expect_err("a corrupt JPEG");
    assert!(!e.contains('\n') && e.contains("Not enough bytes"), "{e:?}");
    // and every cut of a real JPEG's header region
    let jpg = fs::read(&val_images()[0]).unwrap();
    for n in 0..jpg.len().min(1500) {
        if let Err(e) = decode_bytes(&jpg[..n], DEFAULT_MAX_PIXELS) {
            assert!(!e.chars().any(char::is_control), "cut at {n}: {e:?}");
        }
    }
}
