//! The fused CUDA kernels against the ops they replace, values and gradients, on a GPU.
//! Ignored in CPU CI (no GPU there); `scripts/gpu_kernel_check.sh` runs them on a device,
//! where a missing GPU or missing kernels fail loudly.

use tch::{Device, Kind, Tensor};
use yolo_qat::cuda::kernels::{available, learned_fake_quant, silu_fake_quant};
use yolo_qat::quant::fake_quant::train_fake_quant;
use yolo_qat::quant::learned_amax::fake_quant_learned;

fn gpu() -> Device {
    assert!(tch::Cuda::is_available(), "no CUDA device: run this on a GPU machine");
    assert!(available(), "this binary was built without the fused kernels (no nvcc at build time)");
    Device::Cuda(0)
}

/// Max |a - b| over all elements, in f64.
fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double)).abs().max().double_value(&[])
}

fn check(kind: Kind, shape: &[i64], channels_last: bool, amax: f64) {
    let d = gpu();
    tch::manual_seed(7);
    // Pre-activations spread well past amax both ways, so clamping and the mask both act.
    let mut z = (Tensor::randn(shape, (Kind::Float, d)) * (2.0 * amax)).to_kind(kind);
    if channels_last {
        z = yolo_qat::model::graph::channels_last(&z);
    }
    let dy = Tensor::randn(shape, (Kind::Float, d)).to_kind(kind);
    let zr = z.detach().set_requires_grad(true);
    let yr = train_fake_quant(&zr.silu(), amax);
    // d(sum(y·dy))/dy is dy exactly.
    (&yr * &dy).sum(None).backward();
    let zf = z.detach().set_requires_grad(true);
    let yf = silu_fake_quant(&zf, amax).expect("fused op on CUDA");
    (&yf * &dy).sum(None).backward();
    let what = format!("{kind:?} {shape:?} channels_last={channels_last} amax={amax}");
    assert_eq!(yf.kind(), kind, "{what}");
    assert_eq!(yf.stride(), zf.stride(), "{what}: output keeps the input's layout");
    assert_eq!(max_diff(&yf, &yr), 0.0, "{what}: values");
    assert_eq!(max_diff(&zf.grad(), &zr.grad()), 0.0, "{what}: gradients");
}

#[test]
#[ignore]
fn silu_fake_quant_matches_silu_then_fake_quant() {
    for kind in [Kind::Half, Kind::Float] {
        for (shape, cl) in [(&[2i64, 64, 40, 40][..], false), (&[2, 64, 40, 40][..], true), (&[1, 3, 7, 5][..], false), (&[10, 256, 80, 80][..], true)] {
            for amax in [0.37, 4.0, 11.3] {
                check(kind, shape, cl, amax);
            }
        }
    }
}

/// The learned-range kernel against the composite: values and input gradients identical,
/// the range's gradient (a sum over the tensor, in another order) to 1e-5 relative.
fn check_learned(kind: Kind, shape: &[i64], channels_last: bool, amax: f32) {
    let d = gpu();
    tch::manual_seed(9);
    let mut x = (Tensor::randn(shape, (Kind::Float, d)) * (1.5 * amax as f64)).to_kind(kind);
    if channels_last {
        x = yolo_qat::model::graph::channels_last(&x);
    }
    let dy = Tensor::randn(shape, (Kind::Float, d)).to_kind(kind);
    let run = |fused: bool| {
        let xa = x.detach().set_requires_grad(true);
        let a = Tensor::from(amax).to_device(d).set_requires_grad(true);
        let y = if fused { learned_fake_quant(&xa, &a).expect("fused op on CUDA") } else { fake_quant_learned(&xa, &a) };
        (&y * &dy).sum(Some(Kind::Float)).backward();
        (y.detach(), xa.grad(), a.grad().double_value(&[]), y.stride(), xa.stride())
    };
    let (yr, gxr, gar, _, _) = run(false);
    let (yf, gxf, gaf, ys, xs) = run(true);
    let what = format!("{kind:?} {shape:?} channels_last={channels_last} amax={amax}");
    assert_eq!(yf.kind(), kind, "{what}");
    assert_eq!(ys, xs, "{what}: output keeps the input's layout");
    assert_eq!(max_diff(&yf, &yr), 0.0, "{what}: values");
    assert_eq!(max_diff(&gxf, &gxr), 0.0, "{what}: input gradients");
    assert!((gaf - gar).abs() <= 1e-5 * gar.abs().max(1.0), "{what}: amax gradient {gaf} vs {gar}");
}

