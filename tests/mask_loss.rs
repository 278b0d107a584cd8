//! The segmentation loss's mask term against a reference that follows upstream
//! `utils/segment/loss_tal.py` line by line (the per-image loop over the foreground anchors
//! selected by a boolean mask, `crop_mask`, `single_mask_loss`); the fixed-shape version
//! must give the same number, and its gradient must reach the coefficients and prototypes.
//! No upstream fixture of this loss exists here; the reference is written from its code.

use tch::{Kind, Tensor};
use yolo_qat::quant::assigner::Assignment;
use yolo_qat::quant::mask_loss::{gt_masks, mask_loss, MASK_GAIN};
use yolo_qat::quant::task_loss::{gt_boxes, TaskLoss};

const NM: i64 = 4;

/// Upstream's loop for one batch: for each image with foreground, the assigned label's mask
/// and box per foreground anchor, BCE with logits, crop, mean over pixels, / area, mean over
/// anchors; summed over images.
fn reference(coeffs: &Tensor, proto: &Tensor, a: &Assignment, gt: &Tensor, imgsz: (f64, f64)) -> f64 {
    let (b, nm, mh, mw) = proto.size4().unwrap();
    let mut total = 0.0;
    for i in 0..b {
        let fg: Vec<bool> = Vec::try_from(a.fg.get(i)).unwrap();
        let idx: Vec<i64> = fg.iter().enumerate().filter(|(_, &f)| f).map(|(k, _)| k as i64).collect();
        if idx.is_empty() {
            continue;
        }
        let mut per_anchor = Vec::new();
        for &k in &idx {
            let g = a.gt_index.int64_value(&[i, k]);
            let gt_mask = gt.get(i).get(g);
            let pred = coeffs.get(i).get(k).view([1, nm]).matmul(&proto.get(i).view([nm, -1])).view([mh, mw]);
            let loss = pred.binary_cross_entropy_with_logits::<Tensor>(&gt_mask, None, None, tch::Reduction::None);
            let bx: Vec<f32> = Vec::try_from(a.boxes.get(i).get(k)).unwrap();
            let xyxyn = [bx[0] as f64 / imgsz.1, bx[1] as f64 / imgsz.0, bx[2] as f64 / imgsz.1, bx[3] as f64 / imgsz.0];
            let area = (xyxyn[2] - xyxyn[0]) * (xyxyn[3] - xyxyn[1]);
            let (x1, y1, x2, y2) = (xyxyn[0] * mw as f64, xyxyn[1] * mh as f64, xyxyn[2] * mw as f64, xyxyn[3] * mh as f64);
            let l: Vec<f32> = Vec::try_from(loss.contiguous().view([-1])).unwrap();
            let mut sum = 0.0;
            for r in 0..mh {
                for c in 0..mw {
                    let (cf, rf) = (c as f64, r as f64);
                    if cf >= x1 && cf < x2 && rf >= y1 && rf < y2 {
                        sum += l[(r * mw + c) as usize] as f64;
                    }
                }
            }
            per_anchor.push(sum / (mh * mw) as f64 / area);
        }
        total += per_anchor.iter().sum::<f64>() / per_anchor.len() as f64;
    }
    total
}

/// A batch's inputs: head maps, coefficient maps, prototypes, labels and their masks.
type Case = (Vec<Tensor>, Vec<Tensor>, Tensor, Vec<(usize, usize, [f32; 4])>, Vec<u8>);

/// Two images at 64 × 64 (strides 8, 16, 32: 84 anchors), 16 × 16 prototypes; image 0 has
/// three labels with elliptic masks, image 1 none.
fn case() -> Case {
    tch::manual_seed(11);
    let nc = 3;
    let opts = (Kind::Float, tch::Device::Cpu);
    let heads: Vec<Tensor> = [8, 4, 2].iter().map(|&s| Tensor::randn([2, 64 + nc, s, s], opts) * 0.5).collect();
    let coeffs: Vec<Tensor> = [8, 4, 2].iter().map(|&s| Tensor::randn([2, NM, s, s], opts).set_requires_grad(true)).collect();
    let proto = Tensor::randn([2, NM, 16, 16], opts).set_requires_grad(true);
    let labels = vec![(0usize, 0usize, [0.3f32, 0.3, 0.4, 0.4]), (0, 1, [0.7, 0.6, 0.5, 0.6]), (0, 2, [0.5, 0.8, 0.9, 0.3])];
    let mut masks = Vec::new();
    for &(_, _, [cx, cy, w, h]) in &labels {
        for r in 0..16 {
            for c in 0..16 {
                let (x, y) = ((c as f32 + 0.5) / 16.0, (r as f32 + 0.5) / 16.0);
                // An ellipse inside the box.
                let inside = ((x - cx) / (w / 2.0)).powi(2) + ((y - cy) / (h / 2.0)).powi(2) <= 1.0;
                masks.push(u8::from(inside));
            }
        }
    }
    (heads, coeffs, proto, labels, masks)
}

