"""A full disk during a write: the previous file is intact, no temp file is left, one line says so.

Run on a small tmpfs mounted for the test (needs root and a kernel that lets us mount; skips with a
reason elsewhere).
"""
import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from manifests import file_sha256, read_manifest, write_manifest
from common.atomic import DiskFullError, write_bytes_atomic


@pytest.fixture
def tiny_disk(tmp_path):
    """A 2 MiB tmpfs; the test fills it."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip() or res.returncode}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(disk: Path, leave: int = 16 * 1024, name: str = "filler") -> None:
    """Fill the disk but `leave` bytes."""
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    with open(disk / name, "wb") as f:
        f.write(b"\0" * max(0, free - leave))


def temps(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*") if ".tmp" in p.name]


def test_manifest_rewrite_on_a_full_disk_keeps_the_old_one(tiny_disk, tmp_path, curate_cli):
    photos = tmp_path / "photos"
    photos.mkdir()
    n = 400
    df = pd.DataFrame({"sample_id": [f"s{i:04d}" for i in range(n)], "path": [f"p{i}.jpg" for i in range(n)],
                       "crop_index": np.zeros(n, dtype="int32"), "status": ["ok"] * n,
                       "sha256": [f"{i:064x}" for i in range(n)]})
    mpath = tiny_disk / "work" / "manifest.parquet"
    write_manifest(df, mpath, stage="scan", params={}, root=str(photos))
    before = file_sha256(mpath)
    fill(tiny_disk)
    m = read_manifest(mpath)
    m.df["error"] = pd.array([os.urandom(100).hex() for _ in range(n)], dtype="string")  # more than fits
    with pytest.raises(DiskFullError, match="no space left on the device") as e:
        write_manifest(m, mpath, stage="scan")
    assert "manifest.parquet is unchanged" in str(e.value)
    assert file_sha256(mpath) == before and read_manifest(mpath).df["sample_id"].tolist() == df["sample_id"].tolist()
    assert temps(tiny_disk) == []
    # through a CLI: one line, exit 2
    fill(tiny_disk, leave=0, name="filler2")
    code, _, err = curate_cli(["filter", "--manifest", str(mpath)])
    assert code == 2 and len(err.strip().splitlines()) == 1 and "no space left" in err, err
    assert file_sha256(mpath) == before and temps(tiny_disk) == []


def test_cache_file_and_checkpoint_on_a_full_disk(tiny_disk):
    fill(tiny_disk)
    with pytest.raises(DiskFullError, match="crop.png was not written"):
        write_bytes_atomic(tiny_disk / "cache" / "crop.png", b"\x89PNG" + os.urandom(64 * 1024))
    assert not (tiny_disk / "cache" / "crop.png").exists() and temps(tiny_disk) == []
    torch = pytest.importorskip("torch")
    from gan.checkpoint import save_checkpoint

    with pytest.raises(DiskFullError, match="checkpoint.pt was not written"):
        save_checkpoint(tiny_disk / "run" / "checkpoint.pt", {"G": {"w": torch.randn(64, 1024)}})
    assert temps(tiny_disk) == []