#[test]
#[ignore]
fn learned_fake_quant_matches_the_composite() {
    for kind in [Kind::Half, Kind::Float] {
        for (shape, cl) in [(&[2i64, 64, 40, 40][..], false), (&[2, 64, 40, 40][..], true), (&[1, 3, 7, 5][..], false), (&[10, 256, 80, 80][..], true)] {
            for amax in [0.37f32, 4.0, 11.3] {
                check_learned(kind, shape, cl, amax);
            }
        }
    }
}

#[test]
#[ignore]
fn a_qat_step_is_the_same_fused_and_unfused() {
    use std::path::Path;
    use yolo_qat::cuda::kernels::set_enabled;
    use yolo_qat::quant::calibrate::{calibrate, prepare};
    use yolo_qat::quant::qat::{Qat, Supervision};
    use yolo_qat::quant::CalibMethod;
    let d = gpu();
    let losses: Vec<f64> = [true, false]
        .into_iter()
        .map(|fused| {
            set_enabled(fused);
            // The repository's copy of the shapes fixture (the device gets the repository, not ../shared).
            let mut m = yolo_qat::detector::load(Path::new("assets/demo/yolov9-t-shapes-converted.pt")).expect("assets/demo fixture");
            m.to(d, Kind::Float);
            tch::manual_seed(3);
            let x = Tensor::rand([4, 3, 320, 320], (Kind::Float, d));
            prepare(&mut m, &[], CalibMethod::Max).unwrap();
            calibrate(&mut m, std::iter::once(x.shallow_clone()), CalibMethod::Max).unwrap();
            let mut qat = Qat::new(&mut m, None, Supervision::recipe(1), true);
            (0..3).map(|_| qat.step(&mut m, &x, 1e-5).double_value(&[])).last().unwrap()
        })
        .collect();
    set_enabled(true);
    let rel = (losses[0] - losses[1]).abs() / losses[1].abs().max(1e-12);
    // cuDNN may pick other algorithms between the two models; the kernels themselves are exact.
    assert!(rel < 1e-3, "fused {} vs unfused {} after 3 steps", losses[0], losses[1]);
}

/// Where the fused op applies in a real model (CPU: the plan needs no GPU): convs whose
/// SiLU output only feeds convs through one shared quantizer. In yolov9-t every
/// RepNBottleneck's cv1 feeds only its cv2, so at least those fuse.
#[test]
fn the_plan_fuses_bottleneck_activations() {
    use yolo_qat::quant::calibrate::prepare;
    use yolo_qat::quant::qat::supervised_layers;
    use yolo_qat::quant::CalibMethod;
    let mut m = yolo_qat::detector::load(std::path::Path::new("../shared/fixtures/yolov9-t-shapes-converted.pt")).expect("fixture");
    prepare(&mut m, &[], CalibMethod::Max).unwrap();
    let g = &m.graph;
    let keep: Vec<_> = supervised_layers(g.layers.len(), 1).into_iter().filter(|&i| g.layers[i].outputs.len() == 1).map(|i| g.layers[i].outputs[0]).collect();
    let plan = g.fusable_activations(&keep, None);
    let fused: Vec<&str> = plan.iter().zip(&g.nodes).filter(|(q, _)| q.is_some()).map(|(_, n)| n.name.as_str()).collect();
    let bottleneck_cv1 = g.nodes.iter().filter(|n| n.name.contains(".m.") && n.name.ends_with(".cv1")).count();
    assert!(bottleneck_cv1 > 0);
    for n in g.nodes.iter().filter(|n| n.name.contains(".m.") && n.name.ends_with(".cv1")) {
        assert!(fused.contains(&n.name.as_str()), "{} not fused; fused: {fused:?}", n.name);
    }
    eprintln!("{} of {} convs fused: {fused:?}", fused.len(), g.convs().count());
}

