"""curate dedupe: pixel signature, near duplicates (mirror too), keepers, undecodable rows, resume, CLI."""
from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from curate.dedupe import DedupeOptions, dedupe_manifest
from curate.hashing import load_rgb, pixel_signature, signatures_match
from manifests import file_sha256, read_manifest, sample_id, write_manifest


# ----------------------------------------------------------------- helpers (also used by test_score)

def scan_rows(root: Path, names: list[str], status: dict[str, str] | None = None) -> list[dict]:
    rows = []
    for name in names:
        p = root / name
        sha = file_sha256(p)
        st = (status or {}).get(name, "ok")
        w = h = None
        if st == "ok":
            with Image.open(p) as im:
                w, h = im.size
        rows.append({"sample_id": sample_id(sha, name, 0), "path": name, "crop_index": 0, "status": st,
                     "sha256": sha, "size_bytes": p.stat().st_size, "width": w, "height": h})
    return rows


def make_manifest(tmp_path: Path, root: Path, names, *, status=None, extra=None) -> Path:
    import pandas as pd

    rows = scan_rows(root, names, status)
    for r in rows:
        r.update((extra or {}).get(r["path"], {}))
    df = pd.DataFrame(rows)
    for c in ("crop_index", "width", "height"):
        df[c] = df[c].astype("Int32")
    out = tmp_path / "work" / "manifest.parquet"
    write_manifest(df, out, stage="scan", params={}, root=str(root))
    return out


