"""Processes for per-file work: how they start, how many, a worker that ends with its parent, and
`map_chunks` with a progress bar (the curate stages use it through `curate.row_stage`, the
preprocess packer directly)."""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

from tqdm.auto import tqdm

from common.errors import UserError

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")


def start_method() -> str:
    """How worker processes start: `fork` on Linux, else `spawn`; $MOTOCURATE_START_METHOD overrides.

    `spawn` and `forkserver` re-import the parent's main module in every worker; for
    the `curate` script that pulls in pandas and pyarrow (seconds per worker), while
    the workers themselves need only Pillow and numpy. Forking is safe here because
    the worker functions touch no library that keeps threads (no pyarrow, no BLAS).
    """
    env = os.environ.get("MOTOCURATE_START_METHOD")
    if env:
        return env
    return "fork" if sys.platform.startswith("linux") else "spawn"


def default_workers() -> int:
    """Cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def resolve_workers(workers: int | None) -> int:
    if workers is None:
        return default_workers()
    if workers < 1:
        from common.errors import UserError

        raise UserError(f"--workers must be at least 1 (got {workers})")
    return workers


def exit_with_parent(parent_pid: int, poll_s: float = 0.5) -> None:
    """Worker initializer: end this worker when its parent is gone (e.g. SIGKILLed).

    A forked worker holds both ends of its task pipe, so it would otherwise wait for
    work forever once the parent is killed.
    """
    def watch():
        while os.getppid() == parent_pid:
            time.sleep(poll_s)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def map_chunks(fn: Callable[[list[T]], list[R]], items: Sequence[T], *, workers: int,
               chunk_size: int = 16, progress: bool = True, desc: str = "", unit: str = "file"
               ) -> Iterator[list[R]]:
    """Yield `fn(chunk)` for consecutive chunks of `items`, in completion order.

    `fn` must be picklable (a module-level function or a `functools.partial` of one).
    With `workers == 1` everything runs in this process (no start-up cost); see
    `start_method` for how worker processes start.
    """
    chunks = [list(items[i:i + chunk_size]) for i in range(0, len(items), chunk_size)]
    bar = tqdm(total=len(items), desc=desc, unit=unit, disable=not progress or not items,
               dynamic_ncols=True)
    try:
        if workers <= 1 or len(chunks) <= 1:
            for chunk in chunks:
                out = fn(chunk)
                bar.update(len(chunk))
                yield out
            return
        with ProcessPoolExecutor(max_workers=min(workers, len(chunks)),
                                 mp_context=mp.get_context(start_method()),
                                 initializer=exit_with_parent, initargs=(os.getpid(),)) as pool:
            pending = {}
            todo = iter(chunks)
            limit = 4 * workers  # keep the queue short so an interrupt loses little
            try:
                for chunk in todo:
                    pending[pool.submit(fn, chunk)] = len(chunk)
                    if len(pending) >= limit:
                        break
                while pending:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in done:
                        n = pending.pop(fut)
                        try:
                            out = fut.result()
                        except BrokenProcessPool as exc:
                            raise UserError(f"{desc or 'a stage'}: a worker process died (killed, or out of "
                                            "memory: try fewer --workers); run the command again, finished "
                                            "work is kept") from exc
                        bar.update(n)
                        yield out
                        nxt = next(todo, None)
                        if nxt is not None:
                            pending[pool.submit(fn, nxt)] = len(nxt)
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
    finally:
        bar.close()
