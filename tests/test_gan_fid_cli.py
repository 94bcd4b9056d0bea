"""`gan fid` end to end, and what importing the metrics loads."""
from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from gan import metrics as M  # noqa: E402
from gan.metrics import inception as inc  # noqa: E402
from gan.metrics import stats as S  # noqa: E402

from tests.test_gan_metrics import _images, _one_thread, _smooth, no_weights  # noqa: F401  (fixtures and helpers shared with test_gan_metrics.py)


# ---------------------------------------------------------------- `gan fid`

def _png_folder(path, imgs):
    from PIL import Image

    path.mkdir(parents=True)
    for i, a in enumerate(imgs):
        Image.fromarray(a).save(path / f"{i:05d}.png")
    return path


def _gan(argv):
    from gan.cli import main

    try:
        main(argv)
    except SystemExit as exc:
        return exc.code or 0
    return 0


def test_gan_fid_cli_with_random_inception_and_weightless(tmp_path, capsys):
    gen = _png_folder(tmp_path / "gen", _images(40, 5))
    real = _png_folder(tmp_path / "real", _smooth(41, 5))
    out = tmp_path / "res" / "m.json"
    rc = _gan(["fid", "--generated", str(gen), "--real", str(real), "--inception-weights", "random",
               "--kid-subsets", "3", "--weightless", "--metrics", "fid,kid,mifid", "--no-progress", "-o", str(out)])
    text = capsys.readouterr().out
    assert rc == 0, text
    rec = json.loads(out.read_text())
    assert rec["inception_weights"] == "random" and "testing only" in rec["warning"]
    m = rec["metrics"]
    assert {"fid", "kid", "mifid", "c2st_acc", "memo_copy_frac"} <= set(m) and m["n_fake"] == 5
    assert m["fid"] > 0 and "fid" in text and "c2st_acc" in text


