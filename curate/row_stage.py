"""The one way a per-row stage runs: a pool over the rows, a progress bar, partial results kept as
they come, resume after a kill, and no temp file left behind by an earlier killed run.

A stage (repair, detect, score, dedupe's hashing) gives a function of a chunk of row jobs and
where to keep what it finds; `run_rows` does the rest:

- every finished chunk is appended to the stage's journal,
  `cache/<stage>/partial-<manifest>-<key>.jsonl` (fsynced; a line cut by a kill is ignored), and
  a rerun with the same key starts from it, so only the missing rows are done again;
- when the stage also `publish`es (repair and detect rewrite the manifest so the next stage, or a
  person, can use what is done), that happens every `every` rows or `seconds` seconds, on an
  interrupt, and once at the end;
- the temp files that a killed atomic write left are removed when the stage takes the work
  folder's lock (`curate.work_lock`, `curate.leftovers`), once per command.

The stage writes the manifest itself once all rows are done and then calls `Journal.remove`.
`scan` is not a row stage (it makes the rows); its checkpoint is the manifest itself, written by
the same `Checkpoint` clock.
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from manifests.paths import cache_dir


class Checkpoint:
    """Says when to write progress: every `every` items or `seconds` seconds, whichever first."""

    def __init__(self, every: int, seconds: float):
        self.every = max(1, every)
        self.seconds = seconds
        self._count = 0
        self._last = time.monotonic()

    def add(self, n: int) -> bool:
        """Count `n` finished items; True when a checkpoint is due (and restart the clocks)."""
        self._count += n
        if self._count >= self.every or time.monotonic() - self._last >= self.seconds:
            self._count = 0
            self._last = time.monotonic()
            return True
        return False


def _plain(v):
    """numpy scalars and arrays as JSON values."""
    if hasattr(v, "tolist"):
        return v.tolist()
    raise TypeError(f"{type(v).__name__} is not JSON serialisable")


class Journal:
    """A stage's partial results, one JSON line per row, keyed by `id_field`."""

    def __init__(self, manifest_path: Path, stage: str, key: str, id_field: str = "sample_id",
                 kind: str = "partial"):
        self.manifest_path = Path(manifest_path)
        self.path = cache_dir(manifest_path, stage) / f"{kind}-{Path(manifest_path).stem}-{key}.jsonl"
        self.id_field = id_field

    def load(self) -> dict[str, dict]:
        done: dict[str, dict] = {}
        if not self.path.exists():
            return done
        with open(self.path, encoding="utf-8") as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    break  # a line cut by the interruption: everything before it is good
                done[rec[self.id_field]] = rec
        return done

    def append(self, recs: list[dict]) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            for r in recs:
                f.write(json.dumps(r, default=_plain) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)

    def begin(self, force: bool) -> dict[str, dict]:
        """The rows a run starts from: none with `force` (the journal is removed), else the journal's."""
        if force:
            self.remove()
            return {}
        return self.load()


def run_chunks(chunks: Iterable[list], on_chunk: Callable[[list], None], *, every: int = 1 << 62,
               seconds: float = float("inf"), publish: Callable[[bool], None] | None = None) -> None:
    """Hand every chunk of results to `on_chunk`; `publish(complete=False)` when a `Checkpoint` is due
    and on any interruption (then re-raised), `publish(complete=True)` at the end."""
    ckpt = Checkpoint(every, seconds)
    publishing = False
    try:
        for out in chunks:
            on_chunk(out)
            if publish is not None and ckpt.add(len(out)):
                publishing = True
                publish(False)
                publishing = False
    except BaseException:
        if publish is not None and not publishing:
            publish(False)  # keep what was done; the next run resumes from here
        raise
    if publish is not None:
        publish(True)


def pooled(fn: Callable[[list], list], items: Sequence, *, workers: int, chunk_size: int = 16,
           progress: bool = True, desc: str = "", unit: str = "file", actors: bool = False) -> Iterable[list]:
    """`map_chunks` of the current engine (`curate.engine`: this machine's pool, looked up when
    called so tests can shrink its chunks, or Ray Data; `actors` for work that holds a model)."""
    from . import engine

    return engine.map_chunks(fn, items, workers=workers, chunk_size=chunk_size, progress=progress,
                             desc=desc, unit=unit, actors=actors)


def run_rows(fn: Callable[[list], list], todo: Sequence, done: dict[str, dict], journal: Journal | None, *,
             workers: int, chunk_size: int = 16, progress: bool = True, desc: str = "", unit: str = "file",
             prepare: Callable[[dict], dict] | None = None, publish: Callable[[bool], None] | None = None,
             every: int = 1 << 62, seconds: float = float("inf"), actors: bool = False,
             split: Callable[[list[dict]], None] | None = None) -> None:
    """Run `fn` over chunks of `todo` in the pool; each result (after `prepare`) goes to `journal` and
    into `done` by the journal's id field; see `run_chunks` for `publish`. `split` first takes out
    of each chunk of results what goes elsewhere (score's hashes for dedupe)."""
    id_field = journal.id_field if journal is not None else "sample_id"

    def keep(chunk: list[dict]) -> None:
        if split is not None:
            split(chunk)
        if prepare is not None:
            chunk = [prepare(r) for r in chunk]
        if journal is not None:
            journal.append(chunk)
        for r in chunk:
            done[r[id_field]] = r

    run_chunks(pooled(fn, todo, workers=workers, chunk_size=chunk_size, progress=progress, desc=desc,
                      unit=unit, actors=actors), keep, every=every, seconds=seconds, publish=publish)
