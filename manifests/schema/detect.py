"""Columns written by `curate detect` (YOLO detection and the motorbike crop).

Boxes are `[x0, y0, x1, y1]` in pixels of the decoded image (the repaired copy
where there is one, else the original, after its EXIF orientation is applied).
With `--per-image all` every further motorbike gets its own row (same `path`,
`crop_index` 1..k, its own `sample_id`); the file-level columns are copied.
"""
import pyarrow as pa

# Outcome of detection for a row (fixed set).
DETECT_STATUSES = (
    "ok",             # a motorbike was found and cropped
    "no_motorbike",   # decoded and run through the detector, no motorbike found
    "not_decodable",  # no usable pixels (scan status not ok and no repaired copy, or decoding failed)
    "error",          # the detector failed on this image; text in detect_error
)

DETECTION = pa.struct([
    pa.field("label", pa.string()),
    pa.field("conf", pa.float32()),
    pa.field("x0", pa.float32()),
    pa.field("y0", pa.float32()),
    pa.field("x1", pa.float32()),
    pa.field("y1", pa.float32()),
])

FIELDS = [
    pa.field("detect_status", pa.string()),            # one of DETECT_STATUSES
    pa.field("detect_error", pa.string()),             # why, when not_decodable / error
    pa.field("detections", pa.list_(DETECTION)),       # every detection, highest confidence first
    pa.field("n_motorbikes", pa.int32()),              # detections labelled motorcycle in the image
    pa.field("detect_look", pa.string()),              # which look gave `detections`: first | padded | far
    pa.field("primary_box", pa.list_(pa.float32())),   # this row's motorbike [x0, y0, x1, y1]
    pa.field("box_area_frac", pa.float32()),           # its area / image area
    pa.field("person_overlap", pa.float32()),          # share of its box covered by person boxes
    pa.field("other_overlap", pa.float32()),           # share covered by any other detection (not persons)
    pa.field("cut_off", pa.bool_()),                   # its box touches the image border
    pa.field("crop_box", pa.list_(pa.int32())),        # box + margin, clamped to the image, integer pixels
    pa.field("crop_margin", pa.float32()),             # margin as a share of the box's width / height
    pa.field("crop_path", pa.string()),                # PNG under cache/crops/, relative to the manifest folder
    pa.field("crop_sha256", pa.string()),              # sha256 of the crop PNG's bytes
    pa.field("detector", pa.string()),                 # e.g. "ultralytics:yolo11n.pt"
    pa.field("weights_sha256", pa.string()),
    pa.field("ultralytics_version", pa.string()),
    pa.field("detect_key", pa.string()),               # hash of weights + result-changing options (resume)
]
