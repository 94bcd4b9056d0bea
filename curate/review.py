"""Human review in the FiftyOne App, and pulling the reviewer's tags back into the manifest.

`build_dataset` makes (or brings up to date) a persistent FiftyOne dataset named after the manifest:
one sample per manifest row showing the crop (else the repaired copy, else the original) with its
detections, every scalar column (status, scores, flags, duplicate group, ...) as a field, the
automatic reject reasons as `auto_reasons`, one saved view per reason, and the FiftyOne Brain's
uniqueness, embeddings map and similarity index from the manifest's embeddings
(`curate.review_brain`). The reviewer tags samples `reject` or `keep` in the App; FiftyOne stores
each tag in its database the moment it is made, so `pull_decisions` reads them from there: nothing
is lost if the App or this process dies.

FiftyOne is imported inside the functions (it starts a database on import). Its usage tracking is
turned off (`FIFTYONE_DO_NOT_TRACK=true`) unless the user has set that variable themselves.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import signal
import socket
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from manifests import read_manifest, write_manifest
from common.errors import UserError
from manifests.paths import sample_image_path, source_path
from manifests.schema.review import DECISIONS

from .filter import FilterOptions, applicable_rules, decide
from .review_brain import add_brain
from .review_fields import (PLACEHOLDER_SIZE, detections, display_size, field_columns, has_crop, placeholder,
                            scalar)
from .work_lock import locks_manifest

log = logging.getLogger(__name__)

# FiftyOne's usage tracking is off unless the user chose otherwise: set before FiftyOne is imported
# (here, below, or in the App's server process, which inherits the environment).
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")

# Manifest columns not shown as sample fields: FiftyOne's own names, and bulky or internal ones.
VIEWS_KEY = "motocurate_views"
ALL_REJECTS = "automatic rejects"
CLOSE_TIMEOUT_S = 20.0   # after Ctrl-C, how long the App's server may take to stop before it is killed


@dataclass(frozen=True)
class ReviewOptions:
    port: int = 5151
    address: str = "127.0.0.1"


def dataset_name(manifest_path: str | Path) -> str:
    """`motocurate-<folder>-<stem>-<hash of the absolute path>`: one dataset per manifest file."""
    p = Path(manifest_path).resolve()
    digest = hashlib.sha256(str(p).encode("utf-8", "surrogateescape")).hexdigest()[:8]
    slug = re.sub(r"[^A-Za-z0-9_]+", "_", f"{p.parent.name}-{p.stem}").strip("_")[:60]
    return f"motocurate-{slug}-{digest}"


def _samples(m, progress: bool):
    """One `fo.Sample` per manifest row (without tags), keyed by sample_id."""
    import fiftyone as fo
    from tqdm import tqdm

    df = m.df
    cols = field_columns(df)
    verdict = decide(df, FilterOptions(use_review=False))
    names = list(verdict.fired)
    fired = np.stack([verdict.fired[n] for n in names], axis=1) if names else np.zeros((len(df), 0), bool)
    root = m.root or str(m.folder)
    out = {}
    for i, row in enumerate(tqdm(df.to_dict("records"), desc="review samples", unit="sample",
                                 disable=not progress)):
        img = sample_image_path(m.folder, root, row).resolve()
        size = display_size(img)
        if size is None:
            img, size = placeholder(m.path, str(row.get("status") or "unreadable")), PLACEHOLDER_SIZE
        fields = {c: scalar(row[c]) for c in cols}
        fields["auto_reasons"] = [names[j] for j in np.flatnonzero(fired[i])]
        fields["source"] = str(source_path(root, row))
        fields["detections"] = detections(row, size, has_crop(row))
        meta = fo.ImageMetadata(width=size[0], height=size[1]) if size else None
        out[row["sample_id"]] = fo.Sample(filepath=str(img), metadata=meta, **fields)
    return out, names


def _save_views(ds, df: pd.DataFrame, present: list[str]) -> list[str]:
    from fiftyone import ViewField as F

    old = ds.info.get(VIEWS_KEY, [])
    for name in old:
        if ds.has_saved_view(name):
            ds.delete_saved_view(name)
    rules = {r.name: r for r in applicable_rules(df.columns)}
    made = []
    for name in present:
        view = ds.match(F("auto_reasons").contains(name))
        if len(view):
            title = rules[name].title if name in rules else name
            ds.save_view(title, view, description=f"automatic reject reason `{name}`")
            made.append(title)
    if made:
        ds.save_view(ALL_REJECTS, ds.match(F("auto_reasons").length() > 0),
                     description="samples at least one automatic rule rejects")
        made.append(ALL_REJECTS)
    for tag in DECISIONS:
        title = f"tagged {tag}"
        ds.save_view(title, ds.match_tags(tag), description=f"samples the reviewer tagged `{tag}`")
        made.append(title)
    made += add_brain(ds, df)
    ds.info[VIEWS_KEY] = made
    ds.save()
    return made


def _seed_tags(df: pd.DataFrame) -> dict[str, list[str]]:
    if "review_tags" not in df.columns:
        return {}
    out = {}
    for sid, tags in zip(df["sample_id"], df["review_tags"]):
        if tags is not None and not (isinstance(tags, float)) and len(tags):
            out[sid] = [str(t) for t in tags]
    return out


def build_dataset(manifest_path: str | Path, *, progress: bool = True):
    """Create or update the manifest's FiftyOne dataset and return it.

    An existing dataset's tags are pulled into the manifest first, then its samples are brought up
    to date (new rows added, vanished rows removed, fields rewritten); tags stay as they are in the
    database. A new dataset starts with the tags the manifest already records.
    """
    import fiftyone as fo

    manifest_path = Path(manifest_path)
    name = dataset_name(manifest_path)
    if fo.dataset_exists(name):
        pull_decisions(manifest_path)
    m = read_manifest(manifest_path)
    samples, reasons = _samples(m, progress)
    for sid, tags in _seed_tags(m.df).items():   # used for samples the database does not hold yet
        samples[sid].tags = tags
    if not fo.dataset_exists(name):
        ds = fo.Dataset(name, persistent=True)
        # Set before adding: FiftyOne otherwise takes the media type of the first sample, and a
        # first row that is not an image (a README.md, an HTML page saved as .jpg) makes it
        # "unknown" and every image after it is refused.
        ds.media_type = "image"
        ds.info["manifest"] = str(manifest_path.resolve())
        ds.add_samples(list(samples.values()), progress=progress)
        ds.create_index("sample_id", unique=True)
        log.info("created FiftyOne dataset %s with %d samples", name, len(ds))
    else:
        ds = fo.load_dataset(name)
        have = dict(zip(*ds.values(["sample_id", "id"])))
        gone = [oid for sid, oid in have.items() if sid not in samples]
        if gone:
            ds.delete_samples(gone)
        new = [s for sid, s in samples.items() if sid not in have]
        if new:
            ds.add_samples(new, progress=progress)
        keep = {sid: oid for sid, oid in have.items() if sid in samples}
        if keep:
            fields = ["filepath", "metadata", *next(iter(samples.values())).field_names]
            for f in dict.fromkeys(fields):
                if f in ("id", "tags", "sample_id", "created_at", "last_modified_at", "media_type"):
                    continue
                values = {oid: samples[sid][f] for sid, oid in keep.items()}
                if all(v is None for v in values.values()) and ds.get_field(f) is None:
                    continue
                ds.set_values(f, values, key_field="id")
        ds.info["manifest"] = str(manifest_path.resolve())
        log.info("updated FiftyOne dataset %s: %d samples (%d new, %d removed)", name, len(ds),
                 len(new), len(gone))
    _save_views(ds, m.df, reasons)
    return ds


def read_decisions(ds) -> dict[str, list[str]]:
    """sample_id -> the sample's tags, straight from FiftyOne's database."""
    return dict(zip(ds.values("sample_id"), ds.values("tags")))


def decision_of(tags) -> str | None:
    """`reject` wins over `keep` when a sample carries both (nothing enters training by accident)."""
    low = {str(t).strip().lower() for t in (tags or [])}
    for d in ("reject", "keep"):
        if d in low:
            return d
    return None


@locks_manifest()
def pull_decisions(manifest_path: str | Path) -> int:
    """Write the reviewer's tags into the manifest by sample_id; returns the number of decisions.

    Rows the dataset holds get `review_tags` (sorted) and `review_decision` (keep, reject or null);
    rows it lacks keep what they had. The write is atomic and skipped when nothing changed, so
    pulling twice is the same as pulling once.
    """
    import fiftyone as fo

    manifest_path = Path(manifest_path)
    name = dataset_name(manifest_path)
    if not fo.dataset_exists(name):
        raise UserError(f"--manifest {manifest_path}: no review dataset {name!r} yet; "
                        "run `curate review --manifest ...` first")
    tags = read_decisions(fo.load_dataset(name))
    m = read_manifest(manifest_path)
    df = m.df
    old_tags = df["review_tags"].tolist() if "review_tags" in df.columns else [None] * len(df)
    old_dec = df["review_decision"].tolist() if "review_decision" in df.columns else [None] * len(df)
    new_tags, new_dec = [], []
    for sid, ot, od in zip(df["sample_id"], old_tags, old_dec):
        if sid in tags:
            t = sorted({str(x) for x in (tags[sid] or [])})
            new_tags.append(t)
            new_dec.append(decision_of(t))
        else:
            new_tags.append(None if ot is None or isinstance(ot, float) else [str(x) for x in ot])
            new_dec.append(None if od is None or od is pd.NA else str(od))
    n = sum(d is not None for d in new_dec)

    def same_tags(a, b):
        a = None if a is None or isinstance(a, float) else list(a)
        b = None if b is None or isinstance(b, float) else list(b)
        return (a or None) == (b or None)

    unchanged = ("review_tags" in df.columns and "review_decision" in df.columns
                 and all(same_tags(a, b) for a, b in zip(old_tags, new_tags))
                 and all((None if o is pd.NA else o) == nd for o, nd in zip(old_dec, new_dec)))
    if unchanged:
        log.info("decisions unchanged (%d); manifest not rewritten", n)
        return n
    df = df.copy()
    df["review_tags"] = pd.Series(new_tags, index=df.index, dtype=object)
    df["review_decision"] = pd.array(new_dec, dtype="string")
    m.df = df
    write_manifest(m, manifest_path, stage="review", input_path=manifest_path,
                   params={"dataset": name, "decisions": n,
                           "keep": sum(d == "keep" for d in new_dec),
                           "reject": sum(d == "reject" for d in new_dec)})
    log.info("pulled %d decision(s) from %s", n, name)
    return n


def check_port(opts: ReviewOptions) -> None:
    """Fail fast (UserError) when the App could not bind its address and port."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in opts.address else socket.AF_INET) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # a just-closed App's port is fine
            s.bind((opts.address, opts.port))
    except OSError as exc:
        raise UserError(f"--port {opts.port}: cannot serve on {opts.address}:{opts.port} ({exc.strerror}); "
                        "choose another port") from exc


