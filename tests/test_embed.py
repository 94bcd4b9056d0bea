"""`curate embed`: deterministic, resumable after kill -9, the ultralytics backend's mechanics with
a random-init model, and one-line refusals."""
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from common.errors import UserError
from manifests import read_manifest
from tests.test_report import check_links, parse
from tests.test_row_stage import (_complete_lines, _kill_when_journal_has, _killed_then_resumed, _photos,
                                   _rerun_reused, _scanned_pair)

CURATE = [sys.executable, "-c", "from curate.cli import main; main()"]


def _vectors(manifest: Path) -> dict[str, np.ndarray | None]:
    df = read_manifest(manifest).df
    return {sid: None if e is None else np.asarray(e, dtype=np.float32) for sid, e in zip(df["sample_id"], df["embedding"])}


def _scan(folder: Path, manifest: Path) -> None:
    subprocess.run([*CURATE, "scan", str(folder), "-o", str(manifest), "--no-progress"], check=True,
                   capture_output=True, timeout=300)


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all((x is None and y is None) or (x is not None and y is not None and
                                        np.array_equal(x, y)) for x, y in zip(a.values(), (b[k] for k in a)))


def test_stats_embeddings_on_real_photos_are_identical_twice(tmp_path, shared_data):
    photos = tmp_path / "photos"
    for sub, n in (("web/bikes", 12), ("motorbikes/caltech101", 8), ("motorbikes/cctv", 4)):
        (photos / sub).mkdir(parents=True)
        for f in sorted((shared_data / sub).iterdir())[:n]:
            shutil.copy(f, photos / sub / f.name)
    (photos / "notes.txt").write_text("not a photo")
    m = tmp_path / "work" / "manifest.parquet"
    _scan(photos, m)
    subprocess.run([*CURATE, "embed", "--manifest", str(m), "--no-progress"], check=True, capture_output=True)
    first = _vectors(m)
    subprocess.run([*CURATE, "embed", "--manifest", str(m), "--no-progress", "--force"], check=True, capture_output=True)
    assert _same(first, _vectors(m))
    df = read_manifest(m).df.set_index("path")
    assert df.loc["notes.txt", "embedding"] is None and "not decodable" in df.loc["notes.txt", "embed_error"]
    vecs = [v for v in first.values() if v is not None]
    assert len(vecs) == 24 and {len(v) for v in vecs} == {104}
    assert all(abs(float(np.linalg.norm(v)) - 1) < 1e-5 for v in vecs)
    assert read_manifest(m).stage_params("embed")["embedded"] == 24
    # the report over these real photos: the odd-bikes sheet, a strip per cluster, every picture there
    for args in (["filter", "--manifest", str(m)], ["cluster", "--manifest", str(m), "--clusters", "3"],
                 ["report", "--manifest", str(m), "-o", str(tmp_path / "report")]):
        subprocess.run([*CURATE, *args], check=True, capture_output=True, timeout=300)
    index = tmp_path / "report" / "index.html"
    page = parse(index)
    check_links(index, page)
    assert {"sheet_odd_bikes.png", "map_clusters.png", "map_reasons.png"} <= set(page.images)
    assert sum(src.startswith("strip_cluster_") for src in page.images) == 3


def test_embed_killed_mid_run_resumes_with_the_same_embeddings(tmp_path):
    photos = _photos(tmp_path / "photos", 240, size=(320, 240))
    ref, work = _killed_then_resumed("embed", photos, tmp_path, "row(s) to embed, ")
    assert _same(_vectors(ref), _vectors(work))


def test_ultralytics_backend_mechanics_with_a_random_init_model(tmp_path):
    photos = _photos(tmp_path / "photos", 6)
    m = tmp_path / "work" / "manifest.parquet"
    _scan(photos, m)
    args = [*CURATE, "embed", "--manifest", str(m), "--no-progress", "--backend", "ultralytics",
            "--weights", "yolo11n.yaml", "--size", "160"]
    subprocess.run(args, check=True, capture_output=True, timeout=600)
    first = _vectors(m)
    subprocess.run([*args, "--force"], check=True, capture_output=True, timeout=600)
    assert _same(first, _vectors(m))                       # seeded random init: the same weights each time
    assert {len(v) for v in first.values()} == {256}
    p = read_manifest(m).stage_params("embed")
    assert p["label"] == "ultralytics:yolo11n.yaml" and p["dims"] == [256]


