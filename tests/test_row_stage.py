"""The row-stage runner (`curate.row_stage`): journals that survive kill -9, and the temp files of
killed writes removed by the next run."""
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from manifests import read_manifest

CURATE = [sys.executable, "-c", "from curate.cli import main; main()"]


def _photos(folder: Path, n: int, size=(160, 120)) -> Path:
    import numpy as np

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (*size[::-1], 3), dtype=np.uint8)).save(folder / f"p{i:03d}.png")
    return folder


def _frame(manifest: Path):
    return read_manifest(manifest).df.sort_values("sample_id").reset_index(drop=True)


def _scanned_pair(photos: Path, tmp_path: Path) -> tuple[Path, Path]:
    """The same folder scanned into two work folders: `ref` for an uninterrupted run, `work` to kill."""
    ref, work = tmp_path / "ref" / "manifest.parquet", tmp_path / "work" / "manifest.parquet"
    for m in (ref, work):
        subprocess.run([*CURATE, "scan", str(photos), "-o", str(m), "--no-progress"], check=True,
                       capture_output=True, timeout=300)
    return ref, work


def _rerun_reused(args: list[str], marker: str) -> int:
    """Run `curate -v ARGS` again; the number of rows it says it reused (the number after `marker`)."""
    out = subprocess.run([*CURATE, "-v", *args], check=True, capture_output=True, text=True, timeout=600)
    return int(out.stderr.split(marker)[1].split()[0])


