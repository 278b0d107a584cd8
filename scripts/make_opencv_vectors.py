#!/usr/bin/env python3
"""Writes the OpenCV reference vectors under tests/data/opencv/ that
tests/opencv_vectors.rs compares the Rust image code with, byte for byte.

Run once on a machine that has OpenCV (it needs only opencv-python-headless and numpy):

    python3 -m venv /tmp/cvenv
    /tmp/cvenv/bin/pip install opencv-python-headless==4.14.0.94 numpy
    /tmp/cvenv/bin/python scripts/make_opencv_vectors.py [--shapes PATH_TO_A_SHAPES_JPG]

Everything is deterministic: the two source images are a fixed crop of a shapes-mini
training image and seeded noise, saved as PNG; every matrix, size and gain is written
into manifest.json (floats also as the hex of their IEEE-754 bits, so the Rust side uses
the very same numbers). Images are PNG, RGB. The reference operations are written here
in the form upstream YOLOv9 calls them (utils/augmentations.py, utils/dataloaders.py),
on BGR arrays as upstream holds them; the PNGs are RGB.

Which OpenCV matters. Results differ between OpenCV builds in two places (checked with
4.10.0, 4.14.0 and 5.0.0 on x86-64 with AVX-512):
  * cvtColor HSV->BGR (8-bit) converts each row in SIMD blocks of 4 float vectors and
    the rest of the row (the "tail") with scalar code that rounds where the SIMD code
    truncates. The block is 32 pixels when the AVX2 kernel runs (4.10, 5.0) and 64 when
    the AVX-512 one does (4.14 on an AVX-512 CPU); 16 with SSE only. manifest.json records
    the block this run measured.
  * warpAffine / warpPerspective were rewritten in 5.0 (new kernels); 4.x (4.10 = 4.14)
    uses the fixed-point remap (1/32 pixel, 15-bit weights) that the Rust code follows.
The SIMD and the scalar HSV->RGB results themselves, RGB->HSV, resize (INTER_LINEAR,
INTER_AREA) and letterbox agreed in all three. The script refuses another version than
PINNED unless --any-version is given.
"""

import argparse
import json
import platform
import struct
from pathlib import Path

import cv2
import numpy as np

PINNED = "4.14.0"
PAD = (114, 114, 114)
FNV_OFFSET = np.uint64(0xCBF29CE484222325)
FNV_PRIME = np.uint64(0x100000001B3)


def f64_hex(x):
    return struct.pack("<d", float(x)).hex()


def fnv1a64_rows(rows):
    """FNV-1a 64 of every row of a 2-D uint8 array (one digest per row), vectorised."""
    h = np.full(rows.shape[0], FNV_OFFSET, dtype=np.uint64)
    for k in range(rows.shape[1]):
        h ^= rows[:, k].astype(np.uint64)
        h *= FNV_PRIME
    return h


def plane_digests(out, planes):
    """`out`: N x 3 uint8 pixels in input order, split into `planes` equal planes of rows of
    256 pixels. Row digest: FNV-1a 64 of the row's 768 bytes. Plane digest: FNV-1a 64 of
    its row digests as little-endian u64 bytes. Returned as hex strings."""
    rows = out.reshape(-1, 256 * 3)
    row_h = fnv1a64_rows(rows)
    per_plane = row_h.reshape(planes, -1)
    as_bytes = per_plane.astype("<u8").view(np.uint8).reshape(planes, -1)
    return ["%016x" % v for v in fnv1a64_rows(as_bytes)]


def rgb_png(path, rgb):
    ok = cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    assert ok, path


def matrix_entry(m):
    m = np.asarray(m, dtype=np.float64)
    return {"m": m.tolist(), "m_bits": [[f64_hex(v) for v in row] for row in m]}


# ---------------------------------------------------------------- HSV


