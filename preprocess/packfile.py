"""A pack on disk: `<stem>.npy` beside `<stem>.json`.

- `<stem>.npy`: uint8 array (N, size, size, 3), RGB, plain `.npy` so it can be
  memory-mapped or copied to a device in one go;
- `<stem>.json`: `ids` (the sample_id of each row, in order), the parameters
  and input fingerprint it was made from, and the size/mtime of the `.npy` it
  describes (a pack whose `.npy` was replaced behind its back is not trusted).

This module needs numpy, json and Pillow only (no manifests, pyarrow or pandas),
so a trainer can load a pack on a machine without the curation stack. Writing a
pack also uses `common.atomic` (standard library only), imported when needed.
"""
from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np

PACK_FORMAT = "motocurate-pack/1"
_CHUNK_ROWS = 256


class PackError(ValueError):
    """A pack that cannot be used: missing file, wrong shape or dtype, ids that do not match."""


def sidecar_path(npy_path: str | os.PathLike) -> Path:
    """`<stem>.json` beside `<stem>.npy`."""
    return Path(npy_path).with_suffix(".json")


def read_sidecar(npy_path: str | os.PathLike) -> dict:
    """The pack's JSON (ids and provenance); `PackError` when missing or not a pack's."""
    p = sidecar_path(npy_path)
    try:
        meta = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise PackError(f"{p}: pack sidecar not found (the sample_ids of {Path(npy_path).name})") from exc
    except (OSError, ValueError) as exc:
        raise PackError(f"{p}: not a readable pack sidecar ({exc})") from exc
    ok = isinstance(meta, dict) and meta.get("format") == PACK_FORMAT and isinstance(meta.get("ids"), list)
    if not ok:
        raise PackError(f"{p}: not a {PACK_FORMAT} sidecar")
    return meta


