"""`--engine ray`: the same manifest as the local engine, a killed Ray worker loses nothing, and
without Ray installed it is one line saying how to install it."""
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
from tests.test_row_stage import _complete_lines, _kill_when_journal_has, _photos, _rerun_reused, _scanned_pair

CURATE = [sys.executable, "-c", "from curate.cli import main; main()"]


def _frame(manifest: Path):
    return read_manifest(manifest).df.sort_values("sample_id").reset_index(drop=True)


def _same(a: Path, b: Path) -> None:
    da, db = _frame(a), _frame(b)
    assert list(da.columns) == list(db.columns)
    assert [c for c in da.columns if not da[c].equals(db[c])] == []


def test_engine_ray_without_ray_is_one_line(tmp_path, curate_cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)          # `import ray` fails as if not installed
    Image.new("RGB", (32, 32), (9, 9, 9)).save(tmp_path / "a.png")
    code, _, err = curate_cli(["scan", str(tmp_path), "-o", str(tmp_path / "w" / "m.parquet"), "--engine", "ray"])
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "pip install 'motocurate[ray]'" in err
    assert not (tmp_path / "w" / "m.parquet").exists()
    code, _, err = curate_cli(["scan", str(tmp_path), "-o", str(tmp_path / "w" / "m.parquet"), "--address", "auto"])
    assert code == 2 and "--address goes with --engine ray" in err


@pytest.fixture(scope="module")
def ray_installed():
    pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'motocurate[ray]')")


@pytest.mark.slow
def test_ray_engine_gives_the_local_manifest_on_real_photos(tmp_path, shared_data, tflite_weights, ray_installed):
    """`curate run --engine ray` on a local Ray instance (2 CPUs) and the local engine, on the same real
    photos (web scrape, Caltech, CCTV): the manifests agree column by column; the history says which
    engine ran each stage."""
    photos = tmp_path / "photos"
    for sub, n in (("web/bikes", 24), ("web/cars", 4), ("motorbikes/caltech101", 8), ("motorbikes/cctv", 4)):
        (photos / sub).mkdir(parents=True)
        for f in sorted((shared_data / sub).iterdir())[:n]:
            shutil.copy(f, photos / sub / f.name)
    runs = {}
    for engine in ("local", "ray"):
        work = tmp_path / engine
        subprocess.run([*CURATE, "run", str(photos), "-o", str(work), "--weights", str(tflite_weights), "--no-report",
                        "--engine", engine, "--workers", "2"], check=True, capture_output=True, timeout=900)
        runs[engine] = work / "manifest.parquet"
    _same(runs["local"], runs["ray"])
    stages = {h["stage"]: h["params"] for h in read_manifest(runs["ray"]).history}
    assert all(stages[s]["engine"] == "ray" for s in ("scan", "repair", "detect", "embed", "text", "score", "dedupe"))


def _scored_reference(tmp_path: Path) -> tuple[Path, Path]:
    """240 photos scanned twice; `ref` scored by the local engine, `work` left for the Ray run."""
    ref, work = _scanned_pair(_photos(tmp_path / "photos", 240, size=(260, 200)), tmp_path)
    subprocess.run([*CURATE, "score", "--manifest", str(ref), "--no-progress"], check=True, capture_output=True,
                   timeout=600)
    return ref, work


def _ray_workers(root_pid: int) -> list[int]:
    """Ray worker processes running our map task or actor (not the raylet, whose command line names the
    worker script too)."""
    import psutil

    out = []
    for p in psutil.Process(root_pid).children(recursive=True):
        try:
            title = (p.cmdline() or [""])[0]     # a worker's process title: "ray::<task it runs>"
            if title.startswith("ray::") and ("MapBatches" in title or "MapWorker" in title):
                out.append(p.pid)
        except psutil.Error:
            continue
    return out