def hsv_vectors(out_dir, rng):
    n24 = 1 << 24
    idx = np.arange(n24, dtype=np.uint32)
    rgb = np.stack([(idx >> 16) & 255, (idx >> 8) & 255, idx & 255], axis=-1).astype(np.uint8)
    hsv_all = cv2.cvtColor(rgb.reshape(4096, 4096, 3), cv2.COLOR_RGB2HSV).reshape(-1, 3)

    hidx = np.arange(180 * 256 * 256, dtype=np.uint32)
    hsv_in = np.stack([hidx >> 16, (hidx >> 8) & 255, hidx & 255], axis=-1).astype(np.uint8)
    # rows of 256 pixels: a multiple of every SIMD block, so every pixel takes the vector path
    vec = cv2.cvtColor(hsv_in.reshape(-1, 256, 3), cv2.COLOR_HSV2RGB).reshape(-1, 3)
    # rows of 1 pixel: every pixel is a row's tail, so every pixel takes the scalar path
    scal = cv2.cvtColor(hsv_in.reshape(-1, 1, 3), cv2.COLOR_HSV2RGB).reshape(-1, 3)

    # the SIMD block of HSV->RGB: the longest row prefix that never equals the scalar result
    probe = hsv_in[rng.choice(len(hsv_in), 512 * 8, replace=False)]
    probe_scal = cv2.cvtColor(probe.reshape(-1, 1, 3), cv2.COLOR_HSV2RGB).reshape(-1, 512, 3)
    probe_vec = cv2.cvtColor(probe.reshape(-1, 512, 3), cv2.COLOR_HSV2RGB)
    block = 512
    for b in (16, 32, 64, 128, 256):
        w = b + b // 2
        rows = cv2.cvtColor(probe[: 8 * w].reshape(8, w, 3), cv2.COLOR_HSV2RGB)
        same_tail = (rows[:, b:] == probe_scal.reshape(-1, 3)[: 8 * w].reshape(8, w, 3)[:, b:]).all()
        vec_head = (rows[:, :b] == probe_vec.reshape(-1, 3)[: 8 * w].reshape(8, w, 3)[:, :b]).all()
        if same_tail and vec_head:
            block = b
            break
    assert block < 512, "could not find the HSV->RGB SIMD block"

    k = 4096
    pick = rng.choice(n24, k, replace=False)
    rec = np.concatenate([rgb[pick], hsv_all[pick]], axis=1)
    (out_dir / "rgb2hsv_samples.bin").write_bytes(rec.astype(np.uint8).tobytes())
    pick = rng.choice(len(hsv_in), k, replace=False)
    rec = np.concatenate([hsv_in[pick], vec[pick], scal[pick]], axis=1)
    (out_dir / "hsv2rgb_samples.bin").write_bytes(rec.astype(np.uint8).tobytes())

    # a few row widths around the block: vector head, scalar tail, in one call
    widths = [block // 2 + 3, block + 13, 2 * block + 1, 3 * block - 5]
    tails = []
    for w in widths:
        sel = hsv_in[rng.choice(len(hsv_in), w * 3, replace=False)].reshape(3, w, 3)
        outp = cv2.cvtColor(sel, cv2.COLOR_HSV2RGB)
        name = f"hsv2rgb_rows_{w}.bin"
        (out_dir / name).write_bytes(sel.tobytes() + outp.tobytes())
        tails.append({"file": name, "width": w, "height": 3})

    return {
        "rgb2hsv_all": {
            "how": "cv2.cvtColor(COLOR_RGB2HSV) of a 4096x4096 image whose pixel i is (r, g, b) = (i >> 16, (i >> 8) & 255, i & 255)",
            "digest": "per r plane (65536 pixels, rows of 256 pixels): FNV-1a 64 of the plane's row digests (little-endian u64), a row digest being FNV-1a 64 of the row's 768 HSV bytes",
            "planes": plane_digests(hsv_all, 256),
        },
        "hsv2rgb_vector_all": {
            "how": "cv2.cvtColor(COLOR_HSV2RGB) of rows of 256 pixels whose pixel i is (h, s, v) = (i >> 16, (i >> 8) & 255, i & 255), h < 180: every pixel on the SIMD path",
            "digest": "per h plane, as rgb2hsv_all",
            "planes": plane_digests(vec, 180),
        },
        "hsv2rgb_scalar_all": {
            "how": "the same pixels as rows of one pixel: every pixel on the scalar (row tail) path",
            "digest": "per h plane, as rgb2hsv_all",
            "planes": plane_digests(scal, 180),
        },
        "hsv2rgb_simd_block": block,
        "hsv2rgb_simd_block_how": "smallest b in 16, 32, 64, 128, 256 such that rows of 1.5 b pixels match the all-SIMD result on the first b pixels and the scalar result after",
        "rgb2hsv_samples": {"file": "rgb2hsv_samples.bin", "count": k, "record": "6 bytes: r g b, then OpenCV's h s v"},
        "hsv2rgb_samples": {"file": "hsv2rgb_samples.bin", "count": k, "record": "9 bytes: h s v, then r g b of the SIMD path, then r g b of the scalar path"},
        "hsv2rgb_rows": tails,
        "hsv2rgb_rows_how": "file = height x width HSV input bytes, then the RGB output of one cv2.cvtColor(COLOR_HSV2RGB) call on that image",
    }


# ---------------------------------------------------------------- resize, warps, letterbox


def letterbox_ref(bgr, new_hw, scaleup):
    """upstream utils/augmentations.py letterbox(im, new_shape, auto=False, scaleFill=False, scaleup)"""
    h0, w0 = bgr.shape[:2]
    r = min(new_hw[0] / h0, new_hw[1] / w0)
    if not scaleup:
        r = min(r, 1.0)
    unpad = (int(round(w0 * r)), int(round(h0 * r)))
    dw = (new_hw[1] - unpad[0]) / 2
    dh = (new_hw[0] - unpad[1]) / 2
    if (w0, h0) != unpad:
        bgr = cv2.resize(bgr, unpad, interpolation=cv2.INTER_LINEAR)
    top, bottom = int(round(dh - 0.1)), int(round(dh + 0.1))
    left, right = int(round(dw - 0.1)), int(round(dw + 0.1))
    out = cv2.copyMakeBorder(bgr, top, bottom, left, right, cv2.BORDER_CONSTANT, value=PAD)
    return out, r, (dw, dh)


def augment_hsv_ref(bgr, gains):
    """upstream augment_hsv with the random draw replaced by fixed gains r = [rh, rs, rv]"""
    h, s, v = cv2.split(cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV))
    x = np.arange(0, 256, dtype=np.float64)
    lut_h = ((x * gains[0]) % 180).astype(np.uint8)
    lut_s = np.clip(x * gains[1], 0, 255).astype(np.uint8)
    lut_v = np.clip(x * gains[2], 0, 255).astype(np.uint8)
    merged = cv2.merge((cv2.LUT(h, lut_h), cv2.LUT(s, lut_s), cv2.LUT(v, lut_v)))
    out = bgr.copy()
    cv2.cvtColor(merged, cv2.COLOR_HSV2BGR, dst=out)
    return out


