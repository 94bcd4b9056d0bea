"""Hashes of a sample's pixels.

- `pixel_signature`: the exact-duplicate key. It is taken from the *decoded
  pixels*, not the file bytes, so a copy that differs only in metadata matches.
  A JPEG re-saved even at quality 100 is not pixel-identical (the DCT is
  re-quantised, chroma re-subsampled), so the signature is a 16x16 area-averaged
  luma thumbnail (each cell averages hundreds of pixels, which cancels the
  re-encoding noise) stored with the image size; two signatures are the same
  image when the sizes are equal and no cell differs by more than a small
  tolerance (`signatures_match`). A hash of quantised values would not do: a
  cell that sits on a quantisation boundary flips under re-encoding.
- `HASHERS`: the imagehash perceptual hashes (64-bit), pHash by default, and
  `hash_with_mirror`, which also hashes the left-right mirror image so that a
  flipped copy is found by the same Hamming search.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Callable

import numpy as np
from PIL import Image

SIGNATURE_SIDE = 16
HASH_SIZE = 8           # 8x8 = 64-bit perceptual hashes
# pHash's LANCZOS reduction of the grey photo goes through Pillow's `reducing_gap`: an integer box
# reduction first, then LANCZOS over at least this many times the target size. On 400 web photos
# 5x faster than LANCZOS over the whole photo (6.2 -> 1.2 ms), and 8 of them differ, by 1-2 of 64
# bits (fine hashes: at most 4 of 256).
REDUCING_GAP = 3.0
# What pHash needs of a photo (its LANCZOS reductions go over at least REDUCING_GAP x 64 px, the
# signature averages 16x16 cells): `curate dedupe` and `curate score` (which hashes for it) both
# decode a large JPEG down to this (`curate.decoded.load`), so the hashes do not depend on which
# stage made them.
HASH_DECODE_SIDE = 256


def at_hash_scale(img):
    """A PIL image or `curate.decoded.Decoded` at the scale its hashes are made at: a large photo
    at 1/2 to 1/8 of its size (`HASH_DECODE_SIDE`), whichever format it came in."""
    from .decoded import Decoded, dct_scale

    img = Decoded.of(img)
    return img.at_scale(dct_scale(img.size, HASH_DECODE_SIDE))


def hash_decode_side(method: str) -> int | None:
    """What `curate.decoded.load` decodes a photo at for `method`'s hashes: the other hashes look at
    the whole photo."""
    return HASH_DECODE_SIDE if method == "phash" else None


# Bumped whenever `hash_set` gives other bits: hashes stored by another version are made again
# (4: large JPEGs hashed from their reduced decode).
HASH_VERSION = 4


def _phash(img):
    import imagehash

    return imagehash.phash(img, hash_size=HASH_SIZE)


def _dhash(img):
    import imagehash

    return imagehash.dhash(img, hash_size=HASH_SIZE)


def _whash(img):
    import imagehash

    return imagehash.whash(img, hash_size=HASH_SIZE)


# name -> function(PIL image) -> imagehash.ImageHash with 64 bits
HASHERS: dict[str, Callable] = {"phash": _phash, "dhash": _dhash, "whash": _whash}


def _fine(kind: str):
    def fine(img) -> str:
        """The 256-bit (16x16) version of the hash, as hex: verifies 64-bit candidates."""
        import imagehash

        return hash_hex(getattr(imagehash, kind)(img, hash_size=FINE_SIZE))
    fine.__name__ = f"{kind}_fine"
    return fine


FINE_SIZE = 16
HASHERS_FINE: dict[str, Callable] = {k: _fine(k) for k in HASHERS}


def load_rgb(path) -> Image.Image:
    """Decode an image fully, honouring EXIF orientation, as RGB."""
    from .decoded import load

    return load(path).image


def pixel_signature(img, grey=None) -> str:
    """`"<w>x<h>-<hex of the 16x16 area-averaged luma thumbnail>"` (see module doc) of a PIL image
    or a `curate.decoded.Decoded` (its own size); `grey`: `img.convert("L")` when the caller has it."""
    from .decoded import Decoded

    img = Decoded.of(img)
    w, h = img.size
    grey = img.convert("L") if grey is None else Decoded.of(grey)
    thumb = grey.resize((SIGNATURE_SIDE, SIGNATURE_SIDE), Image.Resampling.BOX)
    return f"{w}x{h}-{np.asarray(thumb, dtype=np.uint8).tobytes().hex()}"


def parse_signature(sig: str) -> tuple[int, int, np.ndarray]:
    size, _, hexdata = sig.partition("-")
    w, h = (int(v) for v in size.split("x"))
    return w, h, np.frombuffer(bytes.fromhex(hexdata), dtype=np.uint8)


def signatures_match(a: str, b: str, tol: int = 2) -> bool:
    wa, ha, ta = parse_signature(a)
    wb, hb, tb = parse_signature(b)
    if (wa, ha) != (wb, hb):
        return False
    return int(np.abs(ta.astype(np.int16) - tb.astype(np.int16)).max()) <= tol


def hash_hex(h) -> str:
    """An imagehash.ImageHash as hex, the same string as `str(h)` for 64 or 256 bits, without its
    per-bit string building."""
    return _bits_hex(np.asarray(h.hash, dtype=bool))


def hash_int(h) -> int:
    """An imagehash.ImageHash of 64 bits as an unsigned int."""
    return int(hash_hex(h), 16)


def perceptual_hash(img: Image.Image, method: str = "phash") -> int:
    if method not in HASHERS:
        raise ValueError(f"unknown hash method {method!r}; choose from {', '.join(HASHERS)}")
    return hash_int(HASHERS[method](img))


def hash_with_mirror(img: Image.Image, method: str = "phash") -> tuple[int, int]:
    """Hash of the image and of its left-right mirror image."""
    mirror = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return perceptual_hash(img, method), perceptual_hash(mirror, method)


def hash_set(img, method: str = "phash", grey=None) -> tuple[int, int, str, str]:
    """(hash, mirror hash, fine hash, fine mirror hash) of `img` (a PIL image, or for pHash a
    `curate.decoded.Decoded`), as `perceptual_hash`, `hash_with_mirror` and `HASHERS_FINE` give them.
    For pHash from one grey conversion and one reduction per hash size (LANCZOS after a box
    reduction, `REDUCING_GAP`: within a few bits of imagehash's own), and one `phash_bits` per size
    for both the photo and its mirror, instead of converting, flipping and reducing the full-size
    image four times. `grey`: `img.convert("L")` when the caller has it."""
    from .decoded import Decoded

    if method != "phash":
        if isinstance(img, Decoded):
            if img.reduced:
                raise ValueError(f"{method} hashes a photo at its full size; decode it so")
            img = img.image
        flip = Image.Transpose.FLIP_LEFT_RIGHT
        h, m = hash_with_mirror(img, method)
        fine = HASHERS_FINE[method]
        return h, m, str(fine(img)), str(fine(img.transpose(flip)))
    grey = Decoded.of(img).convert("L") if grey is None else Decoded.of(grey)
    (h, m), (f, fm) = (phash_bits(grey.resize((n * 4, n * 4), Image.Resampling.LANCZOS,
                                              reducing_gap=REDUCING_GAP), n)
                       for n in (HASH_SIZE, FINE_SIZE))
    return int(_bits_hex(h), 16), int(_bits_hex(m), 16), _bits_hex(f), _bits_hex(fm)


@lru_cache(maxsize=None)
def _dct_rows(n: int, k: int) -> np.ndarray:
    """The first `k` rows of the `n`-point DCT-II as `scipy.fftpack.dct` computes it (no
    normalisation): y[j] = 2 * sum_i x[i] * cos(pi * j * (2i + 1) / 2n)."""
    j, i = np.arange(k)[:, None], np.arange(n)[None, :]
    return 2.0 * np.cos(np.pi * j * (2 * i + 1) / (2 * n))


def phash_bits(reduced: Image.Image, k: int) -> tuple[np.ndarray, np.ndarray]:
    """imagehash's pHash bits (k x k) of a grey image already reduced to 4k x 4k, and those of its
    left-right mirror image: the low-frequency corner of the 2-D DCT against its median.

    The same arithmetic as `imagehash.phash` (bit for bit on the 1,198 scraped web photos, see
    tests/test_decode_once.py) as two small matrix products, which spares each worker process
    the ~0.4 s import of scipy.fftpack that imagehash does on its first call. Mirroring a row
    reverses it, which multiplies its DCT coefficient j by (-1)^j: the mirror's bits come from
    the same coefficients, with no second reduction or transform."""
    x = np.asarray(reduced, dtype=np.float64)
    if x.shape != (4 * k, 4 * k):
        raise ValueError(f"phash_bits wants a {4 * k}x{4 * k} grey image, got {x.shape}")
    d = _dct_rows(4 * k, k)
    low = d @ x @ d.T
    mirror = low * np.where(np.arange(k) % 2 == 1, -1.0, 1.0)
    return low > _median(low), mirror > _median(mirror)


def _median(a: np.ndarray) -> float:
    """`np.median(a)` (the mean of the two middle values of an even count), from one sort: the
    same float, without np.median's general machinery (a few tens of microseconds a call)."""
    v = np.sort(a, axis=None)
    n = v.size
    return float(v[n // 2]) if n % 2 else float(np.mean(v[n // 2 - 1:n // 2 + 1]))


def _bits_hex(bits: np.ndarray) -> str:
    return np.packbits(bits.ravel()).tobytes().hex()


def to_hex(v: int) -> str:
    return f"{v:016x}"


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()

