"""Copies of a detector that detect side by side, one per thread, so a CPU-bound model uses every core.

A LiteRT (TFLite) export under ultralytics runs on `min(8, CPUs - 1)` interpreter threads: one on a
2-core machine, and one interpreter's threads scale poorly (two threads: 1.6x). Two interpreters
of one thread each, each in its own thread (LiteRT releases the GIL while it runs), detect 1.9x as
fast on 2 cores, with the same boxes bit for bit. Each copy is a separately loaded model, as
ultralytics asks for thread-safe inference. PyTorch models already use every core (intra-op
threads) or a GPU, and get no copies.
"""
from __future__ import annotations

import contextlib
import logging
import os
import queue
import sys

log = logging.getLogger(__name__)

MAX_COPIES = 8
COPIED_FORMATS = frozenset({"litert", "tflite"})   # ultralytics 8.4 says litert


def cpus_here() -> int:
    """The CPUs this process may use for a model: a Ray actor's share of its node when it runs in one
    (the node has more), else the CPUs this process may run on."""
    ray = sys.modules.get("ray")          # never imported here: only a process Ray started has it
    if ray is not None:
        try:
            if ray.is_initialized() and ray.get_runtime_context().worker.mode == ray.WORKER_MODE:
                share = ray.get_runtime_context().get_assigned_resources().get("CPU")
                if share:
                    return max(1, int(share))
        except Exception:  # noqa: BLE001 - any Ray internals that differ: fall back to the machine
            pass
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:                # not on Linux
        return max(1, os.cpu_count() or 1)


def copies_wanted(det, copies: int | None = None, cpus: int | None = None) -> tuple[int, int]:
    """(copies, interpreter threads per copy) for `det` on `cpus` cores (default: `cpus_here()`);
    `copies` asks for that many (a model of another format, or on a GPU, gets one)."""
    cpus = max(1, cpus or cpus_here())
    if det.format not in COPIED_FORMATS or det.device != "cpu":
        if copies and copies > 1:
            log.warning("--copies %d ignored: %s (%s on %s) runs as one model", copies, det.name,
                        det.format, det.device)
        return 1, 0
    return share_cpus(cpus, copies)


def share_cpus(cpus: int, copies: int | None = None) -> tuple[int, int]:
    """(copies, threads each): one copy per core up to MAX_COPIES (or `copies`), the cores shared out."""
    n = copies or min(cpus, MAX_COPIES)
    return n, max(1, cpus // n)


class Lender:
    """Objects that must not be used by two threads at once (loaded models), lent one at a time."""

    def __init__(self, items):
        self._free: queue.SimpleQueue = queue.SimpleQueue()
        for item in items:
            self._free.put(item)

    @contextlib.contextmanager
    def lend(self):
        item = self._free.get()
        try:
            yield item
        finally:
            self._free.put(item)


@contextlib.contextmanager
def _litert_threads(threads: int):
    """ultralytics' LiteRT backend reads its thread count from a module constant when it loads;
    yields the count it had (what `det` was loaded with), None where it cannot be told."""
    try:
        from ultralytics.nn.backends import litert
    except ImportError:            # another ultralytics layout: its own thread count, copies still help
        yield None
        return
    before = getattr(litert, "NUM_THREADS", None)
    litert.NUM_THREADS = threads
    try:
        yield before
    finally:
        litert.NUM_THREADS = before


def detector_copies(det, copies: int | None = None, cpus: int | None = None) -> list:
    """Detectors to run side by side: `[det]` alone, or `det` and freshly loaded copies of its
    weights (all new ones when `det` was loaded with another thread count)."""
    from .detector import load_detector

    n, threads = copies_wanted(det, copies, cpus)
    if n == 1:
        return [det]
    with _litert_threads(threads) as before:
        keep = [det] if before == threads else []
        copies = keep + [load_detector(det.path, det.device) for _ in range(n - len(keep))]
    log.info("detect: %d copies of %s side by side, %d interpreter thread(s) each", n, det.name, threads)
    return copies