def photo(seed: int, size=(240, 160)) -> Image.Image:
    """A synthetic 'photo': smooth gradient, a few coloured shapes (distinct per seed)."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([(xx * rng.uniform(0.2, 1) + yy * rng.uniform(0, 1)) % 256,
                     (yy * rng.uniform(0.2, 1.5)) % 256,
                     np.full_like(xx, rng.integers(0, 255))], axis=2).astype(np.uint8)
    img = Image.fromarray(base)
    d = ImageDraw.Draw(img)
    for _ in range(6):
        x0, y0 = int(rng.integers(0, w - 40)), int(rng.integers(0, h - 40))
        d.ellipse([x0, y0, x0 + int(rng.integers(15, 60)), y0 + int(rng.integers(15, 60))],
                  fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
    return img


def strip_jpeg_metadata(data: bytes) -> bytes:
    """Drop APPn (n>=1) and COM segments from a JPEG, keeping the coded image bytes as they are."""
    assert data[:2] == b"\xff\xd8"
    out, i = bytearray(b"\xff\xd8"), 2
    while i < len(data):
        marker = data[i + 1]
        if marker == 0xDA:                       # start of scan: the rest is image data
            out += data[i:]
            break
        seg_len = int.from_bytes(data[i + 2:i + 4], "big")
        seg = data[i:i + 2 + seg_len]
        if not (0xE1 <= marker <= 0xEF or marker == 0xFE):
            out += seg
        i += 2 + seg_len
    return bytes(out)


def jpeg_bytes(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", **kw)
    return buf.getvalue()


def by_path(m):
    return {r["path"]: r for r in m.df.to_dict("records")}


# ----------------------------------------------------------------- pixel signature

def test_signature_matches_q100_and_stripped_copy_not_other_photo(tmp_path):
    img = photo(1)
    exif = Image.Exif()
    exif[0x010F] = "TestCam"                 # Make
    exif[0x0131] = "motocurate tests"        # Software
    orig = jpeg_bytes(img, quality=90, exif=exif.tobytes(), comment=b"scraped from somewhere")
    stripped = strip_jpeg_metadata(orig)
    assert stripped != orig and len(stripped) < len(orig)
    (tmp_path / "a.jpg").write_bytes(orig)
    (tmp_path / "b.jpg").write_bytes(stripped)
    a = load_rgb(tmp_path / "a.jpg")
    (tmp_path / "c.jpg").write_bytes(jpeg_bytes(a, quality=100))
    c = load_rgb(tmp_path / "c.jpg")
    assert not np.array_equal(np.asarray(a), np.asarray(c))   # q100 is not pixel-identical
    sa, sb, sc = (pixel_signature(load_rgb(tmp_path / n)) for n in ("a.jpg", "b.jpg", "c.jpg"))
    assert sa == sb
    assert signatures_match(sa, sc)
    other = pixel_signature(photo(2))
    assert not signatures_match(sa, other)
    # a 1-pixel different size never matches
    assert not signatures_match(sa, pixel_signature(a.crop((0, 0, a.width - 1, a.height))))


@pytest.mark.slow
def test_signature_q100_on_real_photos(caltech):
    """Every sampled Caltech photo matches its quality-100 re-save (and not its neighbour)."""
    files = sorted(caltech.glob("*.jpg"))[::40]
    sigs = []
    for p in files:
        a = load_rgb(p)
        c = Image.open(io.BytesIO(jpeg_bytes(a, quality=100))).convert("RGB")
        sa = pixel_signature(a)
        assert signatures_match(sa, pixel_signature(c)), p.name
        sigs.append(sa)
    assert not any(signatures_match(x, y) for x, y in zip(sigs, sigs[1:]))


# ----------------------------------------------------------------- the stage

@pytest.fixture()
def dup_folder(tmp_path):
    root = tmp_path / "photos"
    root.mkdir()
    img = photo(10, (320, 200))
    orig = jpeg_bytes(img, quality=92, comment=b"metadata to strip")
    (root / "orig.jpg").write_bytes(orig)
    (root / "stripped.jpg").write_bytes(strip_jpeg_metadata(orig))
    (root / "q100.jpg").write_bytes(jpeg_bytes(load_rgb(root / "orig.jpg"), quality=100))
    (root / "small.jpg").write_bytes(jpeg_bytes(img.resize((160, 100), Image.Resampling.LANCZOS),
                                                quality=85))
    (root / "mirror.png").parent.mkdir(exist_ok=True)
    img.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(root / "mirror.png")
    for k in range(4):
        photo(100 + k, (300, 200)).save(root / f"distinct{k}.png")
    (root / "broken1.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "broken2.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    names = sorted(p.name for p in root.iterdir())
    status = {"broken1.jpg": "corrupt", "broken2.jpg": "corrupt"}
    return root, names, status


def test_dedupe_groups_exact_near_and_mirror(tmp_path, dup_folder):
    root, names, status = dup_folder
    mp = make_manifest(tmp_path, root, names, status=status)
    dedupe_manifest(mp, DedupeOptions(workers=1), progress=False)
    m = read_manifest(mp)
    rows = by_path(m)
    group = {n for n in ("orig.jpg", "stripped.jpg", "q100.jpg", "small.jpg", "mirror.png")}
    gids = {rows[n]["dup_group"] for n in group}
    assert len(gids) == 1 and None not in gids and not any(g is np.nan for g in gids)
    keepers = [n for n in group if rows[n]["dup_keeper"] is True]
    assert len(keepers) == 1
    assert keepers[0] != "small.jpg"            # the larger copies win
    for n in group - set(keepers):
        assert rows[n]["is_duplicate"] is True
        assert rows[n]["dup_reason"].startswith(("same picture (decoded pixels within 2 levels", "near duplicate"))
    # the three same-size decodes are exact duplicates of each other
    exact = [n for n in ("orig.jpg", "stripped.jpg", "q100.jpg") if n not in keepers]
    if keepers[0] in ("orig.jpg", "stripped.jpg", "q100.jpg"):
        assert all(rows[n]["dup_reason"].startswith("same picture (decoded pixels within 2 levels") for n in exact)
    assert "mirrored" in rows["mirror.png"]["dup_reason"] or keepers == ["mirror.png"]
    assert rows["small.jpg"]["dup_reason"].startswith("near duplicate")
    for k in range(4):
        r = rows[f"distinct{k}.png"]
        assert r["is_duplicate"] is False and pd_isna(r["dup_group"])
    for n in ("broken1.jpg", "broken2.jpg"):       # identical garbage: never grouped
        r = rows[n]
        assert pd_isna(r["phash"]) and pd_isna(r["pixel_hash"]) and pd_isna(r["dup_group"])
        assert pd_isna(r["is_duplicate"]) and r["dup_reason"].startswith("not hashed")
    params = m.stage_params("dedupe")
    assert params["method"] == "phash" and params["threshold"] == DedupeOptions().threshold
    # user files untouched
    assert sorted(p.name for p in root.iterdir()) == names


def pd_isna(v) -> bool:
    import pandas as pd

    return v is None or bool(pd.isna(v))


def test_keeper_prefers_not_cut_off_then_larger_crop(tmp_path):
    """Crops from the detect stage: the keeper is the copy whose bike is not cut off."""
    root = tmp_path / "photos"
    root.mkdir()
    img = photo(7, (400, 300))
    img.save(root / "a.png")
    img.resize((300, 225), Image.Resampling.LANCZOS).save(root / "b.png")
    mp_folder = tmp_path / "work"
    crops = mp_folder / "cache" / "crops"
    crops.mkdir(parents=True)
    extra = {}
    for name, scale, cut in (("a.png", 1.0, True), ("b.png", 0.75, False)):
        box = [round(40 * scale), round(30 * scale), round(360 * scale), round(270 * scale)]
        im = Image.open(root / name)
        im.crop(box).save(crops / f"{name}.crop.png")
        extra[name] = {"crop_path": f"cache/crops/{name}.crop.png", "crop_box": box,
                       "primary_box": [float(v + 10) for v in box[:2]] + [float(v - 10) for v in box[2:]],
                       "cut_off_flag": cut, "detect_status": "ok"}
    mp = make_manifest(tmp_path, root, ["a.png", "b.png"], extra=extra)
    dedupe_manifest(mp, DedupeOptions(workers=1), progress=False)
    rows = by_path(read_manifest(mp))
    assert rows["b.png"]["dup_keeper"] is True and rows["a.png"]["is_duplicate"] is True
    assert rows["b.png"]["dup_reason"] == "kept: passes the other checks (the other copy is rejected as cut_off)"
    assert rows["a.png"]["hash_source"] == "cache/crops/a.png.crop.png"
    # without the cut-off flags the larger crop wins
    m = read_manifest(mp)
    m.df["cut_off_flag"] = m.df["cut_off_flag"].astype("boolean") & False
    write_manifest(m, mp, stage="detect", params={})
    dedupe_manifest(mp, DedupeOptions(workers=1), progress=False)
    rows = by_path(read_manifest(mp))
    assert rows["a.png"]["dup_keeper"] is True
    assert rows["a.png"]["dup_reason"].startswith("kept: larger crop")


def test_the_keeper_is_a_copy_no_other_rule_rejects(tmp_path):
    """A larger greyscale copy would win on size, but the grey check rejects it: keeping it would
    lose the photo altogether (the colour copy rejected as its duplicate, the grey one as grey)."""
    from curate.filter import filter_manifest

    root = tmp_path / "photos"
    root.mkdir()
    img = photo(3, (300, 225))
    img.save(root / "a.png")
    img.resize((600, 450), Image.Resampling.LANCZOS).convert("L").convert("RGB").save(root / "b.png")
    mp = make_manifest(tmp_path, root, ["a.png", "b.png"],
                       extra={"a.png": {"grey_flag": False}, "b.png": {"grey_flag": True}})
    dedupe_manifest(mp, DedupeOptions(workers=1), progress=False)
    rows = by_path(read_manifest(mp))
    assert rows["a.png"]["dup_keeper"] is True and rows["b.png"]["is_duplicate"] is True
    assert rows["a.png"]["dup_reason"] == "kept: passes the other checks (the other copy is rejected as grey)"
    res = filter_manifest(mp)
    assert res.kept == 1 and read_manifest(res.out_path).df["path"].tolist() == ["a.png"]


def test_frames_of_one_fixed_camera_group_only_when_the_bike_is_the_same_place():
    """Whole photos from a fixed street camera look alike (equal whole-photo hashes here); their
    samples are the bikes in them: a whole-photo match counts only where the boxes coincide,
    mirrored for a mirrored match."""
    from curate.dedupe import group_rows
    from curate.hashing import pixel_signature

    far = ["0" * 16, "f" * 16, "0f" * 8, "f0" * 8]                  # crop hashes: all far apart
    boxes = {"a": [40, 200, 80, 240], "b": [500, 60, 540, 100], "c": [42, 201, 81, 242],
             "m": [560, 200, 600, 240]}                             # m: a's box, mirrored in a 640 frame
    names = list(boxes)
    cols = {
        "sample_id": names, "path": [f"{n}.jpg" for n in names], "crop_index": [0] * 4,
        "pixel_hash": [pixel_signature(photo(i, (640, 360))) for i in range(4)],
        "phash": far, "phash_mirror": far, "phash_fine": [h * 4 for h in far],
        "phash_fine_mirror": [h * 4 for h in far],
        "phash_full": ["1234" * 4, "1234" * 4, "1234" * 4, "4321" * 4],
        "phash_full_mirror": ["4321" * 4, "4321" * 4, "4321" * 4, "1234" * 4],
        "phash_full_fine": ["ab" * 32, "ab" * 32, "ab" * 32, "cd" * 32],
        "phash_full_fine_mirror": ["cd" * 32, "cd" * 32, "cd" * 32, "ab" * 32],
        "area": [1600] * 4, "size": ["40x40"] * 4, "sharp": [1.0] * 4, "busy": [0.1] * 4,
        "cut_off": [False] * 4, "primary_box": [boxes[n] for n in names],
    }
    rows = [dict(zip(cols, values)) for values in zip(*cols.values())]
    out = group_rows(rows, DedupeOptions())
    g = dict(zip(out["sample_id"], out["dup_group"]))
    assert g["a"] == g["c"] == g["m"] and g["a"] is not None
    assert g["b"] is None
    assert "whole photo" in dict(zip(out["sample_id"], out["dup_reason"]))["c"]


def test_same_file_crops_are_not_exact_duplicates(tmp_path):
    """Two crops of one photo (--per-image all) share the file's pixel hash but are different samples."""
    import pandas as pd

    root = tmp_path / "photos"
    root.mkdir()
    img = photo(3, (400, 200))
    img.save(root / "two.png")
    work = tmp_path / "work"
    (work / "cache" / "crops").mkdir(parents=True)
    rows = scan_rows(root, ["two.png"]) * 2
    rows = [dict(r) for r in rows]
    for k, (r, box) in enumerate(zip(rows, ([0, 0, 200, 200], [200, 0, 400, 200]))):
        img.crop(box).save(work / "cache" / "crops" / f"c{k}.png")
        r.update(crop_index=k, sample_id=sample_id(r["sha256"], "two.png", k), crop_path=f"cache/crops/c{k}.png",
                 crop_box=box, primary_box=[float(v) for v in box])
    df = pd.DataFrame(rows)
    df["crop_index"] = df["crop_index"].astype("Int32")
    mp = work / "manifest.parquet"
    write_manifest(df, mp, stage="scan", params={}, root=str(root))
    dedupe_manifest(mp, DedupeOptions(workers=1), progress=False)
    m = read_manifest(mp)
    assert m.df["pixel_hash"].nunique() == 1
    assert not m.df["is_duplicate"].any() and m.df["dup_group"].isna().all()


