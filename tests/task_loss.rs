//! The YOLOv9 training loss against upstream (`yolov9-t-shapes-loss.safetensors`:
//! upstream `ComputeLoss` on the trained fixture's head maps for three label sets),
//! and the assigner's edge cases, derived from its definition.

use std::collections::BTreeMap;
use std::path::Path;
use tch::{Kind, Tensor};
use yolo_qat::detector::load;
use yolo_qat::model::forward::NoQuant;
use yolo_qat::quant::task_loss::{gt_boxes, TaskLoss};

const FIXTURES: &str = "../shared/fixtures";

fn fixture() -> BTreeMap<String, Tensor> {
    let path = Path::new(FIXTURES).join("yolov9-t-shapes-loss.safetensors");
    Tensor::read_safetensors(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).into_iter().collect()
}

/// `C.targets` rows (image, class, x, y, w, h) as the loader's labels.
fn labels(targets: &Tensor) -> Vec<(usize, usize, [f32; 4])> {
    let n = targets.size()[0];
    (0..n)
        .map(|i| {
            let r: Vec<f32> = Vec::try_from(targets.get(i)).unwrap();
            (r[0] as usize, r[1] as usize, [r[2], r[3], r[4], r[5]])
        })
        .collect()
}

fn heads(f: &BTreeMap<String, Tensor>) -> Vec<Tensor> {
    (0..3).map(|j| f[&format!("head.{j}")].copy().set_requires_grad(true)).collect()
}

fn rel_err(ours: &Tensor, want: &Tensor) -> f64 {
    let err = (ours - want).abs().max().double_value(&[]);
    err / want.abs().max().double_value(&[]).max(1e-12)
}

fn loss_fn() -> TaskLoss {
    TaskLoss::new(6, &[8.0, 16.0, 32.0])
}

fn check_case(case: &str) {
    let f = fixture();
    let h = heads(&f);
    let gt = gt_boxes(&labels(&f[&format!("{case}.targets")]), 4, (192, 192), 0, tch::Device::Cpu);
    let out = loss_fn().compute(&h, &gt);
    let want = f[&format!("{case}.loss")].double_value(&[]);
    let got = out.total.double_value(&[]);
    assert!((got - want).abs() <= 1e-4 * want.abs(), "{case}: loss {got} vs upstream {want}");
    let e = rel_err(&out.items, &f[&format!("{case}.loss_items")]);
    assert!(
        e <= 1e-4,
        "{case}: loss items {:?} vs {:?}",
        Vec::<f32>::try_from(&out.items).unwrap(),
        Vec::<f32>::try_from(&f[&format!("{case}.loss_items")]).unwrap()
    );
    let fg = out.assignment.fg.to_kind(Kind::Uint8);
    assert!(fg.equal(&f[&format!("{case}.fg_mask")]), "{case}: the picked anchors differ from upstream's");
    let e = rel_err(&out.assignment.scores, &f[&format!("{case}.target_scores")]);
    assert!(e <= 1e-4, "{case}: target scores rel err {e:e}");
    out.total.backward();
    for (j, hj) in h.iter().enumerate() {
        let want = &f[&format!("{case}.grad.head.{j}")];
        let e = rel_err(&hj.grad(), want);
        assert!(e <= 1e-3, "{case}: d loss / d head.{j}: rel err {e:e}");
    }
}

#[test]
fn loss_and_gradients_match_upstream_with_all_labels() {
    check_case("a");
}

#[test]
fn loss_and_gradients_match_upstream_with_an_image_without_labels() {
    check_case("b");
}

#[test]
fn loss_and_gradients_match_upstream_without_any_label() {
    check_case("e");
}

#[test]
fn the_model_computes_the_fixture_head_maps() {
    // The loss fixture's head maps are the trained model's own, so the QAT loop's
    // loss on this input is upstream's loss.
    let f = fixture();
    let model = load(&Path::new(FIXTURES).join("yolov9-t-shapes-converted.pt")).unwrap();
    let g = &model.graph;
    let mut vals = g.run(&f["input"], &mut NoQuant, &g.heads);
    for (j, &v) in g.heads.iter().enumerate() {
        let e = rel_err(&vals.take(v), &f[&format!("head.{j}")]);
        assert!(e <= 1e-4, "head.{j}: rel err {e:e}");
    }
}

#[test]
fn padding_labels_change_nothing() {
    let f = fixture();
    let l = labels(&f["a.targets"]);
    let plain = loss_fn().compute(&heads(&f), &gt_boxes(&l, 4, (192, 192), 0, tch::Device::Cpu));
    let padded = loss_fn().compute(&heads(&f), &gt_boxes(&l, 4, (192, 192), 32, tch::Device::Cpu));
    assert!(plain.assignment.fg.equal(&padded.assignment.fg));
    assert!((plain.total.double_value(&[]) - padded.total.double_value(&[])).abs() < 1e-5);
}