#[test]
#[ignore]
fn avg_pool_2x2_matches_aten() {
    use yolo_qat::cuda::kernels::avg_pool_2x2;
    let d = gpu();
    let mut failures = Vec::new();
    for kind in [Kind::Half, Kind::Float] {
        let shapes = [[2i64, 64, 40, 40], [1, 3, 7, 5], [10, 128, 161, 160], [1, 1, 2, 2], [3, 24, 9, 11], [2, 13, 6, 5]];
        for (shape, cl) in shapes.iter().flat_map(|&s| [(s, false), (s, true)]) {
            tch::manual_seed(11);
            let mut x = (Tensor::randn(shape, (Kind::Float, d)) * 3.0).to_kind(kind);
            if cl {
                x = yolo_qat::model::graph::channels_last(&x);
            }
            let dy = Tensor::randn([shape[0], shape[1], shape[2] - 1, shape[3] - 1], (Kind::Float, d)).to_kind(kind);
            let xr = x.detach().set_requires_grad(true);
            let yr = xr.avg_pool2d([2, 2], [1, 1], [0, 0], false, true, None);
            (&yr * &dy).sum(None).backward();
            let xf = x.detach().set_requires_grad(true);
            let yf = avg_pool_2x2(&xf).expect("kernel on CUDA");
            (&yf * &dy).sum(None).backward();
            let what = format!("{kind:?} {shape:?} channels_last={cl}");
            assert_eq!(yf.size(), yr.size(), "{what}");
            assert_eq!(yf.stride(), yr.stride(), "{what}: layout");
            assert_eq!(xf.grad().stride(), xr.grad().stride(), "{what}: gradient layout");
            assert_eq!(max_diff(&yf, &yr), 0.0, "{what}: values");
            let (gf, gr) = (xf.grad(), xr.grad());
            let differ = gf.ne_tensor(&gr).sum(Kind::Int64).int64_value(&[]);
            let ulp = (gf.to_kind(Kind::Double) - gr.to_kind(Kind::Double)).abs().max().double_value(&[]);
            eprintln!("{what}: gradients differ at {differ} of {} elements, max |diff| {ulp:e}, max |grad| {:e}", gr.numel(), gr.abs().max().double_value(&[]));
            // fp32: exact. fp16: measured on an H200, 16 of 33 M gradients of the large case
            // land one half-precision step away from ATen's (its float sum rounds to the other
            // neighbour); allowed up to one step where it occurs, in at most 1e-6 of elements.
            let half_step = 2f64.powi(-10) * gr.abs().max().double_value(&[]).max(1e-30);
            let ok = match kind {
                Kind::Half => ulp <= half_step && (differ as f64) <= 1e-6 * gr.numel() as f64,
                _ => differ == 0,
            };
            if !ok {
                failures.push(what);
            }
        }
    }
    assert!(failures.is_empty(), "gradients differ: {failures:?}");
}

/// Whether every |a − b| is within one rounding step of the type at b's magnitude (2^-10
/// relative for fp16, 2^-23 for fp32): sums taken in another order.
fn within_one_step(a: &Tensor, b: &Tensor, kind: Kind) -> bool {
    let step = if kind == Kind::Half { 2f64.powi(-10) } else { 2f64.powi(-23) };
    let (a, b) = (a.to_kind(Kind::Double), b.to_kind(Kind::Double));
    let allowed = b.abs() * step + 1e-30;
    (a - &b).abs().le_tensor(&allowed).all().int64_value(&[]) == 1
}

/// Whether a sum taken in another order agrees: within one rounding step of the type at its
/// magnitude plus float accumulation error, 2^-20 of the summed magnitudes `abs_sum`.
fn same_sum(a: &Tensor, b: &Tensor, abs_sum: &Tensor, kind: Kind) -> bool {
    let step = if kind == Kind::Half { 2f64.powi(-10) } else { 2f64.powi(-23) };
    let (a, b) = (a.to_kind(Kind::Double), b.to_kind(Kind::Double));
    let allowed = b.abs() * step + abs_sum.to_kind(Kind::Double) * 2f64.powi(-20) + 1e-30;
    (a - &b).abs().le_tensor(&allowed).all().int64_value(&[]) == 1
}

