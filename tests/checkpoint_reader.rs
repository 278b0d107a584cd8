//! The checkpoint reader against the upstream fixtures, and against damaged
//! or foreign files (each must give an error naming the file, never panic).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use yolo_qat::checkpoint::{load_pickle, read_upstream, read_upstream_bytes, DType, UpstreamModel, Value};

const FIXTURES: &str = "../shared/fixtures";

fn fixture(name: &str) -> PathBuf {
    Path::new(FIXTURES).join(name)
}

fn load(name: &str) -> UpstreamModel {
    read_upstream(&fixture(name)).unwrap_or_else(|e| panic!("{e}"))
}

/// The entries of a zip, in order.
fn unzip(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    (0..zip.len())
        .map(|i| {
            let mut f = zip.by_index(i).unwrap();
            let mut data = Vec::new();
            f.read_to_end(&mut data).unwrap();
            (f.name().to_string(), data)
        })
        .collect()
}

fn make_zip(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, data) in entries {
        zip.start_file(name.as_str(), options).unwrap();
        zip.write_all(data).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

/// Writes `bytes` to `name` in a fresh temp dir and reads it back.
fn read_written(name: &str, bytes: &[u8]) -> Result<UpstreamModel, String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    read_upstream(&path).map_err(|e| e.to_string())
}

fn expect_error(name: &str, bytes: &[u8], what: &str) {
    let err = read_written(name, bytes).expect_err("damaged checkpoint was accepted");
    assert!(err.contains(name), "{err:?} does not name the file");
    assert!(err.contains(what), "{err:?} does not say {what:?}");
    assert_eq!(err.lines().count(), 1, "{err:?} is not one line");
}

#[test]
fn every_fixture_loads() {
    for name in ["gelan-c-mini.pt", "gelan-c-mini-relu.pt", "yolov9-t-dual.pt", "yolov9-t-shapes-converted.pt"] {
        let m = load(name);
        assert_eq!(m.nc, 6, "{name}");
        assert_eq!(m.names.len(), 6, "{name}");
        assert_eq!(m.stride, vec![8.0, 16.0, 32.0], "{name}");
        assert!(!m.tensors.is_empty(), "{name}");
        assert!(m.tensors.keys().all(|k| !k.ends_with("num_batches_tracked")));
        for bn in m.bn_eps.keys() {
            assert_eq!(m.module_types[bn], "BatchNorm2d");
            assert!(m.tensors.contains_key(&format!("{bn}.running_var")), "{bn}");
        }
    }
}

#[test]
fn gelan_c_mini_contents() {
    let m = load("gelan-c-mini.pt");
    let want: Vec<String> = (0..6).map(|i| format!("class{i}")).collect();
    assert_eq!(m.names, want);
    let w = &m.tensors["model.0.conv.weight"];
    assert_eq!(w.dtype, DType::F16);
    assert_eq!(w.shape, vec![16, 3, 3, 3]);
    assert_eq!(w.data.len(), 16 * 27 * 2);
    assert!(w.to_f32_vec().iter().any(|&v| v != 0.0));
    // Upstream sets eps = 1e-3 on every BatchNorm (torch's default is 1e-5).
    assert_eq!(m.bn_eps["model.0.bn"], 1e-3);
    assert_eq!(m.module_types["model.3"], "ADown");
    assert_eq!(m.module_types["model.3.cv1.conv"], "Conv2d");
    assert_eq!(m.module_types["model.22"], "DDetect");
    let backbone = m.yaml["backbone"].as_sequence().expect("backbone list");
    assert_eq!(backbone.len(), 9);
    assert_eq!(m.yaml["nc"].as_i64(), Some(6));
    let stored_stride = &m.tensors.get("model.22.stride");
    assert!(stored_stride.is_none(), "DDetect.stride is an attribute, not a buffer");
}

#[test]
fn relu_config_keeps_its_activation_string() {
    let m = load("gelan-c-mini-relu.pt");
    assert_eq!(m.yaml["activation"].as_str(), Some("nn.ReLU()"));
    // Strings in the config stay strings, even ones that look like None.
    let head = m.yaml["head"].as_sequence().unwrap();
    let upsample = head.iter().find(|l| l[2].as_str() == Some("nn.Upsample")).unwrap();
    assert_eq!(upsample[3][0].as_str(), Some("None"));
}

