"""Training options and edges: --fid-every, training from a manifest, CUDA graphs, Ctrl-C, resume refusals, generate's output folder, the Python API."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from gan.checkpoint import load_checkpoint  # noqa: E402
from gan.config import PRESETS, TrainConfig, UserError  # noqa: E402
from gan.data import StepRandom  # noqa: E402
from gan.rundir import create_run_dir  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}

from tests.test_gan_train import _cli, _one_thread, _same_state_as_reference, pack  # noqa: F401  (fixtures and helpers shared with test_gan_train.py)


def test_fid_every_reports_metrics_or_the_weightless_fallback(pack, tmp_path, caplog):
    pytest.importorskip("gan.metrics", reason="gan.metrics is not written yet")
    from gan.train import train

    cfg = PRESETS["tiny"].replace(steps=4, fid_every=4, fid_n=24, sample_every=0)
    run = train(cfg, data=pack, out=tmp_path, device="cpu", progress=False)
    recs = [json.loads(x) for x in (run / "stats.jsonl").read_text().splitlines()]
    m = [r for r in recs if "metrics" in r]
    assert len(m) == 1 and m[0]["step"] == 4
    vals = m[0]["metrics"]
    if m[0].get("fid_unavailable"):          # offline without Inception weights: the weightless metrics
        assert "c2st_acc" in vals and 0 <= vals["c2st_acc"] <= 1
    else:
        assert np.isfinite(vals["fid"])


def test_manifest_training_builds_the_pack_first(tmp_path):
    pytest.importorskip("pyarrow")
    scan = pytest.importorskip("curate.scan", reason="curate.scan is needed to make a manifest")
    pytest.importorskip("preprocess.pack", reason="preprocess.pack is not written yet")
    from PIL import Image

    from gan.train import train

    root = tmp_path / "photos"
    root.mkdir()
    rng = np.random.default_rng(1)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(root / f"bike{i}.jpg")
    manifest = tmp_path / "work" / "m.parquet"
    manifest.parent.mkdir()
    scan.scan_folder(root, manifest, workers=1, progress=False)
    run = train(PRESETS["tiny"].replace(steps=2, sample_every=0), manifest=manifest, out=tmp_path / "runs",
                device="cpu", progress=False)
    conf = json.loads((run / "config.json").read_text())
    assert conf["manifest"] == str(manifest) and conf["data"].endswith(".npy")
    packed = np.load(conf["data"])
    assert packed.shape == (6, 32, 32, 3)
    assert load_checkpoint(run)["data"]["n"] == 6


@pytest.mark.gpu
def test_cuda_graph_bf16_channels_last_step_trains_and_matches_eager(pack, tmp_path):
    from gan.train import train

    base = PRESETS["tiny"].replace(steps=8, sample_every=0, log_every=4)
    eager = train(base, data=pack, out=tmp_path / "eager", device="cuda", progress=False)
    graph = train(base.replace(cuda_graph=True), data=pack, out=tmp_path / "graph", device="cuda", progress=False)
    a, b = load_checkpoint(eager), load_checkpoint(graph)
    for k, v in a["G"].items():                                  # same computation, replayed from one graph
        assert torch.allclose(v.float(), b["G"][k].float(), atol=1e-3, rtol=1e-3), k
    fast = train(base.replace(cuda_graph=True, precision="bf16", channels_last=True, ema=True,
                              diffaug="color,translation,cutout", spectral_norm=True),
                 data=pack, out=tmp_path / "fast", device="cuda", progress=False)
    recs = [json.loads(x) for x in (fast / "stats.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs] == [4, 8] and all(np.isfinite(r["loss_d"]) for r in recs)
    from gan.train import resume

    resume(fast, overrides={"steps": 12}, device="cuda", progress=False)
    assert load_checkpoint(fast)["step"] == 12


def test_generate_refuses_a_folder_with_other_pngs(pack, tmp_path):
    from gan.config import GenerateOptions
    from gan.generate import generate
    from gan.train import train

    run = train(PRESETS["tiny"].replace(steps=1), data=pack, out=tmp_path / "runs", device="cpu",
                progress=False)
    out = tmp_path / "gen"
    generate(run / "checkpoint.pt", out, GenerateOptions(n=3, device="cpu"), progress=False)
    assert len(list(out.glob("*.png"))) == 3
    with pytest.raises(UserError, match="would not write"):
        generate(run / "checkpoint.pt", out, GenerateOptions(n=2, device="cpu"), progress=False)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "holiday.png").write_bytes(b"")
    with pytest.raises(UserError, match="already holds 1 PNG"):
        generate(run / "checkpoint.pt", mine, GenerateOptions(n=2, device="cpu"), progress=False)


@pytest.mark.slow
def test_ctrl_c_saves_the_last_whole_step_and_resume_is_exact(pack, tmp_path):
    common = ["--data", pack, "--preset", "tiny", "--sample-every", "0", "--ckpt-every", "0",
              "--log-every", "1", "--device", "cpu", "--no-progress"]
    proc = subprocess.Popen([sys.executable, "-m", "gan.train_cli", *map(str, common), "--steps", "100000",
                             "--out", tmp_path / "stopped"], env=ENV, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 180
        while not any(len(p.read_text().splitlines()) >= 3 for p in (tmp_path / "stopped").glob("*/stats.jsonl")):
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "no progress within 180 s"
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
    finally:
        proc.kill()
        proc.wait()
    run = next((tmp_path / "stopped").glob("*-tiny"))
    s = load_checkpoint(run / "checkpoint.pt")["step"]
    assert s >= 3
    r = _cli("--resume", run, "--steps", s + 3, "--device", "cpu", "--no-progress")
    assert r.returncode == 0, r.stderr[-2000:]
    r = _cli(*common, "--steps", s + 3, "--out", tmp_path / "reference")
    assert r.returncode == 0, r.stderr[-2000:]
    _same_state_as_reference(run, tmp_path / "reference")


def test_resume_refuses_shape_changes_and_going_back_before_touching_the_run(pack, tmp_path):
    from gan.train import resume, train

    run = train(PRESETS["tiny"].replace(steps=2), data=pack, out=tmp_path / "runs", device="cpu",
                progress=False)
    before = (run / "config.json").read_bytes(), (run / "stats.jsonl").read_bytes()
    with pytest.raises(UserError, match="spectral_norm cannot change"):
        resume(run, overrides={"spectral_norm": True}, device="cpu", progress=False)
    with pytest.raises(UserError, match="already at step 2"):
        resume(run, overrides={"steps": 1}, device="cpu", progress=False)
    assert ((run / "config.json").read_bytes(), (run / "stats.jsonl").read_bytes()) == before
    assert json.loads((run / "config.json").read_text())["data"] == str(Path(pack).resolve())


def test_python_api_trains_and_generates_like_the_clis(pack, tmp_path):
    """`gan.api.train` / `generate`: the functions the CLIs call, with the presets and options they use."""
    import gan.api as ga

    run = ga.train(data=pack, preset="tiny", steps=2, out=tmp_path / "runs", device="cpu", progress=False,
                   sample_every=0)
    assert run == tmp_path / "runs" / "00000-tiny"
    conf = json.loads((run / "config.json").read_text())
    assert conf["steps"] == 2 and conf["name"] == "tiny"
    out = ga.generate(run / "checkpoint.pt", tmp_path / "png", n=3, device="cpu", progress=False)
    assert len(list(Path(out).glob("*.png"))) == 3
    with pytest.raises(TypeError, match="not both"):
        ga.generate(run / "checkpoint.pt", tmp_path / "png2", ga.GenerateOptions(), n=3)
