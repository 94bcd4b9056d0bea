"""One numbered directory per run, never reused: `runs/00007-<name>/`.

It holds `config.json` (written before training starts), `stats.jsonl` (one JSON record per log
step and per metric evaluation), `samples-<step>.png` grids from fixed noise, `loss.png`, and
`checkpoint.pt`.
"""
from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path

import numpy as np

from common.atomic import atomic_path, write_bytes_atomic

log = logging.getLogger(__name__)
_RUN_RE = re.compile(r"^(\d{5,})-")


def create_run_dir(out: Path, name: str) -> Path:
    """Make `out/<NNNNN>-<name>` with a number above every existing run's; never reuses a folder."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9_.+-]+", "-", name).strip("-.") or "run"
    taken = [int(m.group(1)) for p in out.iterdir() if (m := _RUN_RE.match(p.name))]
    n = max(taken, default=-1) + 1
    while True:
        run = out / f"{n:05d}-{safe}"
        try:
            run.mkdir()            # exclusive: a concurrent run that took this number makes us move on
            return run
        except FileExistsError:
            n += 1


def write_json(path: Path, obj) -> None:
    write_bytes_atomic(Path(path), (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


class Stats:
    """Append-only JSON lines; on resume the records after the checkpoint's step are dropped."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def append(self, record: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, sort_keys=True) + "\n")

    def read(self) -> list[dict]:
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:     # a line cut short by a kill: skip it
                log.warning("%s: skipping a truncated line", self.path)
        return out

    def truncate_after(self, step: int) -> None:
        kept = [r for r in self.read() if r.get("step", 0) <= step]
        write_bytes_atomic(self.path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in kept).encode())


def image_grid(images: np.ndarray, nrow: int | None = None, pad: int = 2) -> np.ndarray:
    """(N, H, W, 3) uint8 -> one (rows*(H+pad)+pad, cols*(W+pad)+pad, 3) uint8 contact sheet."""
    n, h, w, c = images.shape
    cols = nrow or max(1, int(math.ceil(math.sqrt(n))))
    rows = int(math.ceil(n / cols))
    grid = np.zeros((rows * (h + pad) + pad, cols * (w + pad) + pad, c), dtype=np.uint8)
    for i, img in enumerate(images):
        r, q = divmod(i, cols)
        grid[pad + r * (h + pad): pad + r * (h + pad) + h, pad + q * (w + pad): pad + q * (w + pad) + w] = img
    return grid


def save_png(path: Path, array: np.ndarray) -> None:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    write_bytes_atomic(Path(path), buf.getvalue())


def plot_losses(stats_path: Path, png_path: Path) -> bool:
    """Plot loss_d/loss_g against step; returns False (and logs) when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.info("matplotlib is not installed: no loss plot")
        return False
    recs = [r for r in Stats(stats_path).read() if "loss_d" in r]
    if not recs:
        return False
    fig, ax = plt.subplots(figsize=(8, 4), dpi=100)
    steps = [r["step"] for r in recs]
    ax.plot(steps, [r["loss_d"] for r in recs], label="D loss", lw=1)
    ax.plot(steps, [r["loss_g"] for r in recs], label="G loss", lw=1)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    try:
        with atomic_path(png_path, suffix=".png") as tmp:
            fig.savefig(tmp)
    finally:
        plt.close(fig)
    return True
