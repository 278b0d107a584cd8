//! Parity with upstream: every fixture's eval output, head maps, auxiliary
//! output, segmentation prototypes and (gelan-c-mini, gelan-t-dseg) per-layer outputs, on the CPU in fp32.

use std::collections::BTreeMap;
use std::path::Path;
use tch::Tensor;
use yolo_qat::detector::load;
use yolo_qat::model::forward::NoQuant;

const FIXTURES: &str = "../shared/fixtures";

fn refs(name: &str) -> BTreeMap<String, Tensor> {
    Tensor::read_safetensors(format!("{FIXTURES}/{name}.ref.safetensors")).unwrap().into_iter().collect()
}

/// max |ours − ref| ≤ 1e-4 · max |ref|.
fn assert_close(what: &str, ours: &Tensor, want: &Tensor) {
    assert_eq!(ours.size(), want.size(), "{what}: shape");
    let err = (ours - want).abs().max().double_value(&[]);
    let scale = want.abs().max().double_value(&[]);
    eprintln!("{what}: max error / max |ref| = {:.2e}", err / scale);
    assert!(err <= 1e-4 * scale, "{what}: max error {err:e} > 1e-4 · {scale:e}");
}

fn check_fixture(name: &str) {
    let model = load(&Path::new(FIXTURES).join(format!("{name}.pt"))).unwrap();
    let r = refs(name);
    let g = &model.graph;
    let mut keep = vec![g.output];
    keep.extend(&g.heads);
    keep.extend(g.output_aux);
    keep.extend(g.proto);
    let mut vals = g.run(&r["input"], &mut NoQuant, &keep);
    assert_close(&format!("{name} output"), &vals.take(g.output), &r["output"]);
    for (j, &h) in g.heads.iter().enumerate() {
        assert_close(&format!("{name} head.{j}"), &vals.take(h), &r[&format!("head.{j}")]);
    }
    match (g.output_aux, r.get("output_aux")) {
        (Some(a), Some(want)) => assert_close(&format!("{name} output_aux"), &vals.take(a), want),
        (None, None) => {}
        _ => panic!("{name}: dual head mismatch"),
    }
    match (g.proto, r.get("proto")) {
        (Some(p), Some(want)) => assert_close(&format!("{name} proto"), &vals.take(p), want),
        (None, None) => {}
        _ => panic!("{name}: segmentation head mismatch"),
    }
    if let Some(small) = r.get("small.input") {
        assert_close(&format!("{name} small.output"), &model.forward(small), &r["small.output"]);
        let mut keep: Vec<usize> = g.layers.iter().filter(|l| l.outputs.len() == 1).map(|l| l.outputs[0]).collect();
        keep.extend(g.proto);
        let mut vals = g.run(small, &mut NoQuant, &keep);
        if let (Some(p), Some(want)) = (g.proto, r.get("small.proto")) {
            assert_close(&format!("{name} small.proto"), &vals.take(p), want);
        }
        let mut checked = 0;
        for l in &g.layers[..g.layers.len() - 1] {
            if let Some(want) = r.get(&format!("small.layer.{}", l.index)) {
                assert_close(&format!("{name} small.layer.{}", l.index), &vals.take(l.outputs[0]), want);
                checked += 1;
            }
        }
        assert_eq!(checked, g.layers.len() - 1, "every non-detect layer has a reference");
    }
}

#[test]
fn gelan_c_mini_matches_upstream_per_layer() {
    check_fixture("gelan-c-mini");
}

#[test]
fn gelan_c_mini_relu_matches_upstream() {
    check_fixture("gelan-c-mini-relu");
}

#[test]
fn yolov9_t_dual_matches_upstream_both_heads() {
    check_fixture("yolov9-t-dual");
}

#[test]
fn dsegment_model_matches_upstream_per_layer() {
    let model = load(&Path::new(FIXTURES).join("gelan-t-dseg-shapes.pt")).unwrap();
    assert_eq!((model.graph.nc, model.graph.nm), (6, 32));
    check_fixture("gelan-t-dseg-shapes");
}

#[test]
fn trained_converted_model_matches_upstream() {
    check_fixture("yolov9-t-shapes-converted");
}
