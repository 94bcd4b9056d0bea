"""preprocess: square geometry, the pack and its manifest columns, staleness, CLI."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw

from manifests import file_sha256, sample_id, write_manifest
from common.errors import UserError
from preprocess.pack import (PREP_STATUSES, PackError, PrepOptions, ensure_pack, load_pack,
                             preprocess_manifest)
from preprocess.square import (FILLS, MODES, crop_geometry, magnification, pad_geometry, square_image,
                               to_rgb)

BG, FG = (200, 200, 200), (10, 10, 10)
LANCZOS = Image.Resampling.LANCZOS


# --------------------------------------------------------------------------- helpers

def bike(w=200, h=100, bg=BG, fg=FG) -> Image.Image:
    """A bike-like shape: a wide dark ellipse (aspect 3.6 on 200x100) on a plain background."""
    img = Image.new("RGB", (w, h), bg)
    ImageDraw.Draw(img).ellipse((0.05 * w, 0.25 * h, 0.95 * w, 0.75 * h), fill=fg)
    return img


def dark_bbox(a: np.ndarray, thr: int = 105) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) inclusive of the pixels darker than `thr` in every channel."""
    ys, xs = np.nonzero((a < thr).all(axis=2))
    return xs.min(), ys.min(), xs.max(), ys.max()


def aspect(a: np.ndarray, thr: int = 105) -> float:
    x0, y0, x1, y1 = dark_bbox(a, thr)
    return (x1 - x0 + 1) / (y1 - y0 + 1)


def colour(k: int) -> tuple[int, int, int]:
    return (30 + 23 * k % 200, 220 - 17 * k % 180, 40 + 29 * k % 190)


def build_manifest(tmp: Path, n: int = 6, *, extra: dict | None = None, keep: list | None = None,
                   specs: list[dict] | None = None) -> Path:
    """A scan-like manifest over generated photos in tmp/photos, written to tmp/work/m.parquet.

    Each photo k is a 200x100 bike on a background of colour(k). `specs` adds
    rows: {"name", "image" (PIL or bytes), plus any columns}.
    """
    photos, work = tmp / "photos", tmp / "work"
    photos.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    items = [{"name": f"bike_{k:02d}.jpg", "image": bike(bg=colour(k))} for k in range(n)]
    items += specs or []
    rows = []
    for it in items:
        p = photos / it["name"]
        img = it["image"]
        if isinstance(img, bytes):
            p.write_bytes(img)
        elif not p.exists():
            img.save(p, quality=95) if p.suffix == ".jpg" else img.save(p)
        sha = file_sha256(p)
        row = {"sample_id": sample_id(sha, it["name"], it.get("crop_index", 0)), "path": it["name"],
               "crop_index": it.get("crop_index", 0), "status": "ok", "sha256": sha}
        row.update({k: v for k, v in it.items() if k not in ("name", "image", "crop_index")})
        rows.append(row)
    df = pd.DataFrame(rows)
    for col, vals in (extra or {}).items():
        df[col] = vals
    if keep is not None:
        df["keep"] = pd.array(keep, dtype="boolean")
    path = work / "m.parquet"
    write_manifest(df, path, stage="scan", root=str(photos.resolve()))
    return path


def derived(work: Path, name: str, img: Image.Image) -> str:
    """Save a derived image (a crop, a repaired copy) in the work cache; its manifest-relative path."""
    p = work / "cache" / "derived" / name
    p.parent.mkdir(parents=True, exist_ok=True)
    img.save(p)
    return p.relative_to(work).as_posix()


