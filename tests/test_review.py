"""`curate review` on the real FiftyOne (embedded mongod in a temp FIFTYONE_DATABASE_DIR).

Decisions are tagged in another process through FiftyOne's Python API, as the App does, then pulled.
"""
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from curate.filter import REVIEWER, filter_manifest
from manifests import file_sha256, read_manifest, sample_id, write_manifest
from manifests.paths import cache_file, relative_to_manifest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fo():
    """FiftyOne, imported when a test needs it (not at collection)."""
    return pytest.importorskip("fiftyone", reason="fiftyone is needed for review")


def build_review_manifest(tmp_path: Path, caltech: Path | None, n_real: int = 4) -> Path:
    """Real Caltech photos (copied) + generated ones, with the columns detect/dedupe/score would write.

    Rows: every real photo has a crop of its motorbike; generated row 0 shows the full image with a
    box; generated row 1 has no motorbike; generated row 2 does not decode.
    """
    root = tmp_path / "photos"
    root.mkdir()
    files = []
    if caltech is not None:
        for f in sorted(caltech.glob("*.jpg"))[:n_real]:
            shutil.copy(f, root / f.name)
            files.append(root / f.name)
    for i in range(3):
        p = root / f"gen_{i}.png"
        if i == 2:
            p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
        else:
            Image.new("RGB", (200, 100), (40 * i, 120, 200)).save(p)
        files.append(p)
    mpath = tmp_path / "work" / "manifest.parquet"
    mpath.parent.mkdir()
    rows = []
    for k, p in enumerate(files):
        sha = file_sha256(p)
        row = {"sample_id": sample_id(sha, p.name, 0), "path": p.name, "crop_index": 0, "status": "ok",
               "sha256": sha, "detect_status": "ok", "detections": [], "n_motorbikes": 1,
               "cut_off": False, "crop_box": None, "crop_path": None, "is_duplicate": False, "dup_group": None}
        if p.name.startswith("gen_"):
            if p.name == "gen_0.png":
                row["detections"] = [{"label": "motorcycle", "conf": 0.8, "x0": 50.0, "y0": 25.0,
                                      "x1": 150.0, "y1": 75.0}]
            elif p.name == "gen_1.png":
                row.update(detect_status="no_motorbike", n_motorbikes=0)
            else:
                row.update(status="corrupt", detect_status="not_decodable", n_motorbikes=0)
        else:
            with Image.open(p) as im:
                w, h = im.size
                box = (10, 10, w - 10, h - 10)
                crop = im.convert("RGB").crop(box)
            cp = cache_file(mpath, "crops", hashlib.sha256(sha.encode()).hexdigest())
            crop.save(cp)
            row.update(crop_box=list(box), crop_path=relative_to_manifest(mpath, cp),
                       detections=[{"label": "motorcycle", "conf": 0.9, "x0": 20.0, "y0": 30.0,
                                    "x1": float(w - 20), "y1": float(h - 10)}])
        rows.append(row)
    df = pd.DataFrame(rows)
    n = len(df)
    df["n_motorbikes"] = pd.array(df["n_motorbikes"], dtype="Int32")
    df["is_duplicate"] = pd.array([i == 1 for i in range(n)], dtype="boolean")
    df["dup_group"] = pd.array([7 if i in (0, 1) else None for i in range(n)], dtype="Int64")
    df["cut_off"] = pd.array(df["cut_off"], dtype="boolean")
    df["blur_raw"] = np.arange(n, dtype="float32") * 10
    df["blur_score"] = np.linspace(0, 1, n).astype("float32")
    df["blur_flag"] = pd.array([i == 2 for i in range(n)], dtype="boolean")
    df["busy_score"] = np.full(n, 0.25, dtype="float32")
    df["busy_flag"] = pd.array([False] * n, dtype="boolean")
    write_manifest(df, mpath, stage="score", params={}, root=str(root))
    return mpath


@pytest.fixture
def manifest(tmp_path, caltech):
    return build_review_manifest(tmp_path, caltech)


def tag_in_other_process(name: str, tags: dict[str, list[str]], remove: dict[str, list[str]] | None = None):
    """Tag samples (by sample_id) in a separate Python process through FiftyOne, like the App does."""
    script = textwrap.dedent(f"""
        import fiftyone as fo
        from fiftyone import ViewField as F
        ds = fo.load_dataset({name!r})
        for sid, tags in {tags!r}.items():
            s = ds.one(F("sample_id") == sid)
            s.tags.extend(tags)
            s.save()
        for sid, tags in {remove or {}!r}.items():
            s = ds.one(F("sample_id") == sid)
            s.tags = [t for t in s.tags if t not in tags]
            s.save()
    """)
    subprocess.run([sys.executable, "-c", script], check=True, env=os.environ.copy(), timeout=180)