def _kill_when_journal_has(cmd: list[str], journal_glob: tuple[Path, str], lines: int, timeout: float = 120):
    """Start `cmd`; kill -9 its process group once its journal holds `lines` lines. True if killed
    mid-run (False: it finished first)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    folder, pattern = journal_glob
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            found = list(folder.glob(pattern)) if folder.is_dir() else []
            if found and sum(1 for _ in open(found[0], encoding="utf-8")) >= lines:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
                return True
            time.sleep(0.005)
        assert proc.poll() is not None, "no journal within the time limit"
        assert proc.returncode == 0, proc.stderr.read().decode()
        return False
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def _complete_lines(journal: Path) -> int:
    """Lines the kill did not cut."""
    import json

    n = 0
    for line in open(journal, encoding="utf-8"):
        try:
            json.loads(line)
        except json.JSONDecodeError:
            break
        n += 1
    return n


def _killed_then_resumed(stage: str, photos: Path, tmp_path: Path, marker: str) -> tuple[Path, Path]:
    """`curate STAGE --workers 1` on `photos` twice: uninterrupted into `ref`, and into `work` killed -9
    once its journal has 16 lines, then run again. Checks the rerun reused at least what the journal
    held (`marker`: the text before the reused count in its log) and left no journal; returns (ref,
    work) for the caller to compare. Skips when the stage finished before the kill."""
    ref, work = _scanned_pair(photos, tmp_path)
    subprocess.run([*CURATE, stage, "--manifest", str(ref), "--no-progress", "--workers", "1"], check=True,
                   capture_output=True, timeout=300)
    cmd = [*CURATE, stage, "--manifest", str(work), "--no-progress", "--workers", "1"]
    journals = work.parent / "cache" / stage
    if not _kill_when_journal_has(cmd, (journals, "partial-*.jsonl"), lines=16):
        pytest.skip(f"{stage} finished before the kill (machine too fast for this folder)")
    done_before = _complete_lines(next(journals.glob("partial-*.jsonl")))
    assert _rerun_reused(cmd[3:], marker) >= done_before
    assert not list(journals.glob("partial-*"))
    return ref, work


def test_score_killed_mid_run_resumes_from_its_journal(tmp_path):
    """kill -9 of `curate score` after some rows: the rerun takes them from the journal, measures
    only the rest, and ends with the manifest an uninterrupted run makes; no journal is left."""
    photos = _photos(tmp_path / "photos", 120)
    ref, work = _scanned_pair(photos, tmp_path)
    subprocess.run([*CURATE, "score", "--manifest", str(ref), "--no-progress", "--workers", "1"], check=True,
                   capture_output=True, timeout=300)
    before = work.read_bytes()
    killed = _kill_when_journal_has([*CURATE, "score", "--manifest", str(work), "--no-progress", "--workers", "1"],
                                    (work.parent / "cache" / "score", "partial-*.jsonl"), lines=16)
    if not killed:
        pytest.skip("score finished before the kill (machine too fast for this folder)")
    assert work.read_bytes() == before                    # score writes the manifest once, at the end
    done_before = _complete_lines(next((work.parent / "cache" / "score").glob("partial-*.jsonl")))
    reused = _rerun_reused(["score", "--manifest", str(work), "--no-progress", "--workers", "1"],
                           "row(s) to measure, ")
    assert reused >= done_before                           # the journaled rows were not measured again
    a, b = _frame(ref), _frame(work)
    cols = [c for c in a.columns if c not in ("score_source",)]
    assert a[cols].equals(b[cols])
    assert not list((work.parent / "cache" / "score").glob("partial-*"))


def test_the_temp_files_of_killed_writes_are_gone_after_the_rerun(tmp_path):
    """What a write killed between creating its temp file and renaming it leaves (a manifest temp,
    a half-written crop or repaired copy) is removed by the next run; a user's file that merely
    looks alike, in a folder that is not ours, stays."""
    from curate.pipeline import RunOptions, run_pipeline

    photos = _photos(tmp_path / "photos", 4)
    work = tmp_path / "work"
    opts = RunOptions(weights="yolo11n.yaml", report=False)
    run_pipeline(photos, work, opts, progress=False)
    leftovers = [work / ".manifest.parquet.k2j3h4g5.tmp",
                 work / "cache" / "crops" / "ab" / ".abcdef.png.q1w2e3r4.png",
                 work / "cache" / "repaired" / "cd" / ".cdef.png.z9x8c7v6.png",
                 work / "cache" / "score" / ".partial-manifest-x.jsonl.a1b2c3d4.tmp"]
    for p in leftovers:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"half a file")
    theirs = photos / ".manifest.parquet.k2j3h4g5.tmp"        # in the user's folder: not ours to remove
    theirs.write_bytes(b"mine")
    run_pipeline(photos, work, opts, progress=False)
    assert [p for p in leftovers if p.exists()] == []
    assert theirs.read_bytes() == b"mine"


@pytest.mark.slow
def test_detect_killed_between_checkpoints_resumes_from_its_journal(tmp_path, shared_data, tflite_weights):
    """Real photos and the real detector: kill -9 of `curate detect` before its first manifest
    checkpoint; the rerun takes the journaled photos back (no detection again) and ends with the
    manifest an uninterrupted run makes."""
    src = [f for f in sorted((shared_data / "web" / "bikes").iterdir()) if f.suffix.lower() in (".jpg", ".jpeg")][:24]
    photos = tmp_path / "photos"
    photos.mkdir()
    for f in src:
        shutil.copy(f, photos / f.name)
    ref, work = tmp_path / "ref", tmp_path / "work"
    cmd = ["detect", str(photos), "--weights", str(tflite_weights), "--no-progress"]
    subprocess.run([*CURATE, *cmd, "-o", str(ref)], check=True, capture_output=True, timeout=600)
    killed = _kill_when_journal_has([*CURATE, *cmd, "-o", str(work)], (work / "cache" / "detect", "partial-*.jsonl"),
                                    lines=6)
    assert killed, "detect finished before the kill"
    n_journaled = _complete_lines(next((work / "cache" / "detect").glob("partial-*.jsonl")))
    out = subprocess.run([*CURATE, "-v", *cmd, "-o", str(work)], check=True, capture_output=True, text=True,
                         timeout=600)
    assert f"{n_journaled} from the interrupted run's journal" in out.stderr, out.stderr[-2000:]
    a, b = _frame(ref / "manifest.parquet"), _frame(work / "manifest.parquet")
    assert list(a.columns) == list(b.columns)
    assert a.equals(b)
    assert not list((work / "cache" / "detect").glob("partial-*"))