def reference_pad(path: Path, size: int) -> np.ndarray:
    """Pad-black computed independently of preprocess.square: PIL resize, then paste on black.

    (Pillow's reducing_gap=3 two-step shrink, as documented for the pack.)"""
    img = Image.open(path).convert("RGB")
    w, h = img.size
    s = size / max(w, h)
    nw, nh = int(w * s + 0.5), int(h * s + 0.5)   # rounded half up
    canvas = Image.new("RGB", (size, size), (0, 0, 0))
    canvas.paste(img.resize((nw, nh), LANCZOS, reducing_gap=3.0), ((size - nw) // 2, (size - nh) // 2))
    return np.asarray(canvas)


def mtime(p: Path) -> int:
    return os.stat(p).st_mtime_ns


# --------------------------------------------------------------------------- geometry

def test_pad_and_crop_geometry_values():
    assert pad_geometry(200, 100, 64) == (64, 32, 0, 16)
    assert pad_geometry(100, 200, 64) == (32, 64, 16, 0)
    assert pad_geometry(101, 50, 64) == (64, 32, 0, 16)    # 31.68 rounds to 32
    assert pad_geometry(64, 64, 64) == (64, 64, 0, 0)
    assert pad_geometry(1000, 3, 64) == (64, 1, 0, 31)     # never 0 pixels
    assert pad_geometry(30, 17, 128) == (128, 73, 0, 27)   # 72.53 -> 73, odd leftover at the bottom
    assert crop_geometry(200, 100) == (50, 0, 150, 100)
    assert crop_geometry(99, 200) == (0, 50, 99, 149)
    assert magnification(200, 100, 128, "pad") == pytest.approx(0.64)
    assert magnification(200, 100, 128, "resize") == pytest.approx(1.28)
    assert magnification(200, 100, 128, "crop") == pytest.approx(1.28)
    with pytest.raises(ValueError):
        pad_geometry(0, 10, 64)


def test_pad_keeps_the_bikes_aspect_ratio():
    src = np.asarray(bike())
    assert aspect(src) == pytest.approx(3.6, abs=0.1)
    out = square_image(bike(), 64, "pad")
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    assert aspect(out[16:48]) == pytest.approx(aspect(src), rel=0.07)  # inside the bands
    assert (out[:16] == 0).all() and (out[48:] == 0).all()            # black bands, 16 rows each
    assert out[16].mean() > 150 and out[47].mean() > 150               # the photo's own top and bottom rows
    tall = square_image(bike(100, 200), 64, "pad")                      # portrait: bands left and right
    assert (tall[:, :16] == 0).all() and (tall[:, 48:] == 0).all()
    assert aspect(tall[:, 16:48]) == pytest.approx(aspect(np.asarray(bike(100, 200))), rel=0.07)
    white = square_image(bike(), 64, "pad", fill="white")               # and with a light border
    assert aspect(white) == pytest.approx(aspect(src), rel=0.07)


def test_resize_stretches_and_crop_takes_the_centre():
    stretched = square_image(bike(), 64, "resize")
    assert aspect(stretched) == pytest.approx(aspect(np.asarray(bike())) / 2, rel=0.07)  # 57.6 x 32
    assert stretched[0].mean() > 150 and stretched[-1].mean() > 150     # no bands: the photo's edges
    cropped = square_image(bike(), 64, "crop")
    x0, y0, x1, y1 = dark_bbox(cropped)
    assert (x0, x1) == (0, 63)                                          # the ellipse runs off both sides
    assert y1 - y0 + 1 == pytest.approx(32, abs=1.5)                    # its full height, x0.64
    # the crop is the centre: a left-half marker disappears, a centre marker stays
    img = Image.new("RGB", (200, 100), BG)
    ImageDraw.Draw(img).rectangle((0, 0, 30, 99), fill=(255, 0, 0))
    ImageDraw.Draw(img).rectangle((95, 45, 105, 55), fill=(0, 0, 255))
    c = square_image(img, 50, "crop")
    assert not ((c[..., 0] > 200) & (c[..., 1] < 60)).any()              # red strip at x<=30 is cut
    assert ((c[..., 2] > 150) & (c[..., 0] < 100))[20:30, 20:30].any()   # blue square at the centre


def test_pad_fills():
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (50, 100, 3), dtype=np.uint8))
    outs = {f: square_image(img, 64, "pad", fill=f) for f in FILLS}
    top, bottom = 16, 48                                                # 64x32 content
    assert (outs["black"][:top] == 0).all() and (outs["black"][bottom:] == 0).all()
    assert (outs["white"][:top] == 255).all() and (outs["white"][bottom:] == 255).all()
    edge = outs["edge"]
    assert (edge[:top] == edge[top]).all() and (edge[bottom:] == edge[bottom - 1]).all()
    refl = outs["reflect"]
    for d in range(1, 8):
        assert (refl[top - d] == refl[top + d]).all()
        assert (refl[bottom - 1 + d] == refl[bottom - 1 - d]).all()
    middle = {f: o[top:bottom] for f, o in outs.items()}               # same picture whatever the fill
    assert all((m == middle["black"]).all() for m in middle.values())
    with pytest.raises(ValueError):
        square_image(img, 64, "pad", fill="green")


def test_downscale_is_antialiased():
    # 1-pixel black/white stripes average to grey; a nearest-neighbour scaler would keep stripes
    a = np.zeros((256, 256, 3), np.uint8)
    a[:, ::2] = 255
    out = square_image(Image.fromarray(a), 32, "resize")
    assert out.std() < 8 and abs(out.mean() - 127.5) < 8


def test_to_rgb_handles_greyscale_alpha_and_exif(tmp_path):
    grey = to_rgb(Image.new("L", (10, 5), 77))
    assert grey.mode == "RGB" and np.asarray(grey)[0, 0].tolist() == [77, 77, 77]
    transparent = to_rgb(Image.new("RGBA", (4, 4), (0, 0, 0, 0)))
    assert np.asarray(transparent)[0, 0].tolist() == [255, 255, 255]
    p = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6                                                    # rotate 90 on display
    Image.new("RGB", (200, 100), BG).save(p, exif=exif)
    with Image.open(p) as im:
        assert to_rgb(im).size == (100, 200)
    sixteen = Image.fromarray(np.full((4, 4), 65535, np.uint16))
    assert np.asarray(to_rgb(sixteen))[0, 0].tolist() == [255, 255, 255]


def test_options_are_validated():
    assert PrepOptions().mode == "pad" and PrepOptions().fill == "black" and PrepOptions().size == 128
    for bad in ({"size": 4}, {"size": 5000}, {"mode": "zoom"}, {"fill": "green"}, {"max_upscale": 0.5},
                {"resample": "nearest"}, {"workers": 0}):
        with pytest.raises(UserError):
            PrepOptions(**bad)
    assert set(MODES) == {"pad", "resize", "crop"}
    from manifests.schema.preprocess import PREP_STATUSES as declared

    assert tuple(declared) == PREP_STATUSES