def _decisions(path):
    df = read_manifest(path).df
    return {sid: d for sid, d in zip(df["sample_id"], df["review_decision"]) if not pd.isna(d)}


def test_build_tag_elsewhere_pull_filter(fo, manifest, curate_cli, tmp_path):
    from curate.review import dataset_name

    code, out, err = curate_cli(["review", "--manifest", str(manifest), "--no-launch"])
    assert code == 0, err
    name = dataset_name(manifest)
    ds = fo.load_dataset(name)
    m = read_manifest(manifest)
    df = m.df
    assert len(ds) == len(df)
    assert sorted(ds.values("sample_id")) == sorted(df["sample_id"])

    by_id = {s.sample_id: s for s in ds}
    for row in df.to_dict("records"):
        s = by_id[row["sample_id"]]
        assert s.status == row["status"]
        assert s.blur_score == pytest.approx(float(row["blur_score"]))
        assert s.blur_flag == bool(row["blur_flag"])
        if row["crop_path"] is not None and not pd.isna(row["crop_path"]):
            assert Path(s.filepath) == (manifest.parent / row["crop_path"]).resolve()
            x0, y0, x1, y1 = row["crop_box"]
            d = row["detections"][0]
            cw, ch = x1 - x0, y1 - y0
            want = [(d["x0"] - x0) / cw, (d["y0"] - y0) / ch, (d["x1"] - d["x0"]) / cw,
                    (min(d["y1"], y1) - d["y0"]) / ch]
            assert s.detections.detections[0].bounding_box == pytest.approx(want, abs=1e-6)
            assert s.metadata.width == cw and s.metadata.height == ch
        elif row["path"] != "gen_2.png":
            assert Path(s.filepath) == Path(m.root) / row["path"]
        assert s.source == str(Path(m.root) / row["path"])
    gen0 = by_id[df["sample_id"][df["path"] == "gen_0.png"].iloc[0]]
    assert gen0.detections.detections[0].bounding_box == pytest.approx([0.25, 0.25, 0.5, 0.5])
    assert gen0.detections.detections[0].label == "motorcycle"
    broken = by_id[df["sample_id"][df["path"] == "gen_2.png"].iloc[0]]
    assert broken.auto_reasons == ["unreadable", "detect_failed"]
    # No pixels: the App shows a grey tile saying so (it shows images only).
    assert Path(broken.filepath).parent.parent.name == "review" and Path(broken.filepath).exists()

    views = set(ds.list_saved_views())
    assert {"duplicates", "blurry", "no motorbike", "unreadable file", "detection failed",
            "automatic rejects", "tagged keep", "tagged reject"} <= views
    assert "busy background" not in views          # no sample is flagged busy
    blurry = set(ds.load_saved_view("blurry").values("sample_id"))
    assert blurry == set(df["sample_id"][df["blur_flag"].astype(bool)])
    assert set(ds.load_saved_view("duplicates").values("sample_id")) == {df["sample_id"][1]}

    ids = df["sample_id"].tolist()
    clean_id, blurry_id, other_id = ids[0], ids[2], ids[3]
    tag_in_other_process(name, {clean_id: ["reject"], blurry_id: ["keep"], other_id: ["nice"]})

    code, out, err = curate_cli(["review", "--manifest", str(manifest), "--pull"])
    assert code == 0, err
    assert "2 decision(s)" in out
    assert _decisions(manifest) == {clean_id: "reject", blurry_id: "keep"}
    tags = dict(zip(read_manifest(manifest).df["sample_id"], read_manifest(manifest).df["review_tags"]))
    assert list(tags[other_id]) == ["nice"] and list(tags[clean_id]) == ["reject"]
    assert all(len(tags[i]) == 0 for i in ids if i not in (clean_id, blurry_id, other_id))

    # pulling again changes nothing, not even the file
    before = file_sha256(manifest)
    code, out, _ = curate_cli(["review", "--manifest", str(manifest), "--pull"])
    assert code == 0 and "2 decision(s)" in out
    assert file_sha256(manifest) == before

    res = filter_manifest(manifest, tmp_path / "clean.parquet")
    after = read_manifest(manifest).df.set_index("sample_id")
    assert after.loc[clean_id, "reject_reason"] == REVIEWER and not after.loc[clean_id, "keep"]
    assert after.loc[blurry_id, "keep"] and pd.isna(after.loc[blurry_id, "reject_reason"])
    assert res.restored == 1
    kept = set(read_manifest(tmp_path / "clean.parquet").df["sample_id"])
    assert blurry_id in kept and clean_id not in kept

    # The reviewer changes their mind on one sample; a score rerun changes a flag. Rebuilding
    # pulls first (the untag is recorded), updates the fields and views, keeps the other tags.
    tag_in_other_process(name, {}, remove={clean_id: ["reject"]})
    m = read_manifest(manifest)
    m.df["busy_flag"] = pd.array([i == 4 for i in range(len(m.df))], dtype="boolean")
    write_manifest(m, manifest, stage="score")
    code, out, err = curate_cli(["review", "--manifest", str(manifest), "--no-launch"])
    assert code == 0, err
    assert _decisions(manifest) == {blurry_id: "keep"}
    ds = fo.load_dataset(name)
    assert set(ds.load_saved_view("busy background").values("sample_id")) == {ids[4]}
    assert ds.one(fo.ViewField("sample_id") == blurry_id).tags == ["keep"]
    assert ds.one(fo.ViewField("sample_id") == ids[4]).busy_flag is True


