"""`curate detect`: thin CLI over `curate.detect.detect_manifest` (heavy imports inside the command)."""
from __future__ import annotations

from pathlib import Path

import click

from .detect import PER_IMAGE_MODES, DetectOptions
from .engine import engine_options

D = DetectOptions()
MANIFEST_NAME = "manifest.parquet"


@click.command("detect", epilog="""\b
Examples:
  curate detect ./photos                        # scan + repair ./photos into work/ first (resuming)
  curate detect --manifest work/manifest.parquet --weights ~/models/yolo11n.pt
  curate detect ./photos -o work/ --per-image all --min-size 48 --device cuda:0 --batch 64
""")
@click.argument("folder", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--workdir", type=click.Path(file_okay=False, path_type=Path), default=Path("work"),
              show_default=True, help="Folder for manifest.parquet and cache/ (with FOLDER).")
@click.option("--manifest", "manifest", type=click.Path(dir_okay=False, path_type=Path),
              help="Add detections to this existing manifest instead of a FOLDER.")
@click.option("--weights", default=D.weights, show_default=True,
              help="YOLO weights file (.pt, .tflite, .onnx, ...), a stock name downloaded when online, "
                   "or a model .yaml (random init, for testing).")
@click.option("--device", default=D.device, show_default=True, help="auto (CUDA when present), cpu, cuda:N.")
@click.option("--imgsz", type=click.IntRange(32, 8192), default=D.imgsz, show_default=True,
              help="Detector input size (px).")
@click.option("--conf", type=click.FloatRange(0, 1, min_open=True), default=D.conf, show_default=True,
              help="Minimum detection confidence.")
@click.option("--batch", type=click.IntRange(1, 4096), default=D.batch, show_default=True,
              help="Images per predict call.")
@click.option("--margin", type=click.FloatRange(0, 2), default=D.margin, show_default=True,
              help="Crop margin per side, as a share of the box's width/height.")
@click.option("--per-image", "per_image", type=click.Choice(PER_IMAGE_MODES), default=D.per_image,
              show_default=True, help="primary: one crop per photo; all: one sample per motorbike.")
@click.option("--min-size", "min_size", type=click.IntRange(0, None), default=D.min_size, show_default=True,
              help="With --per-image all: smallest box side (px) for an extra motorbike.")
@click.option("--second-look", "second_look", type=click.FloatRange(0, 2), default=D.second_look,
              show_default=True, help="Where no motorbike is found, detect again with the photo in a grey "
                                      "frame of this share of its longer side per side (0: off).")
@click.option("--second-look-box", "second_look_box", type=click.FloatRange(0, 1, max_open=True),
              default=D.second_look_box, show_default=True,
              help="The second look also where the largest motorbike box covers less than this share of the "
                   "photo (a wheel of a bike that fills the frame); it replaces the first only with a box "
                   "4x as large (0: only where none is found).")
@click.option("--far-look", "far_look", type=click.FloatRange(0, 4), default=D.far_look, show_default=True,
              help="Where the second look finds none either in a thumbnail (see --far-look-side), once more "
                   "in a frame of this share per side, at --conf (0: off; 1.0 finds most missed 100 px "
                   "thumbnails).")
@click.option("--far-look-side", "far_look_side", type=click.IntRange(0, None), default=D.far_look_side,
              show_default=True, help="The far look only for photos whose longer side is at most this many "
                                      "pixels (0: any size).")
@click.option("--workers", type=click.IntRange(1, 64), default=None, help="Decoding threads.")
@click.option("--copies", type=click.IntRange(1, 64), default=None,
              help="Copies of a TFLite model detecting side by side on the CPU (default: one per core, "
                   "at most 8; the same results whatever the number).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@engine_options
def detect(folder, workdir, manifest, weights, device, imgsz, conf, batch, margin, per_image, min_size,
           second_look, second_look_box, far_look, far_look_side, workers, copies, no_progress):
    """Find the motorbikes in every photo (YOLO), record them and crop the primary one.

    Give either a FOLDER of photos or --manifest of an earlier stage. A FOLDER is scanned
    and repaired into WORKDIR/manifest.parquet first, every time, as `curate run` does: the
    scan resumes by size and mtime, so new files are added and changed ones redone cheaply.
    Put `--` before a FOLDER whose name starts with `-` (after the options).
    """
    from common.errors import UserError

    from .detect import detect_manifest
    from .detector import resolve_device, resolve_weights

    if (folder is None) == (manifest is None):
        raise click.UsageError("give exactly one of FOLDER or --manifest")
    opts = DetectOptions(weights=weights, device=device, imgsz=imgsz, conf=conf, batch=batch,
                         margin=margin, per_image=per_image, min_size=min_size, workers=workers,
                         second_look=second_look, second_look_box=second_look_box, far_look=far_look,
                         far_look_side=far_look_side, copies=copies)
    opts.validate()
    progress = not no_progress
    if folder is not None:
        manifest = workdir / MANIFEST_NAME
        if manifest.exists():
            _check_same_root(manifest, folder)
        elif not any(p.is_file() for p in folder.rglob("*")):
            raise UserError(f"{folder}: the folder contains no files")
        resolve_weights(weights)  # fail before a long scan
        resolve_device(device)
        from .repair import repair_manifest
        from .scan import scan_folder

        scan_folder(folder, manifest, workers=workers, progress=progress)
        repair_manifest(manifest, workers=workers, progress=progress)
    elif not manifest.exists():
        raise UserError(f"--manifest {manifest}: no such file")
    m = detect_manifest(manifest, opts, progress=progress)
    _print_summary(m, manifest)


def _check_same_root(manifest: Path, folder: Path) -> None:
    from common.errors import UserError
    from manifests.io import read_manifest

    m = read_manifest(manifest)
    if m.root and Path(m.root).resolve() != folder.resolve():
        raise UserError(f"{manifest} belongs to {m.root}, not {folder}; pass another -o WORKDIR "
                        f"or use --manifest {manifest}")


def _print_summary(m, manifest: Path) -> None:
    df = m.df
    base = df[df["crop_index"] == 0]
    counts = base["detect_status"].value_counts()
    parts = ", ".join(f"{s} {int(counts.get(s, 0))}" for s in ("ok", "no_motorbike", "not_decodable", "error"))
    extra = int((df["crop_index"] > 0).sum())
    click.echo(f"detect: {len(base)} files: {parts}" + (f"; {extra} extra crop(s)" if extra else ""))
    click.echo(f"manifest: {manifest}")
