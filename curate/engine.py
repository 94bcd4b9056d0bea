"""Where the per-row work of a stage runs: `local` (this machine's process pool, the default) or
`ray` (Ray Data tasks on a local Ray instance or a cluster, `--engine ray --address HOST:PORT`).

The engine only maps a stage's chunk function over its row jobs; everything else (the journal,
resume, the manifest write, grouping and filtering) stays on this process, the driver, so both
engines give the same manifest. The choice is set for a block with `using(...)` (the CLIs and
`curate run` do that) and read by `curate.row_stage.pooled`.
"""
from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from common.errors import UserError

ENGINES = ("local", "ray")


@dataclass(frozen=True)
class Engine:
    name: str = "local"
    address: str | None = None      # ray: "auto", "HOST:PORT", or None for a new local instance

    def describe(self) -> dict:
        return {"engine": self.name, **({"ray_address": self.address} if self.name == "ray" else {})}


_current: contextvars.ContextVar[Engine] = contextvars.ContextVar("engine", default=Engine())


def current() -> Engine:
    return _current.get()


def check(name: str, address: str | None) -> Engine:
    if name not in ENGINES:
        raise UserError(f"--engine {name}: choose from {', '.join(ENGINES)}")
    if address is not None and name != "ray":
        raise UserError("--address goes with --engine ray")
    if name == "ray":
        from .ray_engine import require_ray

        require_ray()
    return Engine(name, address)


@contextmanager
def using(name: str = "local", address: str | None = None):
    """Run the per-row work of the stages called in this block on `name`."""
    token = _current.set(check(name, address))
    try:
        yield current()
    finally:
        _current.reset(token)


def map_chunks(fn: Callable[[list], list], items: Sequence, *, workers: int, chunk_size: int = 16,
               progress: bool = True, desc: str = "", unit: str = "file", actors: bool = False) -> Iterator[list]:
    """`fn(chunk)` for consecutive chunks of `items` on the current engine, in completion order.
    `actors`: on Ray, a pool of long-lived actors runs `fn` (for work that holds a model), with a GPU
    each where the cluster has GPUs; the local pool ignores it."""
    engine = current()
    if engine.name == "ray":
        from .ray_engine import ray_map_chunks

        return ray_map_chunks(fn, items, address=engine.address, workers=workers, chunk_size=chunk_size,
                              progress=progress, desc=desc, unit=unit, actors=actors)
    from common import pool

    return pool.map_chunks(fn, items, workers=workers, chunk_size=chunk_size, progress=progress,
                           desc=desc, unit=unit)


def engine_options(fn):
    """Click options `--engine` and `--address` for a command; its body runs `using` them."""
    import functools

    import click

    @click.option("--engine", "engine_name", type=click.Choice(ENGINES), default="local", show_default=True,
                  help="Where the per-file work runs: this machine's processes, or Ray Data (pip install "
                       "'motocurate[ray]').")
    @click.option("--address", default=None, metavar="auto|HOST:PORT",
                  help="--engine ray: the Ray cluster to join (default: start a local instance).")
    @functools.wraps(fn)
    def with_engine(*args, engine_name, address, **kwargs):
        with using(engine_name, address):
            return fn(*args, **kwargs)
    return with_engine