/// A convolution's epilogue against ATen's chain (bias added, SiLU or none, fake-quant or
/// none): values and the gradient to z identical, the bias gradient (a sum in another order)
/// to rounding.
fn check_bias_act(kind: Kind, shape: &[i64], channels_last: bool, act: yolo_qat::cuda::kernels::Epilogue, amax: Option<f64>) {
    use yolo_qat::cuda::kernels::{bias_act, Epilogue};
    let d = gpu();
    tch::manual_seed(13);
    let spread = 2.0 * amax.unwrap_or(2.0);
    let mut z = (Tensor::randn(shape, (Kind::Float, d)) * spread).to_kind(kind);
    if channels_last {
        z = yolo_qat::model::graph::channels_last(&z);
    }
    let b = (Tensor::randn([shape[1]], (Kind::Float, d)) * spread).to_kind(kind);
    let dy = Tensor::randn(shape, (Kind::Float, d)).to_kind(kind);
    let run = |fused: bool| {
        let (zg, bg) = (z.detach().set_requires_grad(true), b.detach().set_requires_grad(true));
        let y = if fused {
            bias_act(&zg, &bg, act, amax).expect("kernel on CUDA")
        } else {
            let x = &zg + bg.reshape([1, -1, 1, 1]);
            let x = if act == Epilogue::SiLU { x.silu() } else { x };
            amax.map_or(x.shallow_clone(), |a| train_fake_quant(&x, a))
        };
        (&y * &dy).sum(None).backward();
        (y.detach(), zg.grad(), bg.grad())
    };
    let (yr, gzr, gbr) = run(false);
    let (yf, gzf, gbf) = run(true);
    let what = format!("{kind:?} {shape:?} channels_last={channels_last} {act:?} amax={amax:?}");
    assert_eq!(yf.kind(), kind, "{what}");
    assert_eq!(max_diff(&yf, &yr), 0.0, "{what}: values");
    assert_eq!(max_diff(&gzf, &gzr), 0.0, "{what}: input gradients");
    let abs_sum = gzr.to_kind(Kind::Double).abs().sum_dim_intlist([0i64, 2, 3].as_slice(), false, Kind::Double);
    assert!(same_sum(&gbf, &gbr, &abs_sum, kind), "{what}: bias gradients differ by {:e}", max_diff(&gbf, &gbr));
}

#[test]
#[ignore]
fn bias_act_matches_aten() {
    use yolo_qat::cuda::kernels::Epilogue;
    for kind in [Kind::Half, Kind::Float] {
        for (shape, cl) in [
            (&[2i64, 64, 40, 40][..], false),
            (&[2, 64, 40, 40][..], true),
            (&[1, 3, 7, 5][..], false),
            (&[3, 5, 7, 5][..], true),
            (&[10, 256, 80, 80][..], false),
            (&[10, 256, 80, 80][..], true),
            (&[4, 80, 20, 20][..], true),
            (&[2, 1024, 12, 10][..], true),
            (&[2, 300, 9, 9][..], true),
            (&[1, 2048, 4, 4][..], true),
        ] {
            for act in [Epilogue::SiLU, Epilogue::Identity] {
                for amax in [None, Some(0.37), Some(4.0), Some(11.3)] {
                    check_bias_act(kind, shape, cl, act, amax);
                }
            }
        }
    }
}

/// The distillation loss against the composite QAT ran before (difference, square, mean
/// over C·H·W in float, sum over images), under a loss scale: loss to 1e-5 relative, the
/// student's gradient within one rounding step.
#[test]
#[ignore]
fn distill_mse_matches_the_composite() {
    use yolo_qat::cuda::kernels::distill_mse;
    let d = gpu();
    for kind in [Kind::Half, Kind::Float] {
        for (shape, cl) in [(&[2i64, 64, 40, 40][..], false), (&[2, 64, 40, 40][..], true), (&[1, 3, 7, 5][..], false), (&[10, 256, 80, 80][..], false)] {
            tch::manual_seed(17);
            let mut s = Tensor::randn(shape, (Kind::Float, d)).to_kind(kind);
            if cl {
                s = yolo_qat::model::graph::channels_last(&s);
            }
            let t = (Tensor::randn(shape, (Kind::Float, d)) * 0.3 + s.to_kind(Kind::Float)).to_kind(kind);
            let run = |fused: bool| {
                let sg = s.detach().set_requires_grad(true);
                let loss = if fused {
                    distill_mse(&sg, &t).expect("kernel on CUDA")
                } else {
                    (&sg - &t).square().mean_dim([1i64, 2, 3].as_slice(), false, Kind::Float).sum(Kind::Float)
                };
                (&loss * 1024.0).backward();
                (loss.double_value(&[]), sg.grad())
            };
            let (lr, gr) = run(false);
            let (lf, gf) = run(true);
            let what = format!("{kind:?} {shape:?} channels_last={cl}");
            assert!((lf - lr).abs() <= 1e-5 * lr.abs(), "{what}: loss {lf} vs {lr}");
            let same = gf.eq_tensor(&gr).sum(Kind::Int64).int64_value(&[]);
            eprintln!("{what}: {same} of {} gradients identical", gr.numel());
            assert!(within_one_step(&gf, &gr, kind), "{what}: gradients differ by {:e}", max_diff(&gf, &gr));
        }
    }
}