def about_centre(w, h, deg, scale, tx, ty, shear=(0.0, 0.0), persp=(0.0, 0.0)):
    """M = T @ S @ R @ P @ C as upstream random_perspective composes it, with fixed draws"""
    c = np.eye(3)
    c[0, 2], c[1, 2] = -w / 2, -h / 2
    p = np.eye(3)
    p[2, 0], p[2, 1] = persp
    r = np.eye(3)
    r[:2] = cv2.getRotationMatrix2D(angle=deg, center=(0, 0), scale=scale)
    s = np.eye(3)
    s[0, 1] = np.tan(np.deg2rad(shear[0]))
    s[1, 0] = np.tan(np.deg2rad(shear[1]))
    t = np.eye(3)
    t[0, 2], t[1, 2] = tx, ty
    return t @ s @ r @ p @ c


def image_vectors(out_dir, sources):
    resize_sizes = {
        # (w, h): exact 1/2 (OpenCV's fast area path, also taken by INTER_LINEAR), exact 1/4,
        # fractional shrinks, exact 2x, fractional enlargements, mixed (one axis up, one down)
        "shapes": [(32, 24), (16, 12), (31, 23), (17, 13), (50, 40), (128, 96), (97, 71), (40, 70)],
        # odd source: exact 1/3 across only, fractional shrinks, slight and 2x enlargements, mixed
        "noise": [(15, 31), (22, 15), (13, 9), (30, 20), (46, 32), (90, 62), (67, 47), (23, 50)],
    }
    resizes = []
    for name, rgb in sources.items():
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        for w, h in resize_sizes[name]:
            for interp, tag in ((cv2.INTER_LINEAR, "linear"), (cv2.INTER_AREA, "area")):
                out = cv2.cvtColor(cv2.resize(bgr, (w, h), interpolation=interp), cv2.COLOR_BGR2RGB)
                f = f"resize_{name}_{tag}_{w}x{h}.png"
                rgb_png(out_dir / f, out)
                resizes.append({"source": name, "interpolation": tag, "width": w, "height": h, "file": f})

    warps = []

    def add_warp(name, kind, m, size, src):
        bgr = cv2.cvtColor(sources[src], cv2.COLOR_RGB2BGR)
        m = np.asarray(m, dtype=np.float64)
        if kind == "affine":
            assert m[2, 0] == 0 and m[2, 1] == 0 and m[2, 2] == 1
            out = cv2.warpAffine(bgr, m[:2], dsize=size, borderValue=PAD)
        else:
            out = cv2.warpPerspective(bgr, m, dsize=size, borderValue=PAD)
        f = f"warp_{kind}_{src}_{name}.png"
        rgb_png(out_dir / f, cv2.cvtColor(out, cv2.COLOR_BGR2RGB))
        warps.append({"name": name, "kind": kind, "source": src, "width": size[0], "height": size[1], "file": f, **matrix_entry(m)})

    sw, sh = 64, 48
    affine = {
        # partly outside the output: rotated and enlarged about the centre, shifted
        "rot_scale": (about_centre(sw, sh, 12.0, 1.1, 0.55 * sw, 0.45 * sh), (sw, sh)),
        "shear_shift": (about_centre(sw, sh, 0.0, 1.0, 0.5 * sw - 10.3, 0.5 * sh + 7.6, shear=(5.0, -3.0)), (sw, sh)),
        "shrink": (about_centre(sw, sh, 0.0, 0.45, 0.5 * sw + 3.0, 0.5 * sh - 2.0), (80, 56)),
        "enlarge_rot": (about_centre(sw, sh, -30.0, 1.7, 0.5 * sw, 0.5 * sh), (sw, sh)),
        "subpixel": (np.array([[1, 0, 0.37], [0, 1, -0.81], [0, 0, 1]]), (sw, sh)),
        "integer": (np.array([[1, 0, 5.0], [0, 1, -3.0], [0, 0, 1]]), (sw, sh)),
        "mirror": (np.array([[-1, 0, sw - 0.5], [0, 1, 0], [0, 0, 1]]), (sw, sh)),
        # a mosaic-like crop: output smaller than the input (negative border)
        "crop": (about_centre(sw, sh, 7.0, 0.9, 0.52 * 40, 0.47 * 30, shear=(1.5, 0.5)), (40, 30)),
    }
    persp = {
        "persp_small": (about_centre(sw, sh, 12.0, 1.1, 0.55 * sw, 0.45 * sh, persp=(4e-4, -3e-4)), (sw, sh)),
        "persp_strong": (about_centre(sw, sh, -5.0, 1.2, 0.5 * sw, 0.5 * sh, persp=(3e-3, 2e-3)), (sw, sh)),
        "persp_tiny": (about_centre(sw, sh, 0.0, 1.0, 0.5 * sw, 0.5 * sh, persp=(1e-5, -1e-5)), (sw, sh)),
        "persp_crop": (about_centre(sw, sh, 20.0, 0.8, 0.5 * 40, 0.5 * 30, persp=(-2e-3, 1e-3)), (40, 30)),
    }
    for name, (m, size) in affine.items():
        add_warp(name, "affine", m, size, "shapes")
        add_warp(name, "perspective", m, size, "shapes")
    for name, (m, size) in persp.items():
        add_warp(name, "perspective", m, size, "shapes")
    nw, nh = 45, 31
    add_warp("rot_scale", "affine", about_centre(nw, nh, 33.0, 0.8, 0.5 * nw + 1.25, 0.5 * nh - 0.5), (nw, nh), "noise")
    add_warp("persp", "perspective", about_centre(nw, nh, -14.0, 1.3, 0.5 * nw, 0.5 * nh, persp=(2e-3, -1.5e-3)), (37, 29), "noise")

    letterboxes = []
    cases = [
        ("shapes", (64, 64), True),
        ("shapes", (40, 40), True),
        ("shapes", (96, 96), True),
        ("shapes", (96, 96), False),
        ("noise", (64, 64), True),
        ("noise", (32, 48), False),
        ("noise", (26, 35), False),
    ]
    for src, hw, scaleup in cases:
        out, r, (dw, dh) = letterbox_ref(cv2.cvtColor(sources[src], cv2.COLOR_RGB2BGR), hw, scaleup)
        f = f"letterbox_{src}_{hw[0]}x{hw[1]}_{'up' if scaleup else 'noup'}.png"
        rgb_png(out_dir / f, cv2.cvtColor(out, cv2.COLOR_BGR2RGB))
        letterboxes.append({"source": src, "new_hw": list(hw), "scaleup": scaleup, "file": f, "ratio": r, "pad": [dw, dh], "ratio_bits": f64_hex(r)})

    augment = []
    gain_sets = [[1.01, 0.5, 1.3], [0.985, 1.4, 0.6], [1.015, 0.9, 1.0], [1.0, 1.0, 1.0]]
    for src in sources:
        for i, g in enumerate(gain_sets):
            out = augment_hsv_ref(cv2.cvtColor(sources[src], cv2.COLOR_RGB2BGR), g)
            f = f"augment_hsv_{src}_{i}.png"
            rgb_png(out_dir / f, cv2.cvtColor(out, cv2.COLOR_BGR2RGB))
            augment.append({"source": src, "gains": g, "gains_bits": [f64_hex(v) for v in g], "file": f})
    return resizes, warps, letterboxes, augment


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = Path(__file__).resolve().parent.parent
    ap.add_argument("--shapes", default=str(here.parent / "shared/data/shapes-mini/images/train/train_000000.jpg"))
    ap.add_argument("--out", default=str(here / "tests/data/opencv"))
    ap.add_argument("--any-version", action="store_true")
    a = ap.parse_args()
    if not cv2.__version__.startswith(PINNED) and not a.any_version:
        raise SystemExit(f"OpenCV {cv2.__version__}, the fixtures are made with {PINNED} (--any-version to override)")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.iterdir():
        old.unlink()
    rng = np.random.default_rng(20240612)

    shapes = cv2.imread(a.shapes)
    assert shapes is not None, a.shapes
    sources = {
        # 64x48 around the blue triangle of shapes-mini train_000000.jpg (imread: libjpeg-turbo)
        "shapes": np.ascontiguousarray(cv2.cvtColor(shapes[216:264, 248:312], cv2.COLOR_BGR2RGB)),
        # 45x31 uniform noise: odd sizes, every tap matters
        "noise": np.random.default_rng(12345).integers(0, 256, (31, 45, 3), dtype=np.uint8),
    }
    for name, rgb in sources.items():
        rgb_png(out / f"src_{name}.png", rgb)

    hsv = hsv_vectors(out, rng)
    resizes, warps, letterboxes, augment = image_vectors(out, sources)
    manifest = {
        "generated_by": "scripts/make_opencv_vectors.py",
        "opencv": cv2.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "opencv_cpu_features": cv2.getCPUFeaturesLine() if hasattr(cv2, "getCPUFeaturesLine") else "",
        "images": "PNG, RGB, 8-bit; every operation ran on the BGR array as upstream holds it, results converted back to RGB",
        "sources": {
            "shapes": {"file": "src_shapes.png", "how": "cv2.imread of shared/data/shapes-mini/images/train/train_000000.jpg, rows 216..264, columns 248..312"},
            "noise": {"file": "src_noise.png", "how": "np.random.default_rng(12345).integers(0, 256, (31, 45, 3), dtype=np.uint8)"},
        },
        "hsv": hsv,
        "resize": {"how": "cv2.resize(src, (width, height), interpolation=INTER_LINEAR | INTER_AREA)", "cases": resizes},
        "warp": {
            "how": "cv2.warpAffine(src, m[:2], dsize=(width, height), borderValue=(114, 114, 114)) (kind affine) or cv2.warpPerspective(src, m, dsize, borderValue=(114, 114, 114)) (kind perspective); INTER_LINEAR, BORDER_CONSTANT; m maps source to output pixels; m_bits are the f64 bits, little-endian hex",
            "cases": warps,
        },
        "letterbox": {
            "how": "upstream letterbox(im, new_shape=new_hw, auto=False, scaleup): cv2.resize(INTER_LINEAR) to round(w*r) x round(h*r), then cv2.copyMakeBorder(round(dh -/+ 0.1), round(dw -/+ 0.1), value 114); pad = (dw, dh)",
            "cases": letterboxes,
        },
        "augment_hsv": {
            "how": "upstream augment_hsv with gains r fixed: BGR2HSV, cv2.LUT with hue (x*rh) % 180, sat clip(x*rs), val clip(x*rv) (each astype uint8), HSV2BGR",
            "cases": augment,
        },
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    total = sum(p.stat().st_size for p in out.iterdir())
    print(f"wrote {len(list(out.iterdir()))} files, {total} bytes, to {out} (OpenCV {cv2.__version__}, HSV->RGB SIMD block {hsv['hsv2rgb_simd_block']})")


if __name__ == "__main__":
    main()
