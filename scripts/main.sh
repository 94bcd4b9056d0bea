#!/usr/bin/env bash
# The main job: set up .venv, curate FOLDER into WORK/clean.parquet, train a short GAN, generate PNGs,
# and report a metric.   Usage: bash scripts/main.sh [FOLDER] [WORK]
set -euo pipefail
cd "$(dirname "$0")/.."
FOLDER=${1:-}
if [ -z "$FOLDER" ]; then
  if [ -d ../shared/data ]; then FOLDER=../shared/data; else
    echo "usage: bash scripts/main.sh FOLDER [WORK]   (FOLDER: your photos)" >&2; exit 2; fi
fi
WORK=${2:-work}
bash scripts/setup.sh
export FIFTYONE_DO_NOT_TRACK=${FIFTYONE_DO_NOT_TRACK:-true} MPLBACKEND=${MPLBACKEND:-Agg}
# Detector weights: $YOLO_WEIGHTS, else yolo11n.pt (downloaded by ultralytics when online); on an
# offline machine with the project's shared assets, the bundled COCO YOLOv8n TFLite export.
WEIGHTS=${YOLO_WEIGHTS:-yolo11n.pt}
if [ -z "${YOLO_WEIGHTS:-}" ] && [ -f ../shared/assets/yolov8n_int8.tflite ] && [ ! -f yolo11n.pt ]; then
  WEIGHTS=../shared/assets/yolov8n_int8.tflite
fi
echo "== curate run $FOLDER -> $WORK (weights: $WEIGHTS)"
.venv/bin/curate run "$FOLDER" -o "$WORK" --weights "$WEIGHTS"

if .venv/bin/python -c "import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  PRESET=${GAN_PRESET:-fast}; N=${GAN_N:-10000}
  echo "== GPU found: gan train --preset $PRESET"
else
  PRESET=${GAN_PRESET:-cpu}; N=${GAN_N:-500}
  echo "== no GPU: a CPU-sized run (--preset $PRESET, $N images); use a GPU machine for the real preset"
fi
.venv/bin/gan train --manifest "$WORK/clean.parquet" --preset "$PRESET" --out "$WORK/runs"
RUN=$(ls -d "$WORK"/runs/*/ | sort | tail -n 1); RUN=${RUN%/}
GEN="$WORK/generated/$(basename "$RUN")"
.venv/bin/gan generate --checkpoint "$RUN/checkpoint.pt" --n "$N" -o "$GEN" --zip
echo "== metrics"
if ! .venv/bin/gan fid --generated "$GEN" --manifest "$WORK/clean.parquet" -o "$WORK/metrics.json"; then
  echo "   (no Inception weights: reporting the weightless metrics instead; see README 'Offline weights')"
  .venv/bin/gan fid --generated "$GEN" --manifest "$WORK/clean.parquet" --weightless -o "$WORK/metrics.json"
fi
echo
echo "clean manifest: $WORK/clean.parquet"
echo "report:         $WORK/report/index.html"
echo "sample grid:    $(ls "$RUN"/*.png 2>/dev/null | sort | tail -n 1)"
echo "generated:      $GEN/images.zip"
echo "metrics:        $WORK/metrics.json"
