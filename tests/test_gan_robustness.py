"""gan train / generate / fid on wrong inputs and interruptions: one-line errors before any work,
no stray files, runs that diverge or stop early, and images that do not depend on how they are batched."""
import importlib.util
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from gan.checkpoint import load_checkpoint  # noqa: E402
from gan.config import PRESETS, GenerateOptions, TrainConfig, UserError  # noqa: E402
from tests.test_gan_train import make_pack  # noqa: E402

PHOTO = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 8    # JPEG-like bytes, not a checkpoint


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


@pytest.fixture
def pack(tmp_path) -> Path:
    return make_pack(tmp_path / "pack.npy")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A 2-step tiny run (32x32) shared by the generate tests."""
    from gan.train import train

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        tmp = tmp_path_factory.mktemp("tiny")
        return train(PRESETS["tiny"].replace(steps=2, sample_every=0), data=make_pack(tmp / "p.npy"),
                     out=tmp / "runs", device="cpu", progress=False)
    finally:
        torch.set_num_threads(n)


def gan(argv, capsys) -> tuple[int, str]:
    """Run `gan ARGV` in-process: (exit code, stderr)."""
    from gan.cli import main

    try:
        main([str(a) for a in argv])
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    return code, capsys.readouterr().err


def one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("gan: error:"), err
    assert "Traceback" not in err and "weights_only" not in err, err
    for needle in needles:
        assert needle in err, err


def _pngs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.png"))}


# ----------------------------------------------------------------------- 1. a wrong --manifest

def test_a_photo_as_manifest_leaves_no_file_in_its_folder(tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "bike.jpg").write_bytes(PHOTO)
    make_pack(tmp_path / "gen.npy", n=4)
    code, err = gan(["train", "--manifest", photos / "bike.jpg", "--preset", "tiny", "--out", tmp_path / "runs",
                     "--device", "cpu", "--no-progress"], capsys)
    one_line_error(code, err, "not a readable Parquet manifest")
    gen = tmp_path / "gen"
    from PIL import Image

    gen.mkdir()
    for i, a in enumerate(np.load(tmp_path / "gen.npy")):
        Image.fromarray(a).save(gen / f"{i}.png")
    code, err = gan(["fid", "-g", gen, "--manifest", photos / "bike.jpg", "--weightless", "--no-progress"], capsys)
    one_line_error(code, err, "not a readable Parquet manifest")
    assert sorted(p.name for p in photos.rglob("*")) == ["bike.jpg"]
    assert not (tmp_path / "runs").exists()


# ----------------------------------------------------------------------- 2. output paths

def test_output_paths_are_checked_before_any_work(tmp_path, capsys):
    f = tmp_path / "f.txt"
    f.write_text("x")
    (tmp_path / "d.zip").mkdir()
    bad_ck = tmp_path / "photo.pt"
    bad_ck.write_bytes(PHOTO)
    not_npy = tmp_path / "photo.npy"
    not_npy.write_bytes(PHOTO)
    # the output is checked first: these would otherwise fail on the bad checkpoint / data / images
    code, err = gan(["train", "--data", not_npy, "--preset", "tiny", "--out", f / "sub", "--device", "cpu"], capsys)
    one_line_error(code, err, "--out", "is a file, not a folder")
    for out, extra in ((f / "sub", []), (f, ["--zip"]), (tmp_path / "d.zip", ["--zip"])):
        code, err = gan(["generate", "-c", bad_ck, "--n", 2, "-o", out, *extra, "--device", "cpu"], capsys)
        one_line_error(code, err, "-o")
        assert "is a file, not a folder" in err or "is a folder" in err
    gen = tmp_path / "gen"
    gen.mkdir()
    (gen / "0.png").write_bytes(PHOTO)                                    # unreadable
    code, err = gan(["fid", "-g", gen, "-r", gen, "--weightless", "-o", f / "x.json"], capsys)
    one_line_error(code, err, "-o", "is a file, not a folder")
    assert list(tmp_path.iterdir()) and not list((tmp_path / "d.zip").iterdir())


# ----------------------------------------------------------------------- 3. bad weights and checkpoints

def test_a_photo_or_random_bytes_as_checkpoint_or_weights_is_one_line(tmp_path, capsys, tiny_run):
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(PHOTO)
    rnd = tmp_path / "rnd.pt"
    rnd.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    for bad in (photo, rnd):
        code, err = gan(["generate", "-c", bad, "--n", 2, "-o", tmp_path / "g", "--device", "cpu"], capsys)
        one_line_error(code, err, "not a PyTorch checkpoint file")
        if importlib.util.find_spec("torch_fidelity") is None:
            continue
        code, err = gan(["fid", "-g", tmp_path, "-r", tmp_path, "--inception-weights", bad, "--device", "cpu"],
                        capsys)
        one_line_error(code, err, "--inception-weights", "not a PyTorch weights file")
    assert not (tmp_path / "g").exists()


def test_fid_every_checks_the_inception_weights_before_training(tmp_path, pack, capsys):
    pytest.importorskip("torch_fidelity")
    rnd = tmp_path / "rnd.pt"
    rnd.write_bytes(np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    code, err = gan(["train", "--data", pack, "--preset", "tiny", "--steps", 4, "--fid-every", 2,
                     "--inception-weights", rnd, "--out", tmp_path / "runs", "--device", "cpu", "--no-progress"],
                    capsys)
    one_line_error(code, err, "not a PyTorch weights file")
    assert not (tmp_path / "runs").exists()                      # no run dir: nothing trained, nothing lost


# ----------------------------------------------------------------------- 4. divergence, non-finite options

def test_divergence_is_one_line_and_keeps_the_last_good_checkpoint(tmp_path, pack, capsys):
    from gan.train import train

    # lr 1.5e5: the first steps are still finite here, then not; a checkpoint is due after every step
    cfg = PRESETS["tiny"].replace(steps=30, lr_g=1.5e5, lr_d=1.5e5, ckpt_every=1, log_every=100, sample_every=0)
    with pytest.raises(UserError, match=r"training diverged at step \d+ ") as e:
        train(cfg, data=pack, out=tmp_path / "runs", device="cpu", progress=False)
    at = int(re.search(r"at step (\d+) ", str(e.value)).group(1))
    run = tmp_path / "runs" / "00000-tiny"
    if not (run / "checkpoint.pt").exists():                    # other numerics: diverged within step 1
        assert at == 1 and "no checkpoint had been saved yet" in str(e.value)
        return
    ck = load_checkpoint(run)
    assert 1 <= ck["step"] < at
    for part in ("G", "D"):                                     # the NaN state was not saved over it
        assert all(torch.isfinite(v).all() for k, v in ck[part].items() if "running_" not in k)
    code, err = gan(["train", "--data", pack, "--preset", "tiny", "--steps", 30, "--lr", "1e6", "--log-every", 1,
                     "--out", tmp_path / "cli", "--device", "cpu", "--no-progress"], capsys)
    one_line_error(code, err, "training diverged", "--resume")


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0"])
def test_non_finite_lr_is_refused_before_a_run_dir_exists(tmp_path, pack, capsys, value):
    code, err = gan(["train", "--data", pack, "--preset", "tiny", "--lr", value, "--out", tmp_path / "runs",
                     "--device", "cpu"], capsys)
    one_line_error(code, err, "--lr")
    assert not (tmp_path / "runs").exists()
    with pytest.raises(UserError, match=r"lr_g=nan \(must be a finite number > 0\)"):
        PRESETS["tiny"].replace(lr_g=float("nan"))
    with pytest.raises(UserError, match=r"ema_kimg=inf"):
        PRESETS["tiny"].replace(ema_kimg=float("inf"))


def test_size_must_be_a_power_of_two_and_says_so(capsys):
    with pytest.raises(UserError, match=r"size=48 \(must be a power of two >= 16\)"):
        TrainConfig(size=48)
    from gan.cli import main

    try:
        main(["train", "--help"])
    except SystemExit:
        pass
    assert "a power of two >= 16" in " ".join(capsys.readouterr().out.split())


# ----------------------------------------------------------------------- 5. too few images for C2ST

def test_too_few_images_for_the_metrics_are_refused_up_front(tmp_path, capsys):
    from PIL import Image

    def folder(name, n):
        p = tmp_path / name
        p.mkdir()
        for i, a in enumerate(np.random.default_rng(n).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)):
            Image.fromarray(a).save(p / f"{i:05d}.png")
        return p

    g3, r20 = folder("g3", 3), folder("r20", 20)
    code, err = gan(["fid", "-g", g3, "-r", r20, "--weightless", "--no-progress"], capsys)
    one_line_error(code, err, "--generated", "3 image(s), but c2st needs at least 4")
    code, err = gan(["fid", "-g", r20, "-r", g3, "--weightless", "--no-progress"], capsys)
    one_line_error(code, err, "--real", "c2st needs at least 4")
    code, err = gan(["fid", "-g", r20, "-r", g3, "--metrics", "memorisation", "--no-progress"], capsys)
    assert code == 0, err                                        # memorisation alone works with 3


def test_fid_n_and_the_real_image_count_are_checked_before_training(tmp_path, capsys):
    one = make_pack(tmp_path / "one.npy", n=1)
    code, err = gan(["train", "--data", one, "--preset", "tiny", "--fid-n", 2, "--out", tmp_path / "runs"], capsys)
    one_line_error(code, err, "--fid-n")
    code, err = gan(["train", "--data", one, "--preset", "tiny", "--steps", 2, "--fid-every", 2, "--out",
                     tmp_path / "runs", "--device", "cpu", "--no-progress"], capsys)
    one_line_error(code, err, "--fid-every", "1 image(s)", "needs at least")
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())


def test_fid_on_a_one_sample_manifest_names_the_metric_asked_for(tmp_path, capsys):
    pytest.importorskip("pyarrow")
    from PIL import Image

    from tests.test_preprocess import build_manifest

    mp = build_manifest(tmp_path, 1)
    gen = tmp_path / "gen"
    gen.mkdir()
    for i in range(4):
        Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)).save(gen / f"{i}.png")
    code, err = gan(["fid", "-g", gen, "--manifest", mp, "--weightless", "--no-progress"], capsys)
    one_line_error(code, err, "--manifest", "1 image(s), but c2st needs at least 4")
    assert "FID" not in err


# ----------------------------------------------------------------------- 6. images independent of --n

def test_generated_images_do_not_depend_on_n(tmp_path, tiny_run):
    from gan.generate import generate

    def run(name, **kw):
        return _pngs(generate(tiny_run, tmp_path / name, GenerateOptions(device="cpu", **kw), progress=False))

    n10, n70 = run("n10", n=10), run("n70", n=70)                         # 70 spans two chunks of 64
    assert list(n10) == [f"{i:05d}.png" for i in range(10)]
    assert all(n70[k] == v for k, v in n10.items()) and len(n70) == 70
    assert n10["00000.png"] != n10["00001.png"]


# ----------------------------------------------------------------------- 7. an interrupted generate resumes

def test_rerunning_generate_into_its_folder_writes_only_what_is_missing(tmp_path, tiny_run, pack):
    from gan.generate import RECORD, generate
    from gan.train import train

    out = tmp_path / "gen"
    opts = GenerateOptions(n=6, device="cpu")
    generate(tiny_run, out, opts, progress=False)
    full = _pngs(out)
    for name in ("00001.png", "00005.png"):                   # as if Ctrl-C had stopped it before these
        (out / name).unlink()
    kept = (out / "00000.png").stat().st_mtime_ns
    generate(tiny_run, out, opts, progress=False)
    assert _pngs(out) == full and (out / "00000.png").stat().st_mtime_ns == kept
    assert json.loads((out / RECORD).read_text())["seed"] == 0
    with pytest.raises(UserError, match="another checkpoint, --ema or --seed"):
        generate(tiny_run, out, GenerateOptions(n=6, seed=1, device="cpu"), progress=False)
    other = train(PRESETS["tiny"].replace(steps=1, sample_every=0, seed=5), data=pack, out=tmp_path / "runs",
                  device="cpu", progress=False)
    with pytest.raises(UserError, match="another checkpoint"):
        generate(other, out, opts, progress=False)
    with pytest.raises(UserError, match="would not write"):     # fewer than the folder holds: never mixed
        generate(tiny_run, out, GenerateOptions(n=3, device="cpu"), progress=False)
    (out / RECORD).unlink()
    with pytest.raises(UserError, match="no generate.json"):
        generate(tiny_run, out, opts, progress=False)
    assert _pngs(out) == full


# ----------------------------------------------------------------------- 8-10. resume

def test_resume_of_a_run_stopped_before_its_first_checkpoint_starts_from_step_0(tmp_path, pack):
    from gan.train import resume, train

    cfg = PRESETS["tiny"].replace(steps=3, sample_every=0)
    run = train(cfg, data=pack, out=tmp_path / "a", device="cpu", progress=False)
    reference = load_checkpoint(run)
    for p in run.iterdir():                                   # as Ctrl-C during start-up leaves it
        if p.name != "config.json":
            p.unlink()
    resume(run, device="cpu", progress=False)
    again = load_checkpoint(run)
    assert again["step"] == 3
    assert all(torch.equal(again["G"][k], v) for k, v in reference["G"].items())
    assert json.loads((run / "config.json").read_text())["resumed"][-1]["step"] == 0


def test_kimg_counts_images_across_resumes_with_another_batch(tmp_path, pack):
    from gan.train import resume, train

    run = train(PRESETS["tiny"].replace(steps=4, log_every=2, sample_every=0), data=pack, out=tmp_path,
                device="cpu", progress=False)
    assert load_checkpoint(run)["images"] == 32
    resume(run, overrides={"steps": 6, "batch": 16}, device="cpu", progress=False)
    recs = {r["step"]: r["kimg"] for r in map(json.loads, (run / "stats.jsonl").read_text().splitlines())}
    assert recs == {2: 0.016, 4: 0.032, 6: 0.064}               # 4 x 8 + 2 x 16 images, not 6 x 16
    ck = load_checkpoint(run)
    assert ck["images"] == 64
    del ck["images"]                                             # a checkpoint from before the count: step x batch
    torch.save(ck, run / "checkpoint.pt")
    resume(run, overrides={"steps": 8}, device="cpu", progress=False)
    recs = {r["step"]: r["kimg"] for r in map(json.loads, (run / "stats.jsonl").read_text().splitlines())}
    assert recs[8] == pytest.approx((6 * 16 + 2 * 16) / 1000)


def test_resume_applies_a_new_learning_rate(tmp_path, pack):
    """Loading the optimisers' state would bring back the checkpoint's lr: the resumed config's wins."""
    from gan.train import resume, train

    run = train(PRESETS["tiny"].replace(steps=2, sample_every=0), data=pack, out=tmp_path, device="cpu", progress=False)
    resume(run, overrides={"steps": 3, "lr_g": 1e-5, "lr_d": 2e-5, "beta1": 0.0}, device="cpu", progress=False)
    ck = load_checkpoint(run)
    assert [g["lr"] for g in ck["opt_g"]["param_groups"]] == [1e-5]
    assert [g["lr"] for g in ck["opt_d"]["param_groups"]] == [2e-5]
    assert tuple(ck["opt_g"]["param_groups"][0]["betas"]) == (0.0, PRESETS["tiny"].beta2)