#[test]
fn dual_head_checkpoint_has_its_auxiliary_layers() {
    let m = load("yolov9-t-dual.pt");
    // This fixture's yolov9-t config starts with a Conv (no Silence layer).
    assert_eq!(m.module_types["model.0"], "Conv");
    let last = (0..).take_while(|i| m.module_types.contains_key(&format!("model.{i}"))).last().unwrap();
    assert_eq!(m.module_types[&format!("model.{last}")], "DualDDetect");
}

#[test]
fn trained_checkpoint_names() {
    let m = load("yolov9-t-shapes-converted.pt");
    assert_eq!(m.names, ["circle", "square", "triangle", "star", "cross", "ring"]);
}

#[test]
fn load_pickle_shows_the_whole_checkpoint() {
    let top = load_pickle(&fixture("gelan-c-mini.pt")).unwrap();
    let model = top.get("model").and_then(Value::as_object).unwrap();
    assert_eq!(model.class, "models.yolo.DetectionModel");
    assert_eq!(top.get("ema"), Some(&Value::None));
    assert_eq!(top.get("epoch"), Some(&Value::Int(-1)));
}

#[test]
fn folder_name_is_not_assumed() {
    let bytes = std::fs::read(fixture("gelan-c-mini.pt")).unwrap();
    let renamed: Vec<_> = unzip(&bytes).into_iter().map(|(name, data)| (name.replacen("gelan-c-mini/", "archive/", 1), data)).collect();
    let m = read_written("renamed.pt", &make_zip(&renamed)).unwrap();
    assert_eq!(m.tensors, load("gelan-c-mini.pt").tensors);
}

#[test]
fn truncated_file() {
    let bytes = std::fs::read(fixture("gelan-c-mini.pt")).unwrap();
    expect_error("half.pt", &bytes[..bytes.len() / 2], "truncated zip archive");
}

#[test]
fn flipped_bytes_in_the_pickle() {
    let bytes = std::fs::read(fixture("gelan-c-mini.pt")).unwrap();
    let mut entries = unzip(&bytes);
    let pkl = entries.iter().position(|(n, _)| n.ends_with("data.pkl")).unwrap();
    // In place in the zip: the entry's checksum no longer matches.
    let header_and_name = 30 + entries[pkl].0.len();
    let mut flipped = bytes.clone();
    let mid = header_and_name + entries[pkl].1.len() / 2;
    flipped[mid..mid + 8].iter_mut().for_each(|b| *b ^= 0x5a);
    assert!(read_written("flipped.pt", &flipped).is_err());
    // Re-zipped with a valid checksum: the pickle itself must be refused.
    let data = &mut entries[pkl].1;
    let mid = data.len() / 2;
    data[mid..mid + 16].fill(0xff);
    expect_error("clobbered.pt", &make_zip(&entries), "pickle");
}

#[test]
fn random_flips_never_panic() {
    let bytes = std::fs::read(fixture("gelan-c-mini.pt")).unwrap();
    let mut entries = unzip(&bytes);
    let pkl = entries.iter().position(|(n, _)| n.ends_with("data.pkl")).unwrap();
    let original = entries[pkl].1.clone();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..40 {
        let data = &mut entries[pkl].1;
        data.copy_from_slice(&original);
        for _ in 0..4 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let at = (seed >> 8) as usize % data.len();
            data[at] ^= (seed as u8) | 1;
        }
        let _ = read_upstream_bytes("random.pt", &make_zip(&entries));
    }
}

#[test]
fn zip_without_a_yolo_model() {
    // {'a': 1}, pickle protocol 2.
    let pickle = b"\x80\x02}q\x00X\x01\x00\x00\x00aq\x01K\x01s.".to_vec();
    let entries = vec![("x/data.pkl".to_string(), pickle), ("x/byteorder".to_string(), b"little".to_vec())];
    expect_error("other.pt", &make_zip(&entries), "not a YOLO checkpoint");
}

