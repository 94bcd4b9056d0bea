"""Images from a generator: N RGB PNGs from a checkpoint (the EMA generator when it has one).

The generators use BatchNorm; like the blog's notebook (and the training loop's sample grids) we
sample with batch statistics (train-mode BatchNorm) and leave the module's running statistics
untouched. Each image therefore depends on the others in its forward pass, so the generator always
runs on chunks of `CHUNK` = 64 noise vectors (the blog's and the seed preset's batch), drawn in order
from one stream seeded by `--seed`: image i is row i % 64 of chunk i // 64. The images do not depend
on how many are asked for: `--n 10` gives the first 10 images of `--n 10000` (a last partial chunk still
runs on 64 vectors).

A folder of PNGs gets `generate.json`, recording what made them (the sha256 of the generator's
weights, the seed, the chunk size, the file-name width). Running the same command again, after a
Ctrl-C say, writes only the missing PNGs; a folder holding PNGs made otherwise is refused.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import zipfile
from pathlib import Path

import torch

from common.atomic import atomic_path, write_bytes_atomic, write_text_atomic
from common.outpaths import check_out_dir, check_out_file

from common.devices import gan_device

from .checkpoint import load_checkpoint
from .config import GenerateOptions, TrainConfig, UserError
from .models import Generator
from .sampling import CHUNK, noise_chunks, sample, weights_sha256

log = logging.getLogger(__name__)

RECORD = "generate.json"    # what made the PNGs of an output folder


def load_generator(checkpoint: Path, device: torch.device | str = "cpu", ema: bool = True) -> tuple[Generator, TrainConfig]:
    """The (EMA, when present and `ema`) generator of a checkpoint, and the run's config."""
    ck = load_checkpoint(checkpoint)
    cfg = TrainConfig.from_dict(ck["config"])
    G = Generator(cfg.nz, cfg.size, cfg.g_channels)
    use_ema = ema and ck.get("G_ema") is not None
    G.load_state_dict(ck["G_ema"] if use_ema else ck["G"])
    G.from_ema = use_ema                      # what was loaded (recorded beside generated images)
    log.info("loaded the %s generator of %s (step %d)", "EMA" if use_ema else "raw", checkpoint, ck["step"])
    return G.to(device), cfg


def _missing(out: Path, identity: dict, names: list[str]) -> set[int]:
    """Which images the folder `out` still lacks; refuses a folder holding PNGs made otherwise."""
    pngs = {p.name for p in out.glob("*.png")} if out.is_dir() else set()
    if not pngs:
        return set(range(len(names)))
    try:
        before = json.loads((out / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        before = None
    if not isinstance(before, dict) or any(before.get(k) != v for k, v in identity.items()):
        differs = [k for k, v in identity.items() if isinstance(before, dict) and before.get(k) != v]
        how = (f"by something else (no {RECORD})" if not isinstance(before, dict)
               else "with file names of another width (--n crossed a power of ten)" if differs == ["width"]
               else "with another checkpoint, --ema or --seed")
        raise UserError(f"-o {out}: already holds {len(pngs)} PNG(s) made {how}; choose a new folder (or --zip)")
    extra = sorted(pngs - set(names))
    if extra:  # never mix in images FID would read but --n did not ask for
        raise UserError(f"-o {out}: holds {len(extra)} PNG(s) that --n {len(names)} would not write "
                        f"(e.g. {extra[0]}); choose a new folder, or the earlier --n")
    todo = {i for i, name in enumerate(names) if name not in pngs}
    log.info("%s: %d of %d PNGs are there already; writing the other %d", out, len(names) - len(todo),
             len(names), len(todo))
    return todo


def generate(checkpoint: Path, out: Path, opts: GenerateOptions = GenerateOptions(), *, progress: bool = True) -> Path:
    """Write `opts.n` RGB PNGs (`00000.png`, ...) into the folder `out`, or into `out` as a zip
    when `opts.zip` (out then names the .zip file when it ends in .zip, else the folder for
    `images.zip`). Into a folder, a rerun of the same command writes only the missing PNGs."""
    from tqdm import tqdm

    if opts.n < 1:
        raise UserError(f"--n must be >= 1 (got {opts.n})")
    out = Path(out)
    zpath = (out if out.suffix == ".zip" else out / "images.zip") if opts.zip else None
    if zpath is not None:  # checked before any work
        check_out_file(zpath, "-o")
        for stale in zpath.parent.glob(f".{zpath.name}.*.tmp"):   # left by a killed run
            stale.unlink(missing_ok=True)
    else:
        check_out_dir(out, "-o")
    device = gan_device(opts.device)
    G, cfg = load_generator(checkpoint, device, opts.ema)
    from PIL import Image

    width = max(5, len(str(opts.n - 1)))
    names = [f"{i:0{width}d}.png" for i in range(opts.n)]
    with contextlib.ExitStack() as stack:
        if zpath is not None:
            todo = set(range(opts.n))
            tmp = stack.enter_context(atomic_path(zpath))
            sink = stack.enter_context(zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED))
        else:
            identity = {"format": 1, "generator_sha256": weights_sha256(G), "seed": opts.seed, "chunk": CHUNK,
                        "size": cfg.size, "width": width}
            todo = _missing(out, identity, names)
            out.mkdir(parents=True, exist_ok=True)
            write_text_atomic(out / RECORD, json.dumps({**identity, "checkpoint": str(Path(checkpoint).resolve()),
                                                        "ema": G.from_ema, "n": opts.n}, indent=2) + "\n")
        chunks = noise_chunks(cfg.nz, opts.seed)
        with tqdm(total=opts.n, initial=opts.n - len(todo), unit="img", disable=not progress, desc="generate") as bar:
            for start in range(0, opts.n, CHUNK):
                z = next(chunks)                     # drawn for every chunk: the stream stays in step
                wanted = [i for i in range(start, min(start + CHUNK, opts.n)) if i in todo]
                if not wanted:
                    continue
                imgs = sample(G, z)
                for i in wanted:
                    buf = io.BytesIO()
                    Image.fromarray(imgs[i - start], "RGB").save(buf, format="PNG")
                    if zpath is not None:
                        sink.writestr(names[i], buf.getvalue())
                    else:
                        write_bytes_atomic(out / names[i], buf.getvalue())
                bar.update(len(wanted))
    return zpath if zpath is not None else out
