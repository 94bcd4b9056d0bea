"""Calibrate the dedupe and score defaults on the real photos; print the figures.

    .venv/bin/python benchmarks/calibrate.py [--data ../shared/data] [--n 300] [--detector PATH]

Near duplicates: each of `n` Caltech photos gets one copy per transform
(resize, JPEG quality 30-95, crop of up to 5%, mirror, brightness +-20%, small
text watermark). For each transform the pool "originals + their copies" is
deduplicated the way `curate dedupe` does it (pHash of the image and of its
mirror, Hamming threshold): recall = share of (original, copy) pairs found,
precision = found true pairs / all pairs found in the pool (every other pair,
original-original included, counts as a false positive). Distinct photos are
the other Caltech photos.

Busyness: `busy_raw` on crops around the motorbikes. CCTV crops are cut around
the scooters the real TFLite detector finds (COCO class 3, conf >= 0.25,
10% margin, the same crop rule as `curate detect`); Caltech crops around the
detector's box too (the photo itself where it finds none). Reported: the share
of CCTV crops busier than the median Caltech crop, and the suggested threshold.

The functions here are imported by tests/test_calibration.py.
"""
from __future__ import annotations

import argparse
import io
import random
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFont

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"
DEFAULT_DETECTOR = REPO.parent / "shared" / "assets" / "yolov8n_int8.tflite"