def _kill_a_worker_during(cmd: list[str], journal_dir: Path, what: str) -> None:
    """Run `cmd`; once its journal has a line, kill -9 one of its Ray workers (task or actor) by PID;
    a run that then stops is run again, which must complete it. Skips when it finished first."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    killed = None
    deadline = time.monotonic() + 300
    try:
        while proc.poll() is None and time.monotonic() < deadline and killed is None:
            journals = list(journal_dir.glob("partial-*.jsonl")) if journal_dir.is_dir() else []
            if journals and journals[0].stat().st_size > 0:
                workers = _ray_workers(proc.pid)
                if workers:
                    os.kill(workers[0], signal.SIGKILL)
                    killed = workers[0]
            time.sleep(0.05)
        proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if killed is None:
        pytest.skip(f"{what} finished before a worker could be killed")
    print(f"killed Ray worker {killed}; the run exited {proc.returncode}")
    if proc.returncode != 0:                                  # the run may stop: a rerun completes it
        subprocess.run(cmd, check=True, capture_output=True, timeout=600)


@pytest.mark.slow
def test_a_killed_ray_worker_loses_nothing(tmp_path, ray_installed):
    """kill -9 of one Ray worker (by its PID) while `curate score --engine ray` runs: Ray runs its task
    again, and the manifest equals the local engine's."""
    ref, work = _scored_reference(tmp_path)
    _kill_a_worker_during([*CURATE, "score", "--manifest", str(work), "--no-progress", "--engine", "ray"],
                          work.parent / "cache" / "score", "score")
    _same(ref, work)


@pytest.mark.slow
def test_an_interrupted_ray_run_resumes_with_only_the_missing_work(tmp_path, ray_installed):
    """kill -9 of `curate score --engine ray` (its whole process group: driver and local Ray instance)
    after some rows: the rerun on Ray measures only the rest and ends with the local engine's manifest."""
    ref, work = _scored_reference(tmp_path)
    cmd = [*CURATE, "score", "--manifest", str(work), "--no-progress", "--engine", "ray"]
    if not _kill_when_journal_has(cmd, (work.parent / "cache" / "score", "partial-*.jsonl"), lines=32):
        pytest.skip("score finished before the kill")
    done_before = _complete_lines(next((work.parent / "cache" / "score").glob("partial-*.jsonl")))
    assert _rerun_reused(cmd[3:], "row(s) to measure, ") >= done_before
    _same(ref, work)


@pytest.mark.slow
def test_a_killed_detect_actor_loses_nothing(tmp_path, shared_data, tflite_weights, ray_installed):
    """`curate detect --engine ray` runs in a pool of actors holding the model; kill -9 of the actor
    (by its PID) mid-run: Ray Data restarts it and retries its chunk, and the manifest equals the local
    engine's, crops and all."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for f in sorted((shared_data / "web" / "bikes").iterdir())[:64]:
        shutil.copy(f, photos / f.name)
    ref, work = _scanned_pair(photos, tmp_path)
    detect = ["detect", "--weights", str(tflite_weights), "--no-progress", "--device", "cpu"]
    subprocess.run([*CURATE, detect[0], "--manifest", str(ref), *detect[1:]], check=True, capture_output=True,
                   timeout=600)
    _kill_a_worker_during([*CURATE, detect[0], "--manifest", str(work), *detect[1:], "--engine", "ray"],
                          work.parent / "cache" / "detect", "detect")
    _same(ref, work)
    assert read_manifest(work).stage_params("detect")["engine"] == "ray"


@pytest.mark.slow
def test_model_copies_take_a_ray_actors_share_of_the_cpus(ray_installed):
    """In an actor of one CPU a TFLite model gets one copy, whatever the node has (no oversubscription
    when several actors share a node); in this process, the CPUs it may run on."""
    import ray

    from curate.detector_copies import cpus_here

    assert cpus_here() == len(os.sched_getaffinity(0))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(Path(__file__).resolve().parents[1])}})
    try:
        @ray.remote(num_cpus=1)
        class Probe:
            def cpus(self):
                from curate.detector_copies import cpus_here

                return cpus_here()

        assert ray.get(Probe.remote().cpus.remote()) == 1
    finally:
        ray.shutdown()
