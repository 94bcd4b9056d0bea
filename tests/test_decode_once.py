"""One decode per sample: `curate score` hashes what it measures and `curate dedupe` takes those
hashes (`curate.dedupe.handoff`), giving the same manifest as when dedupe decodes everything itself."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import imagehash
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from curate.dedupe import HASH_COLUMNS, DedupeOptions, dedupe_manifest
from curate.hashing import hash_hex, load_rgb
from curate.score import ScoreOptions, score_manifest
from manifests import read_manifest, write_manifest
from tests.test_dedupe import dup_folder, make_manifest  # noqa: F401  (a fixture)

DEDUPE_COLUMNS = (*HASH_COLUMNS, "hash_source", "q_area", "q_size", "q_sharp", "q_busy",
                  "dup_group", "is_duplicate", "dup_keeper", "dup_rank", "dup_reason")


def _score_then_dedupe(mp: Path, hashes: bool, caplog) -> tuple[pd.DataFrame, int]:
    """The manifest after score (handing hashes over or not) and dedupe, and how many rows dedupe hashed."""
    score_manifest(mp, ScoreOptions(workers=1, hashes=hashes), progress=False)
    handed = mp.parent / "cache" / "dedupe" / f"handoff-{mp.stem}-score.jsonl"
    assert handed.exists() == hashes
    caplog.clear()
    with caplog.at_level("INFO", logger="curate.dedupe"):
        dedupe_manifest(mp, DedupeOptions(workers=1), progress=False)
    assert not handed.exists()                           # the manifest holds them now
    n = int(re.search(r"dedupe: (\d+) row\(s\) to hash", caplog.text).group(1))
    return read_manifest(mp).df, n


def _assert_same(a: pd.DataFrame, b: pd.DataFrame, columns) -> None:
    assert a["sample_id"].tolist() == b["sample_id"].tolist()
    for c in columns:
        x, y = (s.astype(object).where(s.notna(), None).tolist() for s in (a[c], b[c]))
        assert x == y, c


def _both_ways(work: Path, caplog) -> tuple[pd.DataFrame, int, pd.DataFrame, int]:
    other = work.parent / "work-no-handoff"
    shutil.copytree(work, other)
    with_h, n_with = _score_then_dedupe(work / "manifest.parquet", True, caplog)
    without, n_without = _score_then_dedupe(other / "manifest.parquet", False, caplog)
    return with_h, n_with, without, n_without


def test_handed_over_hashes_give_the_same_groups_keepers_and_hashes(tmp_path, dup_folder, caplog):
    """Exact, near and mirrored copies, distinct photos and files that do not decode."""
    root, names, status = dup_folder
    mp = make_manifest(tmp_path, root, names, status=status)
    with_h, n_with, without, n_without = _both_ways(mp.parent, caplog)
    _assert_same(with_h, without, DEDUPE_COLUMNS)
    assert with_h["dup_group"].notna().sum() >= 5                   # the copies were grouped
    assert n_without == len(names) and n_with == 2                 # only the two broken files


def test_handed_over_hashes_of_crops_and_whole_photos(tmp_path, caplog):
    """Rows with a detect crop: the crop and the whole photo are hashed from score's decodes."""
    from tests.test_score import bike

    root = tmp_path / "photos"
    root.mkdir()
    work = tmp_path / "work"
    (work / "cache" / "crops").mkdir(parents=True)
    extra = {}
    for name, bg in (("plain.png", "plain"), ("street.png", "street"), ("plain_copy.png", "plain")):
        img = bike(bg, size=(400, 300), box=(100, 80, 300, 220))
        img.save(root / name)
        img.crop((80, 66, 320, 234)).save(work / "cache" / "crops" / name)
        extra[name] = {"crop_path": f"cache/crops/{name}", "crop_box": [80, 66, 320, 234],
                       "primary_box": [100.0, 80.0, 300.0, 220.0], "detect_status": "ok",
                       "detections": [{"label": "motorcycle", "conf": 0.9, "x0": 100.0, "y0": 80.0,
                                       "x1": 300.0, "y1": 220.0}]}
    Image.new("RGB", (300, 200), (90, 140, 60)).save(root / "nocrop.png")
    mp = make_manifest(tmp_path, root, sorted(p.name for p in root.iterdir()), extra=extra)
    with_h, n_with, without, _ = _both_ways(mp.parent, caplog)
    _assert_same(with_h, without, DEDUPE_COLUMNS)
    assert n_with == 0
    rows = {r["path"]: r for r in with_h.to_dict("records")}
    assert rows["plain.png"]["dup_group"] == rows["plain_copy.png"]["dup_group"] is not None
    assert rows["plain.png"]["phash"] != rows["plain.png"]["phash_full"]      # crop and whole photo


