"""The Python API (curate.api, gan.api): cheap to import, documented, and the README's example runs."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_importing_the_api_loads_no_heavy_library():
    code = ("import sys, curate, curate.api, gan.api; "
            "print(','.join(m for m in ('torch', 'ultralytics', 'fiftyone', 'cv2') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == ""


def test_help_lists_every_exported_function():
    import pydoc

    import curate
    import curate.api as cu

    text = pydoc.render_doc(curate, renderer=pydoc.plaintext)
    functions = [n for n in cu.__all__ if callable(getattr(cu, n)) and n[0].islower()]
    assert len(functions) >= 12
    for name in functions:
        assert re.search(rf"^\s+{name}\s+\S", text, re.M), name
        assert getattr(cu, name).__doc__, name


def test_options_are_the_clis_dataclasses():
    import curate.api as cu
    from curate.detect import DetectOptions
    from curate.pipeline import RunOptions

    assert cu.DetectOptions is DetectOptions and cu.RunOptions is RunOptions
    with pytest.raises(TypeError, match="not both"):
        cu.run("x", "y", RunOptions(), weights="a")


def readme_example() -> str:
    text = (REPO / "README.md").read_text()
    block = text.split("<!-- python-example -->")[1].split("<!-- /python-example -->")[0]
    return block.split("```python")[1].split("```")[0]


@pytest.mark.slow
def test_readme_example_runs_and_equals_curate_run(tmp_path, caltech, shared_data, tflite_weights,
                                                  monkeypatch, curate_cli, capsys):
    import shutil

    photos = tmp_path / "photos"
    photos.mkdir()
    for f in sorted(caltech.glob("*.jpg"))[:6] + sorted((shared_data / "web" / "cars").iterdir())[:2]:
        shutil.copy(f, photos / f.name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("YOLO_WEIGHTS", str(tflite_weights))
    exec(compile(readme_example(), "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert "kept of 8" in printed

    code, _, err = curate_cli(["run", str(photos), "-o", str(tmp_path / "cli"), "--weights", str(tflite_weights),
                               "--no-report"])
    assert code == 0, err
    from manifests import read_manifest

    cols = ["sample_id", "keep", "reject_reason"]
    ours = read_manifest(tmp_path / "work" / "manifest.parquet").df[cols].sort_values("sample_id")
    cli = read_manifest(tmp_path / "cli" / "manifest.parquet").df[cols].sort_values("sample_id")
    assert ours.astype(str).values.tolist() == cli.astype(str).values.tolist()
    assert os.path.exists(tmp_path / "work" / "clean.parquet")
