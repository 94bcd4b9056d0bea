"""Training, generation and metrics from Python (a notebook): the functions the `gan` CLIs call.

    import gan.api as ga
    run = ga.train("work/clean.parquet", preset="cpu", steps=200)     # -> runs/00000-cpu/
    png = ga.generate(run / "checkpoint.pt", "out/", n=100)
    metrics, record = ga.evaluate("out/", manifest="work/clean.parquet", weightless=True)

`gan` needs only torch, torchvision, numpy and pillow (no curate, ultralytics or FiftyOne). The names
are not top-level `gan.train`, `gan.generate`: those are the modules, bound on the package by Python.
"""
from __future__ import annotations

from pathlib import Path

from .config import PRESETS, GenerateOptions, TrainConfig

__all__ = ["train", "generate", "evaluate", "PRESETS", "TrainConfig", "GenerateOptions"]


def train(manifest=None, *, data=None, preset: str = "cpu", config: TrainConfig | None = None, out="runs",
          device: str = "auto", inception_weights=None, progress: bool = True, **overrides) -> Path:
    """`gan train`: a new run in `out/<NNNNN>-<preset>/` on a manifest's kept samples (or a `data`
    pack .npy); `overrides` are `TrainConfig` fields (steps, batch, ema, ...). Returns the run folder."""
    from .config import get_preset
    from .train import train as _train

    cfg = (config or get_preset(preset)).replace(**overrides)
    return _train(cfg, data=None if data is None else Path(data), manifest=None if manifest is None else Path(manifest),
                  out=Path(out), device=device, inception_weights=inception_weights, progress=progress)


def generate(checkpoint, out, opts: GenerateOptions | None = None, *, progress: bool = True, **options) -> Path:
    """`gan generate`: PNGs from a checkpoint (`GenerateOptions`: n, seed, zip, device, ema); returns
    the output folder (or zip)."""
    from .generate import generate as _generate

    if opts is not None and options:
        raise TypeError("give opts=GenerateOptions(...) or keyword options, not both")
    return _generate(Path(checkpoint), Path(out), opts or GenerateOptions(**options), progress=progress)


def evaluate(generated, **options) -> tuple[dict[str, float], dict]:
    """`gan fid`: FID/KID/MiFID (and the weightless metrics) of generated images; see
    `gan.evaluation.evaluate_generated` for the options. Returns (metrics, record)."""
    from .evaluation import evaluate_generated

    return evaluate_generated(generated, **options)