def test_a_row_whose_crop_changed_after_score_is_hashed_again(tmp_path, caplog):
    from tests.test_dedupe import photo

    root = tmp_path / "photos"
    root.mkdir()
    for k in range(3):
        photo(40 + k).save(root / f"p{k}.png")
    mp = make_manifest(tmp_path, root, ["p0.png", "p1.png", "p2.png"])
    score_manifest(mp, ScoreOptions(workers=1), progress=False)
    crops = mp.parent / "cache" / "crops"
    crops.mkdir(parents=True)
    photo(99).save(crops / "new.png")
    m = read_manifest(mp)
    m.df["crop_path"] = pd.array([None, "cache/crops/new.png", None], dtype="string")
    write_manifest(m, mp, stage="detect", params={})
    with caplog.at_level("INFO", logger="curate.dedupe"):
        dedupe_manifest(mp, DedupeOptions(workers=1), progress=False)
    assert "dedupe: 1 row(s) to hash, 2 reused" in caplog.text
    row = read_manifest(mp).df.iloc[1]
    assert row["hash_source"] == "cache/crops/new.png"


def test_the_four_stages_on_real_photos_give_the_same_manifest(tmp_path, shared_data, caplog):
    """Real scraped photos with a mirrored and a resized copy among them."""
    web = sorted((shared_data / "web" / "bikes").glob("*"))[:60:2]
    if not web:
        pytest.skip("web photos not found")
    root = tmp_path / "photos"
    root.mkdir()
    for p in web:
        shutil.copy(p, root / p.name)
    img = load_rgb(web[0])
    img.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(root / "mirrored.png")
    img.resize((img.width // 2, img.height // 2), Image.Resampling.LANCZOS).save(root / "half.jpg", quality=90)
    mp = make_manifest(tmp_path, root, sorted(p.name for p in root.iterdir()))
    with_h, n_with, without, _ = _both_ways(mp.parent, caplog)
    score_cols = [c for c in with_h.columns if c.endswith(("_raw", "_score", "_flag"))]
    _assert_same(with_h, without, (*DEDUPE_COLUMNS, *score_cols))
    assert n_with == 0
    assert with_h["is_duplicate"].sum() >= 2                         # the two copies


def test_hash_hex_is_imagehash_str():
    rng = np.random.default_rng(0)
    for bits in (8, 16):
        for _ in range(20):
            h = imagehash.ImageHash(rng.random((bits, bits)) > 0.5)
            assert hash_hex(h) == str(h)


def test_load_rgb_turns_by_exif_and_keeps_pixels(tmp_path):
    img = Image.fromarray(np.arange(200 * 100 * 3, dtype=np.uint8).reshape(100, 200, 3))
    exif = Image.Exif()
    exif[0x0112] = 6                                         # rotate 90 on display
    img.save(tmp_path / "turned.png", exif=exif)
    img.save(tmp_path / "plain.png")
    img.convert("L").save(tmp_path / "grey.png")
    turned, plain, grey = (load_rgb(tmp_path / n) for n in ("turned.png", "plain.png", "grey.png"))
    assert turned.size == (100, 200) and turned.mode == "RGB"
    assert np.array_equal(np.asarray(turned), np.asarray(img.transpose(Image.Transpose.ROTATE_270)))
    assert np.array_equal(np.asarray(plain), np.asarray(img))
    assert grey.mode == "RGB" and np.array_equal(np.asarray(grey)[..., 0], np.asarray(img.convert("L")))


@pytest.mark.slow
def test_reduced_phash_is_within_a_few_bits_of_imagehash_on_real_photos(shared_data):
    """`hash_set` reduces through Pillow's reducing_gap (`REDUCING_GAP`): on real scraped photos its
    pHash stays within 2 of 64 bits of imagehash's own, most photos bit for bit."""
    from curate.hashing import hash_int, hash_set

    photos = sorted(p for p in (shared_data / "web" / "bikes").rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))[::6][:150]
    dist, fine = [], []
    for p in photos:
        img = load_rgb(p)
        h, m, f, _ = hash_set(img)
        dist.append((h ^ hash_int(imagehash.phash(img))).bit_count())
        dist.append((m ^ hash_int(imagehash.phash(img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)))).bit_count())
        fine.append(imagehash.hex_to_hash(f) - imagehash.phash(img, hash_size=16))
    assert len(photos) >= 100 and max(dist) <= 2 and max(fine) <= 6, (max(dist), max(fine))
    assert sum(d == 0 for d in dist) >= 0.9 * len(dist)