def load_pack(npy_path: str | os.PathLike, mmap: bool = True) -> tuple[np.ndarray, list[str]]:
    """The packed images, uint8 (N, size, size, 3), and their sample_ids in row order.

    With `mmap=True` the array is a read-only memory map (nothing is read until
    used); `mmap=False` reads it into memory.
    """
    npy_path = Path(npy_path)
    meta = read_sidecar(npy_path)
    try:
        arr = np.load(npy_path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except FileNotFoundError as exc:
        raise PackError(f"{npy_path}: pack not found") from exc
    except (OSError, ValueError) as exc:
        raise PackError(f"{npy_path}: not a readable .npy pack ({exc})") from exc
    check_array(arr, npy_path)
    ids = [str(i) for i in meta["ids"]]
    if len(ids) != arr.shape[0]:
        raise PackError(f"{npy_path}: {arr.shape[0]} images but {len(ids)} sample_ids in "
                        f"{sidecar_path(npy_path).name}")
    return arr, ids


def check_array(arr: np.ndarray, where: str | os.PathLike = "pack") -> None:
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[3] != 3 or arr.shape[1] != arr.shape[2]:
        raise PackError(f"{where}: expected uint8 (N, size, size, 3), got {arr.dtype} {arr.shape}")


def npy_shape(npy_path: str | os.PathLike) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from the `.npy` header (the data is not read)."""
    with open(npy_path, "rb") as f:
        version = np.lib.format.read_magic(f)
        fmt = np.lib.format
        reader = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, _fortran, dtype = reader(f)
    return shape, dtype


def is_intact(npy_path: str | os.PathLike, meta: dict) -> bool:
    """Whether `npy_path` is the very file `meta` was written for (size, mtime, shape)."""
    try:
        st = os.stat(npy_path)
        shape, dtype = npy_shape(npy_path)
    except (OSError, ValueError):
        return False
    return (st.st_size == meta.get("npy_bytes") and st.st_mtime_ns == meta.get("npy_mtime_ns")
            and list(shape) == [meta.get("n"), meta.get("size"), meta.get("size"), 3]
            and dtype == np.uint8)


def _header(shape: tuple[int, ...]) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False,
              "shape": tuple(shape)})
    return buf.getvalue()


def _temp(folder: Path, name: str) -> Path:
    from common.atomic import temp_beside  # for writing only: loading a pack needs no manifests

    return temp_beside(folder / name)


def write_json_atomic(path: Path, obj) -> None:
    from common.atomic import write_text_atomic

    write_text_atomic(path, json.dumps(obj, indent=1) + "\n", fsync=True)


class PackWriter:
    """Writes a pack row by row into a memory-mapped temp file; `commit` puts it in place.

    At most `capacity` rows; `commit` trims the array to the rows appended. The
    old pack stays readable until `commit`; an interrupted write leaves the old
    pack (or none) and a temp file that the next writer of that pack removes.
    """

    def __init__(self, npy_path: str | os.PathLike, capacity: int, size: int):
        if capacity < 1:
            raise ValueError("a pack needs room for at least one image")
        self.npy_path = Path(npy_path)
        self.folder = self.npy_path.parent
        self.folder.mkdir(parents=True, exist_ok=True)
        self.size = size
        self.n = 0
        for name in (self.npy_path.name, sidecar_path(self.npy_path).name):
            for old in self.folder.glob(f".{name}.*.tmp"):  # left by an interrupted write of this pack
                old.unlink(missing_ok=True)
        self.tmp = _temp(self.folder, self.npy_path.name)
        self._arr = np.lib.format.open_memmap(self.tmp, mode="w+", dtype=np.uint8,
                                              shape=(capacity, size, size, 3))

    def append(self, img: np.ndarray) -> int:
        """Store one (size, size, 3) uint8 image; returns its row."""
        self._arr[self.n] = img
        self.n += 1
        return self.n - 1

    def commit(self, meta: dict) -> tuple[Path, Path]:
        """Trim, fsync and atomically replace `<stem>.npy` and `<stem>.json` (meta gets n/size/stat)."""
        from common.atomic import atomic_path, fsync_file

        if self.n < 1:
            raise PackError(f"{self.npy_path}: no images to pack")
        capacity = self._arr.shape[0]
        self._arr.flush()
        del self._arr
        if self.n < capacity:
            self._trim(capacity)
        fsync_file(self.tmp)
        st = os.stat(self.tmp)  # a rename keeps size and mtime
        meta = {**meta, "format": PACK_FORMAT, "n": self.n, "size": self.size,
                "npy_bytes": st.st_size, "npy_mtime_ns": st.st_mtime_ns}
        side = sidecar_path(self.npy_path)
        with atomic_path(side) as side_tmp:
            side_tmp.write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
            fsync_file(side_tmp)
            # Without a sidecar a pack is stale, so a crash between the two renames
            # can never pair the new images with the old ids.
            side.unlink(missing_ok=True)
            os.replace(self.tmp, self.npy_path)
        # (atomic_path renames side_tmp onto side here, after the .npy)
        return self.npy_path, side

    def abort(self) -> None:
        if hasattr(self, "_arr"):
            del self._arr
        self.tmp.unlink(missing_ok=True)

    def _trim(self, capacity: int) -> None:
        shape = (self.n, self.size, self.size, 3)
        old, new = _header((capacity, self.size, self.size, 3)), _header(shape)
        nbytes = int(np.prod(shape))
        if len(old) == len(new):  # the usual case: rewrite the header, cut the tail
            with open(self.tmp, "r+b") as f:
                f.write(new)
                f.truncate(len(new) + nbytes)
            return
        src = np.load(self.tmp, mmap_mode="r")
        dst_path = _temp(self.folder, self.npy_path.name)
        dst = np.lib.format.open_memmap(dst_path, mode="w+", dtype=np.uint8, shape=shape)
        for i in range(0, self.n, _CHUNK_ROWS):
            j = min(i + _CHUNK_ROWS, self.n)
            dst[i:j] = src[i:j]
        dst.flush()
        del dst, src
        os.replace(dst_path, self.tmp)

    def __enter__(self) -> "PackWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None or self.tmp.exists():
            self.abort()


def export_pngs(arr: np.ndarray, ids: list[str], folder: str | os.PathLike,
                previous: list[str] | None = None, progress: bool = False) -> list[str]:
    """Write `<sample_id>.png` for each row (atomically, one by one) and remove the
    `previous` PNGs this function wrote there that are no longer in the pack.

    Returns the file names written, in pack order.
    """
    from PIL import Image
    from tqdm import tqdm

    from common.atomic import atomic_path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"{sid}.png" for sid in ids]
    for i in tqdm(range(len(ids)), desc="png", unit="img", disable=not progress):
        path = folder / names[i]
        with atomic_path(path) as tmp:
            Image.fromarray(np.asarray(arr[i]), "RGB").save(tmp, format="PNG")
    keep = set(names)
    remove_pngs(folder, [n for n in previous or [] if n not in keep])
    return names


def remove_pngs(folder: str | os.PathLike, names: list[str]) -> None:
    """Remove these PNGs (written by `export_pngs`) from `folder`; other files are left alone."""
    for name in names:
        if name.endswith(".png") and "/" not in name and "\\" not in name:
            (Path(folder) / name).unlink(missing_ok=True)