def _jpeg(img: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as im:
        return im.convert("RGB")


def t_resize(img, rng):
    s = rng.uniform(0.4, 0.9)
    w, h = img.size
    return _jpeg(img.resize((max(8, round(w * s)), max(8, round(h * s))), Image.Resampling.LANCZOS), 90)


def t_reencode(img, rng):
    return _jpeg(img, rng.randint(30, 95))


def t_crop(img, rng):
    w, h = img.size
    fx, fy = rng.uniform(0, 0.05), rng.uniform(0, 0.05)   # share of each side removed in total
    dx, dy = round(w * fx), round(h * fy)
    x0, y0 = rng.randint(0, dx), rng.randint(0, dy)
    return _jpeg(img.crop((x0, y0, w - (dx - x0), h - (dy - y0))), 90)


def t_mirror(img, rng):
    return _jpeg(img.transpose(Image.Transpose.FLIP_LEFT_RIGHT), 90)


def t_brightness(img, rng):
    f = rng.choice([rng.uniform(0.8, 0.9), rng.uniform(1.1, 1.2)])
    return _jpeg(ImageEnhance.Brightness(img).enhance(f), 90)


def t_watermark(img, rng):
    out = img.convert("RGBA")
    layer = Image.new("RGBA", out.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    size = max(9, out.size[1] // 22)
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:
        font = ImageFont.load_default()
    text = rng.choice(["(c) motofoto", "SAMPLE", "bikes4sale"])
    l, t, r, b = draw.textbbox((0, 0), text, font=font)
    x = rng.choice([4, out.size[0] - (r - l) - 4])
    y = rng.choice([4, out.size[1] - (b - t) - 8])
    draw.text((x, y), text, font=font, fill=(255, 255, 255, 170), stroke_width=1,
              stroke_fill=(0, 0, 0, 170))
    return _jpeg(Image.alpha_composite(out, layer).convert("RGB"), 90)


TRANSFORMS = {
    "resize": t_resize, "reencode": t_reencode, "crop": t_crop, "mirror": t_mirror,
    "brightness": t_brightness, "watermark": t_watermark,
}
ACCEPTANCE = ("resize", "reencode", "mirror", "watermark")

# Pairs of Caltech101 Motorbikes photos that are near duplicates *in the source data*, found at the
# default setting over all 798 photos and checked by eye: the first eight are the same photo
# (re-scaled, one watermarked), the last five colour variants of one manufacturer studio shot (same
# pose, background and framing). They are not distinct photos, so a pair of them (or of their copies)
# found by dedupe is reported apart from the false positives.
KNOWN_SOURCE_DUPLICATES = {
    frozenset(("image_0032.jpg", "image_0034.jpg")), frozenset(("image_0192.jpg", "image_0195.jpg")),
    frozenset(("image_0428.jpg", "image_0429.jpg")), frozenset(("image_0437.jpg", "image_0633.jpg")),
    frozenset(("image_0474.jpg", "image_0475.jpg")), frozenset(("image_0565.jpg", "image_0634.jpg")),
    frozenset(("image_0715.jpg", "image_0717.jpg")), frozenset(("image_0728.jpg", "image_0729.jpg")),
    frozenset(("image_0036.jpg", "image_0037.jpg")), frozenset(("image_0456.jpg", "image_0457.jpg")),
    frozenset(("image_0466.jpg", "image_0471.jpg")), frozenset(("image_0472.jpg", "image_0493.jpg")),
    frozenset(("image_0487.jpg", "image_0488.jpg")),
}


def sample_photos(folder: Path, n: int, seed: int = 0) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    rng = random.Random(seed)
    return sorted(rng.sample(files, min(n, len(files))))


@dataclass
class HashedSet:
    """Hex hashes as `curate dedupe` stores them: (phash, phash_mirror, phash_fine, phash_fine_mirror)."""
    orig: list[tuple[str, str, str, str]]
    copies: dict[str, list[tuple[str, str, str, str]]]
    names: list[str]

    def source_duplicate(self, a: int, b: int) -> bool:
        n = len(self.names)
        return frozenset((self.names[a % n], self.names[b % n])) in KNOWN_SOURCE_DUPLICATES


def _hashes(img, method: str) -> tuple[str, str, str, str]:
    """The hashes `curate dedupe` makes (`hash_set`), as hex."""
    from curate.hashing import hash_set, to_hex

    a, b, fine, fine_mirror = hash_set(img, method)
    return to_hex(a), to_hex(b), str(fine), str(fine_mirror)


def hash_transformed(photos: list[Path], method: str = "phash", seed: int = 0) -> HashedSet:
    from curate.hashing import load_rgb

    rng = random.Random(seed)
    orig, copies = [], {t: [] for t in TRANSFORMS}
    for p in photos:
        img = load_rgb(p)
        orig.append(_hashes(img, method))
        for name, fn in TRANSFORMS.items():
            copies[name].append(_hashes(fn(img, rng), method))
    return HashedSet(orig, copies, [p.name for p in photos])


def _pool_pairs(items, threshold: int, fine_threshold: int, method: str) -> set[tuple[int, int]]:
    """Pairs `curate dedupe` would join in this pool (same search and verification)."""
    from curate.dedupe import DedupeOptions, near_pairs

    opts = DedupeOptions(method=method, threshold=threshold, fine_threshold=fine_threshold)
    cols = list(zip(*items))
    return {(i, j) for i, j, _, _ in near_pairs(*cols, opts)}


def precision_recall(hs: HashedSet, threshold: int, fine_threshold: int, method: str = "phash"
                     ) -> dict[str, dict[str, float]]:
    """Per transform: recall, precision, true/false positives in the pool originals + copies."""
    n = len(hs.orig)
    out = {}
    for name, copies in hs.copies.items():
        found = _pool_pairs(hs.orig + copies, threshold, fine_threshold, method)
        tp = sum(1 for a, b in found if b == a + n)
        src = sum(1 for a, b in found if b != a + n and hs.source_duplicate(a, b))
        fp = len(found) - tp - src
        out[name] = {"recall": tp / n, "precision": tp / (tp + fp) if tp + fp else 1.0,
                     "precision_strict": tp / len(found) if found else 1.0,
                     "tp": tp, "fp": fp, "source_dups": src}
    return out


def distinct_false_pairs(hs: HashedSet, threshold: int, fine_threshold: int, method: str = "phash"
                         ) -> list[tuple[int, int]]:
    return sorted(_pool_pairs(hs.orig, threshold, fine_threshold, method))


# ---------------------------------------------------------------- busyness

def detect_boxes(paths: list[Path], weights: Path, conf: float = 0.25) -> dict[Path, list]:
    """Motorcycle boxes (x0,y0,x1,y1, conf) per image with the real detector, plus all other boxes."""
    from ultralytics import YOLO

    model = YOLO(str(weights), task="detect")
    out = {}
    for p in paths:
        r = model.predict(str(p), conf=conf, verbose=False, imgsz=640)[0]
        boxes = r.boxes.xyxy.cpu().numpy().tolist()
        cls = r.boxes.cls.cpu().numpy().astype(int).tolist()
        confs = r.boxes.conf.cpu().numpy().tolist()
        out[p] = [(*b, c, k) for b, c, k in zip(boxes, confs, cls)]
    return out


def crop_around(box, size, margin: float = 0.10):
    """The detect stage's crop rule (`curate.crop.margin_box`): box grown by `margin`, clamped."""
    from curate.crop import margin_box

    return margin_box(box, margin, size[0], size[1])


def busy_values(paths: list[Path], boxes: dict | None, *, all_bikes: bool) -> list[float]:
    """busy_raw of the crop around each detected motorcycle (the primary only unless `all_bikes`)."""
    from curate.checks import measure_sample
    from curate.hashing import load_rgb

    vals = []
    for p in paths:
        img = load_rgb(p)
        dets = (boxes or {}).get(p, [])
        bikes = sorted([d for d in dets if d[5] == 3], key=lambda d: -d[4])
        if not bikes:
            if all_bikes:
                continue
            vals.append(measure_sample(img, None)["busy"])
            continue
        for d in bikes if all_bikes else bikes[:1]:
            cb = crop_around(d[:4], img.size)
            crop = img.crop(cb)
            inner = (d[0] - cb[0], d[1] - cb[1], d[2] - cb[0], d[3] - cb[1])
            vals.append(measure_sample(crop, inner)["busy"])
    return vals


def balanced_cut(clean, busy) -> tuple[float, float]:
    """The threshold that maximises balanced accuracy (Youden's J) and that J."""
    a, b = np.asarray(clean), np.asarray(busy)
    best_j, best_t = -1.0, float("nan")
    for t in np.unique(np.concatenate([a, b])):
        j = float((b >= t).mean() - (a >= t).mean())
        if j > best_j:
            best_j, best_t = j, float(t)
    return best_t, best_j


def busy_separation(caltech_vals, cctv_vals) -> dict[str, float]:
    from curate.checks import CHECKS

    med = float(np.median(caltech_vals))
    cv = np.asarray(cctv_vals)
    cut, j = balanced_cut(caltech_vals, cctv_vals)
    thr = CHECKS["busy"].threshold
    score = CHECKS["busy"].score
    return {"caltech_median": med, "caltech_p90": float(np.percentile(caltech_vals, 90)),
            "cctv_median": float(np.median(cv)), "cctv_p10": float(np.percentile(cv, 10)),
            "share_cctv_busier": float((cv > med).mean()), "n_caltech": len(caltech_vals),
            "n_cctv": len(cctv_vals), "balanced_cut_raw": cut, "youden_j": j,
            "default_threshold": float(thr),
            "cctv_flagged_at_default": float(np.mean([score(v) >= thr for v in cv])),
            "caltech_flagged_at_default": float(np.mean([score(v) >= thr for v in caltech_vals]))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--n", type=int, default=300, help="Caltech photos for the near-duplicate pairs")
    ap.add_argument("--method", default="phash")
    ap.add_argument("--detector", type=Path, default=DEFAULT_DETECTOR)
    ap.add_argument("--busy-caltech", type=int, default=798, help="Caltech photos for busyness")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--parts", default="near,busy,other", help="near, busy, other (comma-separated)")
    args = ap.parse_args(argv)
    parts = set(args.parts.split(","))

    caltech = args.data / "motorbikes" / "caltech101"
    cctv = args.data / "motorbikes" / "cctv"
    if not caltech.is_dir():
        print(f"no photos at {caltech}", file=sys.stderr)
        return 2
    if "near" in parts:
        near_duplicates(caltech, args)
    if "busy" in parts:
        busy(caltech, cctv, args)
    if "other" in parts:
        other_checks(caltech, args)
    return 0


def other_checks(caltech: Path, args) -> None:
    """grey: Caltech's greyscale files vs the colour ones; blur: photos vs Gaussian-blurred copies."""
    from PIL import ImageFilter

    from curate.checks import CHECKS, measure_sample
    from curate.hashing import load_rgb

    files = sample_photos(caltech, 10_000, args.seed)
    grey_l, grey_rgb, sharp, blurred = [], [], [], []
    for k, p in enumerate(files):
        with Image.open(p) as im:
            mode = im.mode
        img = load_rgb(p)
        raw = measure_sample(img)
        (grey_l if mode == "L" else grey_rgb).append(raw["grey"])
        if k % 4 == 0:
            sharp.append(raw["blur"])
            blurred.append(measure_sample(img.filter(ImageFilter.GaussianBlur(2.0)))["blur"])
    for name, clean, bad in (("grey", grey_rgb, grey_l), ("blur", sharp, blurred)):
        c = CHECKS[name]
        sc_clean = [c.score(v) for v in clean]
        sc_bad = [c.score(v) for v in bad]
        cut, j = balanced_cut(sc_clean, sc_bad)
        print(f"# {name}: {len(bad)} bad vs {len(clean)} clean; default threshold {c.threshold:.2f} flags "
              f"{np.mean([v >= c.threshold for v in sc_bad]):.1%} of bad, "
              f"{np.mean([v >= c.threshold for v in sc_clean]):.1%} of clean; balanced cut (score) "
              f"{cut:.3f} (J {j:.2f})")


def near_duplicates(caltech: Path, args) -> None:
    from curate.dedupe import DedupeOptions

    photos = sample_photos(caltech, args.n, args.seed)
    hs = hash_transformed(photos, args.method, args.seed)
    print(f"# near duplicates: {len(photos)} Caltech photos, {args.method} 64-bit search + 256-bit "
          f"check, mirror-aware; R = recall, P = precision in the pool originals + copies "
          f"(pairs of known source duplicates not counted as false positives)")
    print(f"{'T64':>4s} {'T256':>5s}  " + "  ".join(f"{t:>16s}" for t in TRANSFORMS) + "  distinct-pairs")
    default = DedupeOptions()
    grid = sorted({(t, f) for t in (4, 6, 8, 10) for f in (16, 20, 24, 28, 32, -1)}
                  | {(default.threshold, default.fine_threshold)})
    for t, f in grid:
        pr = precision_recall(hs, t, f, args.method)
        cells = "  ".join(f"R{pr[k]['recall']:6.1%} P{pr[k]['precision']:6.1%}" for k in TRANSFORMS)
        mark = " <- default" if (t, f) == (default.threshold, default.fine_threshold) else ""
        print(f"{t:>4d} {f:>5d}  {cells}  {len(distinct_false_pairs(hs, t, f, args.method)):>14d}{mark}")
    pr = precision_recall(hs, default.threshold, default.fine_threshold, args.method)
    ok = all(pr[k]["recall"] >= 0.95 and pr[k]["precision"] >= 0.99 for k in ACCEPTANCE)
    print(f"acceptance (recall>=95% at precision>=99% for {', '.join(ACCEPTANCE)}) at "
          f"T={default.threshold}/{default.fine_threshold}: {'PASS' if ok else 'FAIL'}")
    for k, v in pr.items():
        print(f"  {k:>10s}: recall {v['recall']:.1%} precision {v['precision']:.1%} "
              f"(tp {v['tp']}, fp {v['fp']}, source-duplicate pairs {v['source_dups']}; precision "
              f"counting those as false: {v['precision_strict']:.1%})")
    pairs = distinct_false_pairs(hs, default.threshold, default.fine_threshold, args.method)
    print(f"  pairs among the {len(photos)} originals at the default: "
          + ", ".join(f"{photos[a].name}~{photos[b].name}" for a, b in pairs))



def busy(caltech: Path, cctv: Path, args) -> None:
    if cctv.is_dir() and args.detector.exists():
        cal = sample_photos(caltech, args.busy_caltech, args.seed)
        cc = sample_photos(cctv, 10_000, args.seed)
        boxes = detect_boxes(cal + cc, args.detector)
        cal_v = busy_values(cal, boxes, all_bikes=False)
        cc_v = busy_values(cc, boxes, all_bikes=True)
        sep = busy_separation(cal_v, cc_v)
        print("# busyness (busy_raw outside the bike box; crops around the detector's motorcycles)")
        for k, v in sep.items():
            print(f"{k:>20s}: {v:.4f}" if isinstance(v, float) else f"{k:>20s}: {v}")
        print(f"acceptance (>=90% of CCTV crops busier than the Caltech median): "
              f"{'PASS' if sep['share_cctv_busier'] >= 0.9 else 'FAIL'}")
    else:
        print("busyness skipped: CCTV photos or detector weights absent")


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    raise SystemExit(main())