def test_gan_fid_cli_reads_a_zip_and_a_npy_and_rejects_mixed_sizes(tmp_path, capsys):
    from PIL import Image

    gen = _png_folder(tmp_path / "gen", _images(50, 6))
    zpath = tmp_path / "out" / "images.zip"
    zpath.parent.mkdir()
    with zipfile.ZipFile(zpath, "w") as z:
        for p in sorted(gen.iterdir()):
            z.write(p, p.name)
    npy = tmp_path / "real.npy"
    np.save(npy, _smooth(51, 6))
    # a folder holding only the zip (as `gan generate --zip` writes it) is read too
    rc = _gan(["fid", "-g", str(zpath.parent), "--real", str(npy), "--weightless", "--no-progress"])
    assert rc == 0 and "memo_nn_ratio" in capsys.readouterr().out

    Image.fromarray(_images(52, 1, 48)[0]).save(gen / "zz-odd.png")
    rc = _gan(["fid", "-g", str(gen), "--real", str(npy), "--weightless", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "zz-odd.png: image is 48x48 but" in err


def test_gan_fid_cli_without_weights_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch, no_weights):
    gen = _png_folder(tmp_path / "gen", _images(60, 3))
    monkeypatch.setenv("MOTOCURATE_OFFLINE", "1")
    rc = _gan(["fid", "-g", str(gen), "--real", str(gen), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert err.startswith("gan: error: FID Inception weights not found") and "--inception-weights PATH" in err
    assert no_weights == []

    rc = _gan(["fid", "-g", str(gen), "--real", str(gen), "--metrics", "fid,bogus"])
    assert rc == 2 and "--metrics fid,bogus: unknown bogus" in capsys.readouterr().err
    rc = _gan(["fid", "-g", str(gen)])
    assert rc == 2 and "exactly one of --manifest" in capsys.readouterr().err


@pytest.mark.slow
def test_gan_fid_cli_on_a_manifest_caches_reference_statistics_by_content(tmp_path, capsys):
    pytest.importorskip("pyarrow")
    scan = pytest.importorskip("curate.scan")
    pytest.importorskip("preprocess.pack")
    photos = _png_folder(tmp_path / "photos", _smooth(70, 5, 64))
    manifest = tmp_path / "work" / "m.parquet"
    manifest.parent.mkdir()
    scan.scan_folder(photos, manifest, progress=False)
    gen = _png_folder(tmp_path / "gen", _images(71, 4))
    argv = ["fid", "-g", str(gen), "--manifest", str(manifest), "--inception-weights", "random",
            "--metrics", "fid", "--no-progress", "-o", str(tmp_path / "a.json")]
    assert _gan(argv) == 0, capsys.readouterr()
    cached = list((tmp_path / "work" / "cache" / "fid").rglob("*.npz"))
    assert len(cached) == 1
    first = json.loads((tmp_path / "a.json").read_text())["metrics"]
    assert first["n_real"] == 5 and first["n_fake"] == 4
    M._MEMO.clear()
    assert _gan(argv[:-1] + [str(tmp_path / "b.json")]) == 0
    second = json.loads((tmp_path / "b.json").read_text())["metrics"]
    assert second["fid"] == pytest.approx(first["fid"], rel=1e-9)
    assert list((tmp_path / "work" / "cache" / "fid").rglob("*.npz")) == cached  # hit, not a new entry


# ---------------------------------------------------------------- import hygiene

def test_gan_metrics_imports_without_torch_pandas_or_pyarrow_loaded(tmp_path):
    code = (
        "import sys\n"
        "import gan.metrics, gan.fid_cli\n"
        "heavy = [m for m in ('torch', 'pandas', 'pyarrow', 'ultralytics', 'fiftyone', 'imagehash', 'scipy')"
        " if m in sys.modules]\n"
        "print(heavy)\n"
    )
    # where `manifests` itself is importable without pandas, gan.metrics must not pull pandas in either
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    heavy = eval(out)  # noqa: S307 - our own literal list
    assert "torch" not in heavy and "scipy" not in heavy and "ultralytics" not in heavy and "fiftyone" not in heavy

    blocked = (
        "import sys\n"
        "for m in ('pandas', 'pyarrow', 'ultralytics', 'fiftyone', 'imagehash'): sys.modules[m] = None\n"
        "import numpy as np\n"
        "from gan.metrics import weightless_metrics, InceptionUnavailable, UserError\n"
        "assert issubclass(InceptionUnavailable, UserError)\n"
        "r = np.random.default_rng(0)\n"
        "a = r.integers(0, 256, (8, 16, 16, 3), dtype=np.uint8)\n"
        "import torch; torch.set_num_threads(1)\n"
        "import gan.metrics.c2st, gan.metrics.stats\n"
        "print(sorted(weightless_metrics(a, a[::-1].copy(), which=('memorisation',))))\n"
    )
    res = subprocess.run([sys.executable, "-c", blocked], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "memo_copy_frac" in res.stdout


def test_gan_api_evaluate_is_what_the_cli_computes(tmp_path):
    """`gan.api.evaluate` (the library function `gan fid` calls) gives the CLI's numbers."""
    import gan.api as ga

    gen = _png_folder(tmp_path / "gen", _images(40, 5))
    real = _png_folder(tmp_path / "real", _smooth(41, 5))
    metrics, record = ga.evaluate(gen, real=real, inception_weights="random", metrics="fid",
                                  weightless=True, kid_subsets=3, progress=False)
    assert {"fid", "c2st_acc", "memo_copy_frac"} <= set(metrics) and metrics["n_real"] == 5
    assert record["metrics"] is metrics and "testing only" in record["warning"]
    out = tmp_path / "m.json"
    assert _gan(["fid", "--generated", str(gen), "--real", str(real), "--inception-weights", "random",
                 "--metrics", "fid", "--weightless", "--kid-subsets", "3", "--no-progress", "-o", str(out)]) == 0
    cli = json.loads(out.read_text())["metrics"]
    assert cli["fid"] == pytest.approx(metrics["fid"], rel=1e-9)
    from gan.metrics import UserError

    with pytest.raises(UserError, match="exactly one"):
        ga.evaluate(gen, inception_weights="random")
