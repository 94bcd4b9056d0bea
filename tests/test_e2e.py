"""The main job end to end on a small messy folder: curate run -> gan train -> gan generate -> metric."""
import json
import shutil

import pytest
from PIL import Image

from manifests import read_manifest
from tests.zoo import make_zoo


def _cli(main, args):
    try:
        main(args)
    except SystemExit as exc:
        assert exc.code in (0, None), f"{args[0]} exited {exc.code}"


@pytest.fixture
def messy_folder(tmp_path, caltech):
    folder = tmp_path / "photos"
    expected = make_zoo(folder / "zoo", fifo=False)
    bikes = sorted(caltech.glob("*.jpg"))[:24]
    (folder / "bikes").mkdir()
    for p in bikes:
        shutil.copy2(p, folder / "bikes" / p.name)
    # Planted duplicates: a re-encoded copy and a mirrored copy of the first bike.
    with Image.open(bikes[0]) as im:
        im.convert("RGB").save(folder / "bikes" / "copy reencoded.jpg", quality=90)
        im.convert("RGB").transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(folder / "mirrored.png")
    return folder, expected, bikes


@pytest.mark.slow
def test_main_job_chain(tmp_path, messy_folder, tflite_weights):
    from curate.cli import main as curate_main
    from gan.cli import main as gan_main

    folder, expected, bikes = messy_folder
    work = tmp_path / "work"
    _cli(curate_main, ["run", str(folder), "-o", str(work), "--weights", str(tflite_weights),
                       "--device", "cpu", "--workers", "2"])

    m = read_manifest(work / "manifest.parquet")
    df = m.df
    files = df[df["crop_index"] == 0]
    # Every file accounted for, once.
    on_disk = {p.relative_to(folder).as_posix() for p in folder.rglob("*")
               if p.is_file() or p.is_symlink()}
    assert sorted(files["path"]) == sorted(on_disk)
    assert df["keep"].notna().all()
    # Bad files are rejected with a reason, repairable ones repaired.
    for rel, exp in expected.items():
        row = files[files["path"] == f"zoo/{rel}"].iloc[0]
        if exp["status"] not in ("ok",) and exp.get("repair_action") in (None, "skipped", "unrecoverable"):
            assert not row["keep"] and row["reject_reason"], rel
    assert (files["repair_action"].astype("string") != "none").sum() >= 5
    # Duplicates flagged in one group with the original.
    group = lambda p: files.loc[files["path"] == p, "dup_group"].iloc[0]  # noqa: E731
    first = f"bikes/{bikes[0].name}"
    assert group(first) == group("bikes/copy reencoded.jpg") == group("mirrored.png")
    dup_rows = files[files["dup_group"] == group(first)]
    assert dup_rows["is_duplicate"].sum() == len(dup_rows) - 1
    # Most real bikes survive the filter.
    clean = read_manifest(work / "clean.parquet").df
    assert len(clean) >= 15 and clean["keep"].all()
    assert (work / "report" / "index.html").exists()

    # clean.parquet feeds the trainer; PNGs come out; a metric is reported.
    _cli(gan_main, ["train", "--manifest", str(work / "clean.parquet"), "--preset", "tiny",
                    "--steps", "4", "--device", "cpu", "--out", str(work / "runs"), "--no-progress"])
    run = sorted((work / "runs").iterdir())[-1]
    _cli(gan_main, ["generate", "--checkpoint", str(run / "checkpoint.pt"), "--n", "24",
                    "-o", str(work / "gen"), "--device", "cpu", "--no-progress"])
    pngs = sorted((work / "gen").glob("*.png"))
    assert len(pngs) == 24
    _cli(gan_main, ["fid", "--generated", str(work / "gen"), "--manifest", str(work / "clean.parquet"),
                    "--weightless", "--device", "cpu", "-o", str(work / "metrics.json"), "--no-progress"])
    metrics = json.loads((work / "metrics.json").read_text())
    assert any("c2st" in k for k in json.dumps(metrics).split('"')), metrics
