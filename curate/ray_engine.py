"""The per-row work of a stage as a Ray Data job: chunks of row jobs mapped by Ray tasks, results
streamed back to the driver (see `curate.engine`).

Each chunk of jobs travels pickled, once, as one row of the dataset; a task runs the stage's own
chunk function on its chunk and returns the pickled results (row results hold
nested, mixed-type values that need not fit an Arrow schema). Ray retries a task whose worker
died, so a killed worker costs a repeat of its chunks, not the run; and the driver journals every
result as it arrives, so a killed driver loses nothing either (`curate.row_stage`).
"""
from __future__ import annotations

import logging
import os
import pickle
import warnings
from collections.abc import Callable, Iterator, Sequence

from common.errors import UserError

log = logging.getLogger(__name__)
INSTALL = "pip install 'motocurate[ray]'"


def require_ray() -> None:
    try:
        import ray  # noqa: F401
        import ray.data  # noqa: F401 (the extra is ray[data])
    except ImportError:
        raise UserError(f"--engine ray needs Ray Data, which is not installed: {INSTALL}") from None


def connect(address: str | None, workers: int) -> None:
    """Join the Ray instance at `address` ("auto", "HOST:PORT"), or start a local one with `workers` CPUs."""
    import ray

    if ray.is_initialized():
        return
    kwargs = dict(include_dashboard=False, log_to_driver=False, configure_logging=True,
                  logging_level=logging.WARNING, ignore_reinit_error=True)
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            # workers import this repository's packages: the driver's sys.path, for a source checkout
            here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
            env = {"env_vars": {"PYTHONPATH": os.pathsep.join(
                p for p in (here, os.environ.get("PYTHONPATH", "")) if p)}}
            ray.init(num_cpus=workers, runtime_env=env, **kwargs)
    except ConnectionError as exc:
        raise UserError(f"--address {address}: no Ray cluster answers there ({exc}); start one with "
                        "`ray start --head`, or leave --address out for a local instance") from None
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False       # ours shows the rows
    ctx.verbose_progress = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)   # no "Starting execution of Dataset ..." per stage


def _run_chunks(batch, *, fn):
    return {"result": [pickle.dumps(fn(pickle.loads(blob))) for blob in batch["jobs"]]}


class ChunkActor:
    """A long-lived Ray Data worker running `fn` on chunk after chunk, so a model `fn` loads stays
    loaded in its process (see `curate.detect_worker`). `fn` comes with each call, not to the
    constructor, so a restarted actor needs nothing from the object store to start."""

    def __call__(self, batch, fn):
        return _run_chunks(batch, fn=fn)


CPUS_PER_ACTOR = 2     # a detector's own threads (LiteRT, torch) use them


def actor_pool() -> dict:
    """map_batches arguments of an actor pool over the cluster: one actor per GPU where there are GPUs,
    else one per CPUS_PER_ACTOR CPUs. Ray Data restarts a dead actor and retries its chunk."""
    import ray
    import ray.data

    res = ray.cluster_resources()
    gpus, cpus = int(res.get("GPU", 0)), float(res.get("CPU", 1))
    if gpus:
        return {"compute": ray.data.ActorPoolStrategy(size=gpus), "num_gpus": 1}
    per = min(CPUS_PER_ACTOR, max(1.0, cpus))
    return {"compute": ray.data.ActorPoolStrategy(size=max(1, int(cpus // per))), "num_cpus": per}


def ray_map_chunks(fn: Callable[[list], list], items: Sequence, *, address: str | None, workers: int,
                   chunk_size: int = 16, progress: bool = True, desc: str = "", unit: str = "file",
                   actors: bool = False) -> Iterator[list]:
    """Like `common.pool.map_chunks`, on Ray Data: yields `fn(chunk)` per chunk as results arrive;
    by Ray tasks, or with `actors` by a pool of actors (`actor_pool`)."""
    from tqdm.auto import tqdm

    if not items:
        return
    connect(address, workers)
    import ray
    import ray.data

    chunks = [pickle.dumps(list(items[i:i + chunk_size])) for i in range(0, len(items), chunk_size)]
    ds = ray.data.from_items([{"jobs": c} for c in chunks], override_num_blocks=min(len(chunks), max(1, 4 * workers)))
    common = dict(batch_size=1, batch_format="numpy", zero_copy_batch=True)
    with warnings.catch_warnings():            # max_retries is passed as a remote arg (deprecated spelling)
        warnings.simplefilter("ignore")
        if actors:
            ds = ds.map_batches(ChunkActor, fn_kwargs={"fn": fn}, **actor_pool(), **common)
        else:
            ds = ds.map_batches(_run_chunks, fn_kwargs={"fn": fn}, **common,
                                max_retries=3)     # a task whose worker died runs again
    bar = tqdm(total=len(items), desc=f"{desc} (ray)", unit=unit, disable=not progress, dynamic_ncols=True)
    try:
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            for blob in batch["result"]:
                out = pickle.loads(blob)
                bar.update(len(out))
                yield out
    finally:
        bar.close()