def test_pull_without_dataset_is_a_user_error(fo, tmp_path, curate_cli):
    path = build_review_manifest(tmp_path, None)
    code, _, err = curate_cli(["review", "--manifest", str(path), "--pull"])
    assert code == 2 and "no review dataset" in err


def test_new_dataset_starts_with_the_manifest_decisions(fo, tmp_path, capsys):
    from curate.review import build_dataset, pull_decisions

    path = build_review_manifest(tmp_path, None)
    m = read_manifest(path)
    m.df["review_tags"] = pd.Series([["keep"], [], ["reject", "blurry?"]], dtype=object)
    m.df["review_decision"] = pd.array(["keep", None, "reject"], dtype="string")
    write_manifest(m, path, stage="review")
    ds = build_dataset(path, progress=False)
    assert sorted(ds.count_sample_tags().items()) == [("blurry?", 1), ("keep", 1), ("reject", 1)]
    assert pull_decisions(path) == 2


def test_port_in_use_is_a_user_error(fo, tmp_path, curate_cli):
    path = build_review_manifest(tmp_path, None)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, _, err = curate_cli(["review", "--manifest", str(path), "--port", str(port)])
    assert code == 2 and f"--port {port}" in err and "in use" in err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _written_before_exit(proc) -> str:
    """What an exited process wrote to its stdout pipe. Not `communicate`: that waits for the pipe's
    end, which a process it started may still hold (a shared mongod it launched outlives its clients;
    whether the App is still up is checked separately)."""
    os.set_blocking(proc.stdout.fileno(), False)
    chunks = []
    while True:
        try:
            data = os.read(proc.stdout.fileno(), 1 << 16)
        except BlockingIOError:
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks).decode("utf-8", "replace")


def _stacks(proc) -> str:
    """The stacks of a hung review process (see its SIGUSR1 handler) and its child processes."""
    import psutil

    kids = [" ".join(p.cmdline()[:6]) for p in psutil.Process(proc.pid).children(recursive=True)]
    proc.send_signal(signal.SIGUSR1)
    time.sleep(3)
    return _written_before_exit(proc)[-8000:] + "\nchildren:\n" + "\n".join(kids)


