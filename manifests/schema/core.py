"""Columns written by `curate scan`: one row per input file."""
import pyarrow as pa

# Decode status of a file, as sniffed by `curate scan` (fixed set).
SCAN_STATUSES = (
    "ok",            # decodes fully
    "truncated",     # a JPEG/PNG whose data ends early
    "corrupt",       # recognised format, decoder fails
    "not_an_image",  # content is not an image (HTML, text, ...)
    "unsupported",   # an image format we cannot decode
    "too_large",     # declared pixel count over the decompression-bomb limit
    "unreadable",    # permission denied, broken symlink, I/O error
    "outside_folder",  # a symlink to a file or folder outside the scanned folder, not followed (--follow-links)
    "empty",         # zero bytes
)

FIELDS = [
    pa.field("sample_id", pa.string(), nullable=False),
    pa.field("path", pa.string(), nullable=False),       # relative to the scan root, POSIX separators
    pa.field("crop_index", pa.int32(), nullable=False),  # 0 for the file itself / primary crop
    pa.field("status", pa.string(), nullable=False),     # one of SCAN_STATUSES
    pa.field("error", pa.string()),                      # decoder/OS error text when status != ok
    pa.field("size_bytes", pa.int64()),
    pa.field("mtime_ns", pa.int64()),
    pa.field("sha256", pa.string()),
    pa.field("format", pa.string()),          # sniffed from content: JPEG, PNG, GIF, WEBP, ...
    pa.field("ext_mismatch", pa.bool_()),     # extension disagrees with the sniffed format
    pa.field("width", pa.int32()),
    pa.field("height", pa.int32()),
    pa.field("mode", pa.string()),            # PIL mode: RGB, L, P, CMYK, I;16, RGBA, ...
    pa.field("n_frames", pa.int32()),
    pa.field("exif_orientation", pa.int32()),  # EXIF tag 274 (1..8), null when absent
    pa.field("icc_profile", pa.string()),     # embedded ICC profile's description, null when none
]

REQUIRED = ("sample_id", "path", "crop_index", "status")
