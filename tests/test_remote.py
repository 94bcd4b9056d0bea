"""Photos in object storage: a URI is mirrored into the work folder's cache and scanned like a
folder. `file://` through pyarrow's filesystem layer, and a real S3 API (moto's server on this
machine) through pyarrow's S3 client: the same rows and verdicts as the local folder, resumed
without fetching again, the bucket never written."""
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from manifests import read_manifest
from tests.test_row_stage import _photos

CURATE = [sys.executable, "-c", "from curate.cli import main; main()"]
ROW = ["path", "sample_id", "sha256", "size_bytes", "status", "width", "height"]


def _curate(*args, env=None) -> subprocess.CompletedProcess:
    r = subprocess.run([*CURATE, "-v", *args], capture_output=True, text=True, timeout=900,
                       env={**os.environ, **(env or {})})
    assert r.returncode == 0, r.stderr[-2000:]
    return r


def _rows(manifest: Path):
    return read_manifest(manifest).df.sort_values("path")[ROW].reset_index(drop=True)


def test_a_file_uri_is_mirrored_and_scanned_like_the_folder(tmp_path):
    photos = _photos(tmp_path / "photos", 12)
    (photos / "sub").mkdir()
    shutil.copy(photos / "p000.png", photos / "sub" / "copy.png")
    (photos / "notes.txt").write_text("not a photo")
    local, remote = tmp_path / "local" / "manifest.parquet", tmp_path / "remote" / "manifest.parquet"
    _curate("scan", str(photos), "-o", str(local), "--no-progress")
    uri = photos.resolve().as_uri()
    r = _curate("scan", uri, "-o", str(remote), "--no-progress")
    assert "fetched 14 of 14 object(s)" in r.stderr
    assert _rows(local).equals(_rows(remote))
    m = read_manifest(remote)
    assert m.stage_params("scan")["source_uri"] == uri
    assert Path(m.root).is_relative_to(remote.parent / "cache" / "inputs")

    r = _curate("scan", uri, "-o", str(remote), "--no-progress")           # nothing fetched again
    assert "fetched 0 of 14 object(s) from" in r.stderr and "14 already here" in r.stderr
    assert read_manifest(remote).stage_params("scan")["reused"] == 14
    (photos / "p003.png").unlink()                                           # gone from the source
    _curate("scan", uri, "-o", str(remote), "--no-progress")
    df = read_manifest(remote).df.set_index("path")
    assert df.loc["p003.png", "status"] == "unreadable" and "missing" in df.loc["p003.png", "error"]


def test_a_uri_that_cannot_be_read_is_one_line(tmp_path, curate_cli):
    code, _, err = curate_cli(["scan", "nosuchscheme://bucket/x", "-o", str(tmp_path / "m.parquet")])
    assert code == 2 and len(err.strip().splitlines()) == 1 and "nosuchscheme://bucket/x: cannot open" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = curate_cli(["scan", empty.as_uri(), "-o", str(tmp_path / "m.parquet")])
    assert code == 2 and "no objects found there" in err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def s3(tmp_path):
    """An S3 API on this machine (moto's server), and pyarrow's S3 client pointed at it."""
    exe = Path(sys.executable).with_name("moto_server")
    if not exe.exists():
        pytest.skip("moto's server is not installed (pip install 'moto[server]')")
    port = _free_port()
    proc = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    env = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_EC2_METADATA_DISABLED": "true"}
    os.environ.update(env)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        from pyarrow import fs

        client = fs.S3FileSystem(endpoint_override=f"127.0.0.1:{port}", scheme="http", region="us-east-1",
                                 access_key="test", secret_key="test", allow_bucket_creation=True)
        client.create_dir("bucket")
        yield client, f"endpoint_override=127.0.0.1:{port}&scheme=http&region=us-east-1", env
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        for k in env:
            os.environ.pop(k, None)


def _upload(client, folder: Path, prefix: str) -> None:
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            with client.open_output_stream(f"{prefix}/{p.relative_to(folder).as_posix()}") as out:
                out.write(p.read_bytes())


def _listing(client, prefix: str) -> dict:
    from pyarrow import fs

    return {i.path: (i.size, i.mtime_ns) for i in client.get_file_info(fs.FileSelector(prefix, recursive=True))}


@pytest.mark.slow
def test_curate_run_on_s3_gives_the_local_verdicts(tmp_path, shared_data, tflite_weights, s3):
    client, query, env = s3
    photos = tmp_path / "photos"
    for sub, n in (("web/bikes", 10), ("web/cars", 2), ("motorbikes/caltech101", 4)):
        (photos / sub).mkdir(parents=True)
        for f in sorted((shared_data / sub).iterdir())[:n]:
            shutil.copy(f, photos / sub / f.name)
    _upload(client, photos, "bucket/scrape")
    before = _listing(client, "bucket/scrape")
    runs = {}
    for name, src in (("local", str(photos)), ("s3", f"s3://bucket/scrape?{query}")):
        work = tmp_path / name
        _curate("run", src, "-o", str(work), "--weights", str(tflite_weights), "--no-report", "--workers", "2",
                env=env)
        runs[name] = read_manifest(work / "manifest.parquet").df.sort_values("sample_id").reset_index(drop=True)
    cols = [*ROW, "detect_status", "n_motorbikes", "dup_group", "keep", "reject_reason", "blur_score"]
    assert runs["local"][cols].equals(runs["s3"][cols])
    assert _listing(client, "bucket/scrape") == before          # the bucket is only read


@pytest.mark.slow
def test_scan_of_s3_on_ray_fetches_on_the_workers(tmp_path, s3):
    pytest.importorskip("ray", reason="the ray extra is not installed")
    client, query, env = s3
    photos = _photos(tmp_path / "photos", 40)
    _upload(client, photos, "bucket/many")
    local, remote = tmp_path / "local" / "manifest.parquet", tmp_path / "remote" / "manifest.parquet"
    _curate("scan", str(photos), "-o", str(local), "--no-progress")
    r = _curate("scan", f"s3://bucket/many?{query}", "-o", str(remote), "--no-progress", "--engine", "ray",
                "--workers", "2", env=env)
    assert "fetched 40 of 40 object(s)" in r.stderr
    assert _rows(local).equals(_rows(remote))
    assert read_manifest(remote).stage_params("scan")["engine"] == "ray"