def test_review_session_pulls_on_ctrl_c(fo, manifest, tmp_path):
    """The real `curate review` serves the App; a tag made meanwhile is in the manifest after Ctrl-C.
    Run as a user would who never heard of FIFTYONE_DO_NOT_TRACK: the App's server process has
    tracking off."""
    from curate.review import dataset_name, serving

    fo.list_datasets()   # the database runs for this test process: run alone, the review's own mongod
    #                      would outlive it (this process is its client) and hold its stdout open
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "FIFTYONE_DO_NOT_TRACK"}
    # SIGUSR1 makes it print every thread's stack: what it waits on, should it not exit
    start = "import faulthandler, signal; faulthandler.register(signal.SIGUSR1); from curate.cli import main; main()"
    proc = subprocess.Popen([sys.executable, "-c", start, "review",
                             "--manifest", str(manifest), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, start_new_session=True)
    try:
        url, lines, deadline = None, [], time.monotonic() + 180
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("Review at "):
                url = line.split()[2]
        assert url == f"http://127.0.0.1:{port}/", "".join(lines[-20:])
        assert urllib.request.urlopen(url, timeout=30).status == 200
        server = next(iter(serving(port, proc.pid)), None)
        assert server is not None and server.pid != proc.pid      # the App's own server process
        # FiftyOne hands its do_not_track to the server as "1"/"0"
        assert server.environ().get("FIFTYONE_DO_NOT_TRACK") in ("1", "true"), server.cmdline()
        sid = read_manifest(manifest).df["sample_id"][1]
        # this test process is not the one serving the App: tag here, as a second client would
        sample = fo.load_dataset(dataset_name(manifest)).one(fo.ViewField("sample_id") == sid)
        sample.tags.append("reject")
        sample.save()
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            pytest.fail(f"no exit 120 s after Ctrl-C:\n{_stacks(proc)}")
        rest = _written_before_exit(proc)
        assert proc.returncode == 0, rest
        assert "1 decision(s) written" in rest
        assert _decisions(manifest) == {sid: "reject"}
        with pytest.raises(OSError):
            urllib.request.urlopen(url, timeout=5)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_dataset_accepts_a_first_row_that_is_not_an_image(fo, tmp_path):
    """A scraped folder's first file may be a README or an HTML page: the dataset is still of images."""
    from curate.review import build_dataset

    path = build_review_manifest(tmp_path, None)
    m = read_manifest(path)
    (Path(m.root) / "README.md").write_text("not a photo\n")
    first = {"sample_id": sample_id("0" * 64, "README.md", 0), "path": "README.md", "crop_index": 0,
             "status": "not_an_image", "detect_status": "not_decodable"}
    m.df = pd.concat([pd.DataFrame([first]), m.df], ignore_index=True)
    write_manifest(m, path, stage="scan")
    ds = build_dataset(path, progress=False)
    assert ds.media_type == "image" and len(ds) == len(m.df)


def test_notebook_review_session_then_pull(fo, manifest):
    """`curate.api.review` returns the FiftyOne session on the manifest's dataset; `pull` brings tags back."""
    import curate.api as cu
    from curate.review import dataset_name

    port = _free_port()
    session = cu.review(manifest, port=port, progress=False)
    try:
        assert session.dataset.name == dataset_name(manifest)
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                    assert r.status == 200
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(1)
        sid = read_manifest(manifest).df["sample_id"].iloc[0]
        tag_in_other_process(dataset_name(manifest), {sid: ["reject"]})
        assert cu.pull(manifest) == 1
        assert _decisions(manifest) == {sid: "reject"}
    finally:
        session.close()


@pytest.mark.parametrize("user_value, expected", [(None, "true"), ("false", "false")])
def test_review_turns_fiftyone_tracking_off_unless_the_user_chose(fo, user_value, expected):
    """In the review process (and so in the App's server process, which inherits it)."""
    env = {k: v for k, v in os.environ.items() if k != "FIFTYONE_DO_NOT_TRACK"}
    if user_value is not None:
        env["FIFTYONE_DO_NOT_TRACK"] = user_value
    code = ("import os, curate.review, fiftyone as fo; "
            "print(os.environ['FIFTYONE_DO_NOT_TRACK'], fo.config.do_not_track)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180,
                         check=True).stdout.split()
    assert out[-2:] == [expected, str(expected == "true")]


def test_close_kills_an_app_server_that_does_not_stop():
    """FiftyOne waits for its App server without a limit; `close` kills a server that outstays its
    timeout. A stand-in session (the real App stopping slowly cannot be made to happen at will) whose
    close waits for a real listening child process, as FiftyOne's waits for the server's."""
    from curate.review import close

    port = _free_port()
    server = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import socket, time
        s = socket.socket(); s.bind(("127.0.0.1", {port})); s.listen(); print("up", flush=True)
        time.sleep(600)""")], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline() == "up\n"

        class Session:
            server_port = port

            def close(self):
                server.wait()

        t0 = time.monotonic()
        close(Session(), timeout=1)
        assert server.poll() is not None and server.returncode == -signal.SIGKILL
        assert time.monotonic() - t0 < 10
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def test_close_leaves_a_server_that_stops_alone():
    from curate.review import close

    calls = []

    class Session:
        server_port = _free_port()

        def close(self):
            calls.append("closed")

    close(Session(), timeout=5)
    assert calls == ["closed"]