def test_resume_after_interruption(tmp_path, dup_folder, monkeypatch):
    import curate.dedupe as dd

    root, names, status = dup_folder
    mp = make_manifest(tmp_path, root, names, status=status)
    calls = []
    real = dd.hash_chunk

    def flaky(jobs, method):
        calls.append(len(jobs))
        if len(calls) == 1:
            return real(jobs, method)
        raise KeyboardInterrupt

    monkeypatch.setattr(dd, "hash_chunk", flaky)
    import common.pool

    chunk = []
    orig_map = common.pool.map_chunks

    def small_chunks(fn, items, **kw):
        kw["chunk_size"] = 4
        chunk.append(len(items))
        return orig_map(fn, items, **kw)

    monkeypatch.setattr(common.pool, "map_chunks", small_chunks)
    before = mp.read_bytes()
    with pytest.raises(KeyboardInterrupt):
        dd.dedupe_manifest(mp, DedupeOptions(workers=1), progress=False)
    assert mp.read_bytes() == before                     # manifest untouched by the interrupted run
    monkeypatch.setattr(dd, "hash_chunk", real)
    dd.dedupe_manifest(mp, DedupeOptions(workers=1), progress=False)
    assert chunk == [len(names), len(names) - 4]          # the first 4 rows were not hashed again
    m = read_manifest(mp)
    assert m.df["phash"].notna().sum() == len(names) - 2
    assert not list((mp.parent / "cache" / "dedupe").glob("partial-*"))


def test_rerun_reuses_hashes_and_another_method_rehashes(tmp_path, dup_folder):
    root, names, status = dup_folder
    mp = make_manifest(tmp_path, root, names, status=status)
    dedupe_manifest(mp, DedupeOptions(workers=1), progress=False)
    first = read_manifest(mp).df.set_index("sample_id")
    # remove a source image: a rerun must not need it (hashes reused)
    shutil.move(root / "distinct0.png", tmp_path / "moved.png")
    dedupe_manifest(mp, DedupeOptions(workers=1), progress=False)
    second = read_manifest(mp).df.set_index("sample_id")
    assert first["phash"].equals(second["phash"])
    shutil.move(tmp_path / "moved.png", root / "distinct0.png")
    dedupe_manifest(mp, DedupeOptions(method="dhash", workers=1), progress=False)
    third = read_manifest(mp)
    assert third.stage_params("dedupe")["method"] == "dhash"
    assert not third.df.set_index("sample_id")["phash"].equals(second["phash"])