@pytest.mark.slow
def test_tflite_backend_reads_the_detectors_backbone_deterministically(tmp_path, shared_data, tflite_weights):
    """The shared TFLite YOLOv8n gives 256-dim SPPF features, the same twice; its pictures of one
    kind (Caltech side views) lie nearer each other than to street CCTV frames."""
    photos = tmp_path / "photos"
    for sub in ("motorbikes/caltech101", "motorbikes/cctv"):
        (photos / sub).mkdir(parents=True)
        for f in sorted((shared_data / sub).iterdir())[:5]:
            shutil.copy(f, photos / sub / f.name)
    m = tmp_path / "work" / "manifest.parquet"
    _scan(photos, m)
    args = [*CURATE, "embed", "--manifest", str(m), "--no-progress", "--backend", "tflite", "--weights",
            str(tflite_weights)]
    subprocess.run(args, check=True, capture_output=True, timeout=600)
    first = _vectors(m)
    subprocess.run([*args, "--force"], check=True, capture_output=True, timeout=600)
    assert _same(first, _vectors(m))
    assert {len(v) for v in first.values()} == {256}
    df = read_manifest(m).df
    kind = df["path"].str.contains("caltech").to_numpy()
    v = np.stack([np.asarray(e) for e in df["embedding"]])
    sim = v @ v.T
    same = sim[np.ix_(kind, kind)][~np.eye(kind.sum(), dtype=bool)].mean()
    assert same > sim[np.ix_(kind, ~kind)].mean()
    assert read_manifest(m).stage_params("embed")["label"] == f"tflite:{tflite_weights.name}"


@pytest.mark.slow
def test_tflite_embed_of_real_photos_killed_mid_run_resumes_with_the_same_embeddings(tmp_path, shared_data,
                                                                                      tflite_weights):
    """kill -9 after 2 journaled chunks of 16 on 60 real photos (web, Caltech, CCTV); the rerun reuses
    what the journal holds and ends with the uninterrupted run's vectors, bit for bit."""
    photos = tmp_path / "photos"
    for sub, n in (("web/bikes", 40), ("motorbikes/caltech101", 10), ("motorbikes/cctv", 10)):
        (photos / sub).mkdir(parents=True)
        for f in sorted((shared_data / sub).iterdir())[:n]:
            shutil.copy(f, photos / sub / f.name)
    ref, work = _scanned_pair(photos, tmp_path)
    args = ["--no-progress", "--backend", "tflite", "--weights", str(tflite_weights)]
    subprocess.run([*CURATE, "embed", "--manifest", str(ref), *args], check=True, capture_output=True, timeout=600)
    cmd = [*CURATE, "embed", "--manifest", str(work), *args]
    if not _kill_when_journal_has(cmd, (work.parent / "cache" / "embed", "partial-*.jsonl"), lines=32, timeout=300):
        pytest.skip("embed finished before the kill")
    done_before = _complete_lines(next((work.parent / "cache" / "embed").glob("partial-*.jsonl")))
    assert 32 <= done_before < 60
    assert _rerun_reused(cmd[3:], "row(s) to embed, ") >= done_before
    assert _same(_vectors(ref), _vectors(work))
    assert not list((work.parent / "cache" / "embed").glob("partial-*"))


@pytest.mark.parametrize("args, message", [
    (["--backend", "ultralytics"], "--backend ultralytics needs --weights"),
    (["--backend", "tflite"], "--backend tflite needs --weights: a YOLO TFLite export"),
    (["--backend", "tflite", "--weights", "missing.tflite"], "--weights missing.tflite: no such file"),
    (["--backend", "ultralytics", "--weights", "model.tflite"], "use --backend tflite for a .tflite export"),
    (["--weights", "yolo11n.pt"], "--weights goes with --backend ultralytics"),
    (["--size", "8"], "--size must be in 32..1024"),
])
def test_bad_embed_options_are_one_line(tmp_path, curate_cli, args, message):
    Image.new("RGB", (40, 30), (1, 2, 3)).save(tmp_path / "a.png")
    m = tmp_path / "w" / "manifest.parquet"
    assert curate_cli(["scan", str(tmp_path), "-o", str(m), "--no-progress"])[0] == 0
    before = m.read_bytes()
    code, _, err = curate_cli(["embed", "--manifest", str(m), *args])
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err
    assert m.read_bytes() == before