def _imagehash_bits(reduced: Image.Image, k: int) -> tuple[np.ndarray, np.ndarray]:
    """imagehash's own pHash of an image already reduced to 4k x 4k, and of its mirror image."""
    flip = reduced.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return (np.asarray(imagehash.phash(reduced, hash_size=k).hash),
            np.asarray(imagehash.phash(flip, hash_size=k).hash))


def test_phash_bits_are_imagehash_bits(tmp_path):
    """`phash_bits` (two matrix products, the mirror from sign flips) gives imagehash's pHash
    bits, for the photo and its mirror, at both hash sizes: on noise, gradients and shapes."""
    from curate.hashing import phash_bits

    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:256, 0:256]
    pictures = [rng.integers(0, 256, (256, 256)), (xx + 2 * yy) % 256, ((xx - 90) ** 2 + (yy - 140) ** 2 < 3000) * 200,
                np.clip(rng.normal(128, 40, (64, 300)), 0, 255)]
    for k in (8, 16):
        for a in pictures:
            reduced = Image.fromarray(a.astype(np.uint8)).resize((4 * k, 4 * k), Image.Resampling.LANCZOS)
            mine, theirs = phash_bits(reduced, k), _imagehash_bits(reduced, k)
            assert all(np.array_equal(x, y) for x, y in zip(mine, theirs))
    with pytest.raises(ValueError, match="32x32"):
        phash_bits(Image.new("L", (40, 32)), 8)


def test_phash_bits_are_imagehash_bits_on_real_photos(shared_data):
    """On 200 scraped web photos, bit for bit, 64 and 256 bits, photo and mirror (the reduction
    is `hash_set`'s; a difference here would change stored hashes, and `HASH_VERSION` with them)."""
    from curate.hashing import FINE_SIZE, HASH_SIZE, REDUCING_GAP, phash_bits

    photos = sorted(p for p in (shared_data / "web").rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))[::5][:200]
    assert len(photos) == 200
    for p in photos:
        grey = load_rgb(p).convert("L")
        for k in (HASH_SIZE, FINE_SIZE):
            reduced = grey.resize((4 * k, 4 * k), Image.Resampling.LANCZOS, reducing_gap=REDUCING_GAP)
            mine, theirs = phash_bits(reduced, k), _imagehash_bits(reduced, k)
            assert all(np.array_equal(x, y) for x, y in zip(mine, theirs)), (p.name, k)


def test_hashes_of_another_hash_version_are_made_again(tmp_path, dup_folder, caplog):
    """A manifest deduped by a version whose hashes differ (its `hash_tag`) is hashed afresh, and its
    hand-off is not taken; hashes of this version are reused."""
    root, names, status = dup_folder
    mp = make_manifest(tmp_path, root, names, status=status)
    dedupe_manifest(mp, DedupeOptions(workers=1), progress=False)

    def hashed() -> int:
        caplog.clear()
        with caplog.at_level("INFO", logger="curate.dedupe"):
            dedupe_manifest(mp, DedupeOptions(workers=1), progress=False)
        return int(re.search(r"dedupe: (\d+) row\(s\) to hash", caplog.text).group(1))

    assert hashed() == 2                    # only the files that do not decode
    m = read_manifest(mp)
    params = dict(m.stage_params("dedupe"))
    params.pop("hash_tag")                  # as an older version wrote them
    write_manifest(m, mp, stage="dedupe", params=params, input_path=mp)
    assert hashed() == len(names)
    score_manifest(mp, ScoreOptions(workers=1), progress=False)
    handed = mp.parent / "cache" / "dedupe" / f"handoff-{mp.stem}-score.jsonl"
    text = handed.read_text()
    assert '"hash_method": "phash/v' in text
    handed.write_text(re.sub(r'"hash_method": "phash/v\d+"', '"hash_method": "phash"', text))
    m = read_manifest(mp)
    params = dict(m.stage_params("dedupe"))
    params.pop("hash_tag")
    write_manifest(m, mp, stage="dedupe", params=params, input_path=mp)
    assert hashed() == len(names)            # the old-tagged hand-off was not taken
