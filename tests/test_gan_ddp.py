"""Data-parallel training under torchrun: 2 CPU processes with the gloo backend."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_two_process_gloo_ddp_trains(tmp_path):
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    rng = np.random.default_rng(0)
    np.save(tmp_path / "pack.npy", rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "gan.train_cli", "--data", str(tmp_path / "pack.npy"), "--preset", "tiny", "--steps", "4",
           "--log-every", "2", "--sample-every", "4", "--out", str(tmp_path / "runs"), "--device", "cpu",
           "--no-progress"]
    r = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    runs = sorted((tmp_path / "runs").iterdir())
    assert [p.name for p in runs] == ["00000-tiny"]                      # rank 0 alone made the run dir
    run = runs[0]
    conf = json.loads((run / "config.json").read_text())
    assert conf["world_size"] == 2 and conf["batch"] == 8
    recs = [json.loads(x) for x in (run / "stats.jsonl").read_text().splitlines()]
    assert [x["step"] for x in recs] == [2, 4]                             # one writer, no duplicates
    assert all(np.isfinite([x["loss_d"], x["loss_g"]]).all() for x in recs)
    ck = torch.load(run / "checkpoint.pt", weights_only=True)
    assert ck["step"] == 4 and ck["world_size"] == 2
    assert (run / "samples-0000004.png").exists()
    # each rank saw its own half of every global batch: 4 steps x 8 images = 32 draws (sampler position)
    assert ck["random"]["sampler"]["epoch"] * 20 + ck["random"]["sampler"]["pos"] == 32