def test_the_odd_one_out_gets_the_top_outlier_rank_and_flags_only_when_asked(tmp_path):
    """20 similar photos and a plain red one: embed ranks the red one most unusual (1.0); score turns
    the rank into the `outlier` check, which flags nothing by default (its precision is not measured
    yet) and flags the odd one alone at --threshold outlier=0.99 (the next rank is 19/20)."""
    photos = _photos(tmp_path / "photos", 20)
    Image.new("RGB", (160, 120), (220, 10, 10)).save(photos / "odd.png")
    m = tmp_path / "work" / "manifest.parquet"
    _scan(photos, m)
    subprocess.run([*CURATE, "embed", "--manifest", str(m), "--no-progress"], check=True, capture_output=True)
    df = read_manifest(m).df.set_index("path")
    assert df.loc["odd.png", "outlier_rank"] == pytest.approx(1.0)
    assert df["outlier_rank"].between(0, 1).all() and (df["outlier_rank"] < 1).sum() == 20
    assert df.loc["odd.png", "outlier_knn"] > df.drop(index="odd.png")["outlier_knn"].max()
    subprocess.run([*CURATE, "score", "--manifest", str(m), "--no-progress"], check=True, capture_output=True)
    df = read_manifest(m).df.set_index("path")
    assert df.loc["odd.png", "outlier_score"] == pytest.approx(1.0)
    assert not df["outlier_flag"].fillna(False).any()
    subprocess.run([*CURATE, "score", "--manifest", str(m), "--rethreshold", "--threshold", "outlier=0.99"],
                   check=True, capture_output=True)
    flagged = read_manifest(m).df.set_index("path")["outlier_flag"].fillna(False)
    assert flagged[flagged].index.tolist() == ["odd.png"]


@pytest.mark.slow
def test_tflite_features_of_the_backbone_alone_equal_the_kept_intermediate_tensor(shared_data, tflite_weights):
    """The backbone cut out of the model (SPPF tensor its output, XNNPACK, copies side by side) gives,
    bit for bit, what an interpreter keeping every intermediate tensor of the whole model reads there."""
    import warnings

    from ai_edge_litert.interpreter import Interpreter

    from curate.embed_tflite import TFLiteCopies, backbone_only, sppf_output
    from curate.embeddings import _unit, letterbox
    from curate.hashing import load_rgb

    raw = Path(tflite_weights).read_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        keep_all = Interpreter(model_content=raw, experimental_preserve_all_tensors=True, num_threads=1)
    keep_all.allocate_tensors()
    index = sppf_output(keep_all.get_tensor_details())
    inp = keep_all.get_input_details()[0]
    _, h, w, _ = (int(x) for x in inp["shape"])
    photos = sorted((shared_data / "web" / "bikes").iterdir())[::100] + sorted(
        (shared_data / "motorbikes" / "caltech101").glob("*.jpg"))[::200]
    images = [load_rgb(p) for p in photos]
    expected = []
    for im in images:
        keep_all.set_tensor(inp["index"], letterbox(im, w, h)[None])
        keep_all.invoke()
        expected.append(_unit(keep_all.get_tensor(index)[0].astype(np.float32).max(axis=(0, 1))))
    got = TFLiteCopies(str(tflite_weights), cpus=2)(images)
    assert len(got) == len(images) >= 10
    for a, b in zip(expected, got):
        assert np.array_equal(a, b)
    from ai_edge_litert import schema_py_generated as schema

    small = backbone_only(raw, index)
    assert [d["index"] for d in Interpreter(model_content=small).get_output_details()] == [index]
    n_ops = [len(schema.ModelT.InitFromPackedBuf(bytearray(b), 0).subgraphs[0].operators) for b in (raw, small)]
    assert n_ops[1] < 0.6 * n_ops[0]                                 # no neck, no detection head


@pytest.mark.slow
def test_tflite_backbone_runs_at_a_smaller_square_with_nearly_the_same_features(shared_data, tflite_weights):
    """`--size` resizes the backbone's input (`curate run` embeds at `MODEL_SIDE`): the interpreter
    then runs on that square, and a web photo's features stay close to the 640 px ones (its pixels
    are the same; only the grey margin around them shrinks). Not a multiple of 32: one line."""
    from curate.embed import MODEL_SIDE, EmbedOptions
    from curate.embed_tflite import TFLiteCopies
    from curate.hashing import load_rgb

    images = [load_rgb(p) for p in sorted((shared_data / "web" / "bikes").iterdir())[::90]]
    small, full = TFLiteCopies(str(tflite_weights), cpus=1, side=MODEL_SIDE), TFLiteCopies(str(tflite_weights), cpus=1)
    with small.lender.lend() as f:
        assert [int(v) for v in f.inp["shape"]] == [1, MODEL_SIDE, MODEL_SIDE, 3]
    cos = [float(a @ b) for a, b in zip(small(images), full(images))]
    assert len(cos) >= 10 and min(cos) > 0.8, cos
    different = TFLiteCopies(str(tflite_weights), cpus=1, side=MODEL_SIDE + 32)(images[:1])[0]
    assert not np.array_equal(different, small(images[:1])[0])     # the size is honoured, not ignored
    with pytest.raises(UserError, match="multiple of 32"):
        EmbedOptions(backend="tflite", weights=str(tflite_weights), size=100).check()
