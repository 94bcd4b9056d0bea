"""Shared fixtures. Environment for offline, tracking-free YOLO and FiftyOne is set before imports."""
import os
import tempfile
from pathlib import Path

import pytest

_TMP = Path(tempfile.mkdtemp(prefix="motocurate-tests-"))
# Forced, not defaulted: tests must never touch a user's real FiftyOne database or YOLO settings.
os.environ.update({
    "YOLO_OFFLINE": "1",
    "YOLO_AUTOINSTALL": "0",
    "YOLO_CONFIG_DIR": str(_TMP / "yolo"),
    "FIFTYONE_DO_NOT_TRACK": "true",
    "FIFTYONE_DATABASE_DIR": str(_TMP / "fiftyone-db"),
    "FIFTYONE_DATABASE_VALIDATION": "false",
    "MPLBACKEND": "Agg",
})

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MOTO_SHARED", REPO.parent / "shared"))
TEST_DATA = Path(os.environ.get("MOTO_TEST_DATA", SHARED / "data"))
TFLITE = SHARED / "assets" / "yolov8n_int8.tflite"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """`../shared/data` (or $MOTO_TEST_DATA); skips where absent."""
    if not (TEST_DATA / "motorbikes").is_dir():
        pytest.skip(f"real test photos not found at {TEST_DATA} (set MOTO_TEST_DATA)")
    return TEST_DATA


@pytest.fixture(scope="session")
def caltech(shared_data) -> Path:
    return shared_data / "motorbikes" / "caltech101"


@pytest.fixture(scope="session")
def cctv(shared_data) -> Path:
    return shared_data / "motorbikes" / "cctv"


@pytest.fixture(scope="session")
def tflite_weights() -> Path:
    """The real COCO YOLOv8n int8 TFLite detector; skips where absent or ai-edge-litert is missing."""
    if not TFLITE.exists():
        pytest.skip(f"detector asset not found at {TFLITE}")
    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert is needed to run the TFLite detector")
    return TFLITE


@pytest.fixture
def one_torch_thread():
    """Torch on one thread for the test (the CI machine has 2 cores shared with subprocesses)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def curate_cli(capsys):
    """Run `curate ARGS` in-process: returns (exit code, stdout, stderr)."""
    from curate import cli

    def run(args):
        code = 0
        try:
            cli.main(args)
        except SystemExit as exc:
            code = exc.code
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)