def launch(ds, opts: ReviewOptions = ReviewOptions()):
    """Start the App server for `ds` (no browser is opened) and return the FiftyOne session."""
    import fiftyone as fo
    from fiftyone.core.service import ServiceListenTimeout

    check_port(opts)
    try:
        return fo.launch_app(ds, port=opts.port, address=opts.address, remote=True, auto=False)
    except ServiceListenTimeout as exc:
        raise UserError(f"--port {opts.port}: the App did not start on {opts.address}:{opts.port}") from exc


def app_url(opts: ReviewOptions) -> str:
    """The App's address; the session already shows the dataset there."""
    return f"http://{opts.address}:{opts.port}/"


def serve(manifest_path: str | Path, opts: ReviewOptions = ReviewOptions(), *, progress: bool = True,
          on_ready=None) -> int:
    """Build the dataset, run the App until the reviewer closes it (or Ctrl-C / SIGTERM), pull.

    `on_ready(url)` is called once the App answers. Returns the number of decisions pulled.
    """
    check_port(opts)
    ds = build_dataset(manifest_path, progress=progress)
    session = None

    def _term(signum, frame):
        raise KeyboardInterrupt

    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _term) if in_main else None
    try:
        session = launch(ds, opts)
        if on_ready:
            on_ready(app_url(opts))
        session.wait()
    except KeyboardInterrupt:
        log.info("stopping the App")
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)
        try:
            n = pull_decisions(manifest_path)
        finally:
            if session is not None:
                close(session)
    return n


def serving(port: int, root: int | None = None) -> list:
    """The descendants of process `root` (default: this one) that listen on `port` (the App's server)."""
    import psutil

    found = []
    for p in psutil.Process(root).children(recursive=True):
        try:
            if any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in p.net_connections("tcp")):
                found.append(p)
        except psutil.Error:
            continue
    return found


def close(session, timeout: float = CLOSE_TIMEOUT_S) -> None:
    """Close the FiftyOne session and its App server. FiftyOne waits for the server without a limit,
    and a server still answering a connection (a browser tab left open) can take its time: after
    `timeout` seconds it is killed, so that Ctrl-C always ends `curate review`."""
    import psutil

    server = serving(session.server_port)
    closing = threading.Thread(target=session.close, name="close-app", daemon=True)
    closing.start()
    closing.join(timeout)
    if closing.is_alive():
        log.warning("the App server did not stop within %.0f s of Ctrl-C: killing it", timeout)
        for p in server:
            try:
                p.kill()
            except psutil.Error:
                pass
        closing.join(timeout)