#[test]
fn names_from_the_file_are_shown_on_one_line() {
    let entries = vec![("a\nb/data.pkl".to_string(), b"N.".to_vec()), ("c/data.pkl".to_string(), b"N.".to_vec())];
    expect_error("two.pt", &make_zip(&entries), "a\\nb/data.pkl");
}

#[test]
fn empty_file() {
    expect_error("empty.pt", b"", "empty file");
}

#[test]
fn text_file() {
    expect_error("notes.pt", b"this is not a checkpoint\n", "not a zip archive");
}

#[test]
fn missing_file_is_an_error() {
    let err = read_upstream(Path::new("no-such-dir/absent.pt")).unwrap_err();
    assert!(err.to_string().starts_with("no-such-dir/absent.pt: "), "{err}");
}

#[test]
fn missing_storage_is_named() {
    let bytes = std::fs::read(fixture("gelan-c-mini.pt")).unwrap();
    let entries: Vec<_> = unzip(&bytes).into_iter().filter(|(n, _)| n != "gelan-c-mini/data/17").collect();
    expect_error("nostorage.pt", &make_zip(&entries), "tensor storage 'data/17' is missing");
}

/// A BINUNICODE string.
fn s(text: &str) -> Vec<u8> {
    let mut out = vec![b'X'];
    out.extend_from_slice(&(text.len() as u32).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
    out
}

/// `{'t': tensor}` with the tensor a view (offset, size, stride) into a
/// 6-element FloatStorage '0'.
fn tensor_pickle(offset: u8, size: [u8; 2], stride: [u8; 2]) -> Vec<u8> {
    let mut p = b"\x80\x02}(".to_vec();
    p.extend(s("t"));
    p.extend_from_slice(b"ctorch._utils\n_rebuild_tensor_v2\n((");
    p.extend(s("storage"));
    p.extend_from_slice(b"ctorch\nFloatStorage\n");
    p.extend(s("0"));
    p.extend(s("cpu"));
    p.extend_from_slice(&[b'K', 6, b't', b'Q', b'K', offset]);
    p.extend_from_slice(&[b'K', size[0], b'K', size[1], 0x86, b'K', stride[0], b'K', stride[1], 0x86]);
    p.extend_from_slice(b"\x89ccollections\nOrderedDict\n)RtRu.");
    p
}

fn tensor_zip(pickle: Vec<u8>, order: &str, storage: Vec<u8>) -> Vec<u8> {
    make_zip(&[("t/data.pkl".to_string(), pickle), ("t/byteorder".to_string(), order.as_bytes().to_vec()), ("t/data/0".to_string(), storage)])
}

#[test]
fn strided_big_endian_view() {
    let values = [0.0f32, 1.0, 2.0, 3.0, 4.0, 5.0];
    let storage = values.iter().flat_map(|v| v.to_be_bytes()).collect();
    // Offset 1, shape (2, 2), stride (1, 2): [[1, 3], [2, 4]].
    let zip = tensor_zip(tensor_pickle(1, [2, 2], [1, 2]), "big", storage);
    let top = yolo_qat::checkpoint::load_pickle_bytes("view.pt", &zip).unwrap();
    let t = top.get("t").and_then(Value::as_tensor).unwrap();
    assert_eq!(t.shape, vec![2, 2]);
    assert_eq!(t.to_f32_vec(), vec![1.0, 3.0, 2.0, 4.0]);
}

#[test]
fn view_outside_its_storage() {
    let storage = vec![0u8; 24];
    let zip = tensor_zip(tensor_pickle(3, [2, 2], [2, 1]), "little", storage);
    let err = yolo_qat::checkpoint::load_pickle_bytes("view.pt", &zip).unwrap_err();
    assert!(err.to_string().starts_with("view.pt: bad tensor"), "{err}");
    let zip = tensor_zip(tensor_pickle(0, [2, 2], [2, 1]), "middle", vec![0u8; 24]);
    let err = yolo_qat::checkpoint::load_pickle_bytes("order.pt", &zip).unwrap_err();
    assert!(err.to_string().contains("byteorder"), "{err}");
}
