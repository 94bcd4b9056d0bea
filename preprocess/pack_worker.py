"""The packer's per-image work: read one file, make it square; over a process pool, in order."""
from __future__ import annotations

import os

import numpy as np

from common.pool import default_workers as pool_workers
from common.pool import exit_with_parent, start_method

from .square import MODES, magnification, to_rgb

PACKED, TOO_SMALL, ERROR, SKIPPED = "packed", "too_small", "error", "skipped"
PREP_STATUSES = (PACKED, TOO_SMALL, ERROR, SKIPPED)
POOL_MIN_TASKS = 32  # fewer images are done in-process: starting workers would take longer


def prepare_one(task: tuple) -> tuple[str, str | None, float | None, np.ndarray | None]:
    """(path, size, mode, fill, resample, max_upscale) -> (prep_status, reason, scale, image or None).

    Runs in worker processes: reads one file, makes it square; never raises for
    a bad file (the reason says what went wrong).
    """
    from PIL import Image

    path, size, mode, fill, resample, max_upscale = task
    unreadable = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)
    try:
        im = Image.open(path)
    except unreadable as exc:
        return ERROR, f"{type(exc).__name__}: {exc}", None, None
    with im:
        try:
            img = to_rgb(im)  # decodes
        except unreadable as exc:
            return ERROR, f"{type(exc).__name__}: {exc}", None, None
        w, h = img.size
        scale = magnification(w, h, size, mode)
        if scale > max_upscale * (1 + 1e-9):
            why = f"{w}x{h} needs {scale:.2f}x to reach {size}px (max_upscale {max_upscale:g})"
            return TOO_SMALL, why, scale, None
        return PACKED, None, scale, MODES[mode](img, size, fill, resample)


def default_workers() -> int:
    """Cores this process may use, at most 16 (packing is I/O bound beyond that)."""
    return min(pool_workers(), 16)


def results(tasks: list[tuple], workers: int, progress: bool):
    """prepare_one over tasks, in order, in `workers` processes, with a progress bar."""
    from tqdm import tqdm

    with tqdm(total=len(tasks), desc="preprocess", unit="img", disable=not progress) as bar:
        if workers <= 1 or len(tasks) < POOL_MIN_TASKS:
            for t in tasks:
                r = prepare_one(t)
                bar.update()        # before the yield: the consumer may not come back for the last one
                yield r
            return
        import multiprocessing as mp

        ctx = mp.get_context(start_method())
        n = min(workers, len(tasks))
        chunk = max(1, min(16, len(tasks) // (n * 8)))
        with ctx.Pool(n, initializer=exit_with_parent, initargs=(os.getpid(),)) as pool:
            for r in pool.imap(prepare_one, tasks, chunksize=chunk):
                bar.update()
                yield r