#[test]
fn mask_term_matches_upstreams_per_image_loop() {
    let (heads, coeffs, proto, labels, masks) = case();
    let loss = TaskLoss::new(3, &[8.0, 16.0, 32.0]);
    for slots in [0usize, 8] {
        let mut gt = gt_boxes(&labels, 2, (64, 64), slots, tch::Device::Cpu);
        let m = gt.boxes.size()[1] as usize;
        gt.masks = Some(gt_masks(&labels, &masks, 16, 2, m, tch::Device::Cpu));
        let det = loss.compute(&heads, &gt);
        let fg = det.assignment.fg.sum(Kind::Int64).int64_value(&[]);
        assert!(fg >= 3, "the labels take anchors ({fg})");
        let ours = mask_loss(&coeffs, &proto, &det.assignment, gt.masks.as_ref().unwrap(), (64, 64), 10).double_value(&[]);
        let flat: Vec<Tensor> = coeffs.iter().map(|c| c.reshape([2, NM, -1])).collect();
        let per_anchor = Tensor::cat(&flat, 2).permute([0, 2, 1]);
        let want = reference(&per_anchor, &proto, &det.assignment, gt.masks.as_ref().unwrap(), (64.0, 64.0));
        println!("slots {slots}: {fg} foreground anchors, mask loss {ours:.6} vs reference {want:.6}");
        assert!((ours - want).abs() <= 1e-5 * want.abs().max(1.0), "{ours} vs {want}");
        // The full segmentation loss adds it with gain 2.5 / B, times B.
        let seg = loss.compute_segment(&heads, &coeffs, &proto, &gt);
        assert_eq!(seg.items.size(), [4]);
        let items: Vec<f64> = Vec::try_from(seg.items.to_kind(Kind::Double)).unwrap();
        assert!((items[3] - ours * MASK_GAIN / 2.0).abs() < 1e-6 * items[3].abs().max(1.0));
        assert!((seg.total.double_value(&[]) - (det.total.double_value(&[]) + ours * MASK_GAIN)).abs() < 1e-4 * seg.total.double_value(&[]));
    }
}

#[test]
fn mask_gradient_reaches_coefficients_and_prototypes_of_foreground_only() {
    let (heads, coeffs, proto, labels, masks) = case();
    let loss = TaskLoss::new(3, &[8.0, 16.0, 32.0]);
    let mut gt = gt_boxes(&labels, 2, (64, 64), 0, tch::Device::Cpu);
    let m = gt.boxes.size()[1] as usize;
    gt.masks = Some(gt_masks(&labels, &masks, 16, 2, m, tch::Device::Cpu));
    let det = loss.compute(&heads, &gt);
    mask_loss(&coeffs, &proto, &det.assignment, gt.masks.as_ref().unwrap(), (64, 64), 10).backward();
    let g0 = proto.grad().get(0).abs().sum(Kind::Float).double_value(&[]);
    let g1 = proto.grad().get(1).abs().sum(Kind::Float).double_value(&[]);
    assert!(g0 > 0.0, "image 0 has foreground: its prototypes learn");
    assert_eq!(g1, 0.0, "image 1 has no labels: no mask gradient");
    // Coefficients: nonzero exactly at image 0's foreground anchors.
    let flat: Vec<Tensor> = coeffs.iter().map(|c| c.grad().reshape([2, NM, -1])).collect();
    let g = Tensor::cat(&flat, 2).abs().sum_dim_intlist([1i64].as_slice(), false, Kind::Float).gt(0.0);
    assert!(g.eq_tensor(&det.assignment.fg).all().int64_value(&[]) == 1, "gradient only at foreground anchors");
}

#[test]
fn gt_masks_follow_the_label_slots() {
    // Labels of image 1 come first in the list; slots fill per image in list order.
    let labels = vec![(1usize, 0usize, [0.5f32; 4]), (0, 1, [0.5; 4]), (1, 2, [0.5; 4])];
    let masks: Vec<u8> = (0..3).flat_map(|k| vec![k as u8 + 1; 4]).collect();
    let t = gt_masks(&labels, &masks, 2, 2, 3, tch::Device::Cpu);
    assert_eq!(t.size(), [2, 3, 2, 2]);
    let v = |b: i64, s: i64| t.get(b).get(s).get(0).get(0).double_value(&[]);
    assert_eq!((v(0, 0), v(1, 0), v(1, 1), v(0, 1)), (2.0, 1.0, 3.0, 0.0));
}