/// A head whose box distributions are flat (every side 7.5 cells) and whose class
/// logits are all `logit`: every anchor predicts the same box around itself.
fn flat_heads(logit: f64) -> Vec<Tensor> {
    [(24, 24), (12, 12), (6, 6)]
        .iter()
        .map(|&(h, w)| {
            let dist = Tensor::zeros([1, 64, h, w], (Kind::Float, tch::Device::Cpu));
            let cls = Tensor::full([1, 6, h, w], logit, (Kind::Float, tch::Device::Cpu));
            Tensor::cat(&[dist, cls], 1).set_requires_grad(true)
        })
        .collect()
}

/// Classification loss of every anchor against 0, as the loss computes it without labels.
fn background_only(logit: f64) -> f64 {
    let anchors = (24 * 24 + 12 * 12 + 6 * 6) as f64 * 6.0;
    let bce = (1.0 + logit.exp()).ln(); // −log(1 − sigmoid(logit))
    anchors * bce * 0.5
}

#[test]
fn no_labels_gives_the_background_loss_and_no_foreground() {
    let out = loss_fn().compute(&flat_heads(-2.0), &gt_boxes(&[], 1, (192, 192), 0, tch::Device::Cpu));
    assert_eq!(out.assignment.fg.sum(Kind::Int64).int64_value(&[]), 0);
    let want = background_only(-2.0);
    assert!((out.total.double_value(&[]) - want).abs() < 1e-3 * want, "{} vs {want}", out.total.double_value(&[]));
}

#[test]
fn a_box_covering_no_anchor_centre_picks_nothing() {
    // Stride-8 anchor centres sit at 4 + 8k px; stride 16 at 8 + 16k; stride 32 at 16 + 32k.
    // A 2 px box at (5..7, 5..7) contains none of them.
    let s = 192.0f32;
    let l = [(0usize, 3usize, [6.0 / s, 6.0 / s, 2.0 / s, 2.0 / s])];
    let out = loss_fn().compute(&flat_heads(-2.0), &gt_boxes(&l, 1, (192, 192), 0, tch::Device::Cpu));
    assert_eq!(out.assignment.fg.sum(Kind::Int64).int64_value(&[]), 0);
    let want = background_only(-2.0);
    assert!((out.total.double_value(&[]) - want).abs() < 1e-3 * want);
}

#[test]
fn one_label_takes_its_topk_anchors_inside_the_box() {
    // A 64 × 48 px box: 8 × 6 = 48 stride-8 centres, 4 × 3 stride-16 ones (centres at
    // 8 + 16k inside 64..128 × 64..112) and 2 × 1 or so at stride 32 — more than topk.
    let s = 192.0f32;
    let (x1, y1, x2, y2) = (64.0f32, 64.0f32, 128.0f32, 112.0f32);
    let l = [(0usize, 2usize, [(x1 + x2) / 2.0 / s, (y1 + y2) / 2.0 / s, (x2 - x1) / s, (y2 - y1) / s])];
    let h = flat_heads(0.0);
    let out = loss_fn().compute(&h, &gt_boxes(&l, 1, (192, 192), 0, tch::Device::Cpu));
    let fg = out.assignment.fg.get(0);
    assert_eq!(fg.sum(Kind::Int64).int64_value(&[]), 10, "topk = 10 anchors");
    // Every picked anchor's centre lies inside the box.
    let (points, strides) = yolo_qat::model::forward::anchors(&[(24, 24), (12, 12), (6, 6)], &[8.0, 16.0, 32.0], Kind::Float, tch::Device::Cpu);
    let px = (points.get(0) * strides.get(0)).masked_select(&fg);
    let py = (points.get(1) * strides.get(0)).masked_select(&fg);
    for (x, y) in Vec::<f32>::try_from(px).unwrap().into_iter().zip(Vec::<f32>::try_from(py).unwrap()) {
        assert!(x > x1 && x < x2 && y > y1 && y < y2, "anchor ({x}, {y}) is outside the box");
    }
    // Only class 2 gets targets, and the best anchor's target is the best CIoU (metric normalization).
    let scores = out.assignment.scores.get(0);
    let per_class = scores.sum_dim_intlist([0].as_slice(), false, Kind::Float);
    let pc: Vec<f32> = Vec::try_from(per_class).unwrap();
    assert!(pc.iter().enumerate().all(|(c, &v)| (c == 2) == (v > 0.0)), "{pc:?}");
    let pred_boxes_px = {
        // Flat distributions: every side is the mean bin 7.5 cells.
        let p = &points * &strides;
        let half = &strides * 7.5;
        Tensor::cat(&[&p - &half, &p + &half], 0).transpose(0, 1)
    };
    let gt = Tensor::from_slice(&[x1, y1, x2, y2]).view([1, 4]);
    let ciou = yolo_qat::quant::box_iou::ciou(&gt, &pred_boxes_px).squeeze_dim(-1).clamp_min(0.0);
    let best = ciou.masked_select(&fg).max().double_value(&[]);
    let top = scores.narrow(1, 2, 1).max().double_value(&[]);
    assert!((top - best).abs() < 1e-5, "best target {top} vs best CIoU {best}");
}