def test_a_damaged_config_without_checkpoint_is_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    for text, says in (("[1, 2]", "a JSON object is expected"), ('{"name": "x"}', "names no data or manifest")):
        (run / "config.json").write_text(text)
        code, err = gan(["train", "--resume", run, "--device", "cpu"], capsys)
        one_line_error(code, err, says)


def test_resume_refuses_preset_and_out(tmp_path, tiny_run, capsys):
    before = (tiny_run / "config.json").read_bytes()
    for extra in (["--preset", "cpu"], ["--out", tmp_path / "elsewhere"]):
        code, err = gan(["train", "--resume", tiny_run, *extra, "--steps", 5, "--device", "cpu"], capsys)
        one_line_error(code, err, extra[0], "cannot be used with --resume")
    assert (tiny_run / "config.json").read_bytes() == before and not (tmp_path / "elsewhere").exists()


# ----------------------------------------------------------------------- 11. messages

def test_messages_name_what_is_wrong(tmp_path, capsys):
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(PHOTO)
    code, err = gan(["train", "--data", photo, "--preset", "tiny", "--out", tmp_path / "runs"], capsys)
    one_line_error(code, err, "not a .npy pack")
    assert "pickle" not in err
    code, err = gan(["fid", "-g", tmp_path, "-r", photo, "--weightless", "--no-progress"], capsys)
    one_line_error(code, err, "--real", "must be a folder of images, a .zip or a uint8 (N, H, W, 3) .npy")
    code, err = gan(["fid", "-g", photo, "-r", tmp_path, "--weightless", "--no-progress"], capsys)
    one_line_error(code, err, "--generated", "must be a folder of images or a .zip")
    code, err = gan(["train", "--data", photo, "--preset", "tiny", "--size", 48], capsys)
    one_line_error(code, err, "size=48 (must be a power of two >= 16)")


def test_zip_output_still_works_after_the_checks(tmp_path, tiny_run):
    from gan.generate import generate

    z = generate(tiny_run, tmp_path / "sub.zip", GenerateOptions(n=3, device="cpu", zip=True), progress=False)
    loose = _pngs(generate(tiny_run, tmp_path / "loose", GenerateOptions(n=3, device="cpu"), progress=False))
    with zipfile.ZipFile(z) as zf:
        assert {n: zf.read(n) for n in zf.namelist()} == loose


class _RunsCode:
    """Unpickling this would create a file: a stand-in for a checkpoint that runs code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_checkpoint_that_would_run_code_is_refused_and_says_why(tmp_path, capsys):
    import torch

    marker = tmp_path / "ran"
    bad = tmp_path / "evil.pt"
    torch.save({"format": 1, "G": _RunsCode(marker)}, bad)
    code, err = gan(["generate", "-c", bad, "--n", 2, "-o", tmp_path / "g", "--device", "cpu"], capsys)
    one_line_error(code, err, "refused", "could run code", "nothing from it was run")
    assert not marker.exists()              # nothing ran
    assert not (tmp_path / "g").exists()
