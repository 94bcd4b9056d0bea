"""The real training pack that `benchmarks/gpu_session.py` carries to the GPU machine.

    .venv/bin/python benchmarks/gpu_pack.py --manifest work/clean.parquet -o .gpu/pack.npz [--max 1500]

Packs the manifest's kept samples at 128x128 (`preprocess`, the same pack `gan train --manifest`
builds) and writes them, at most `--max`, as a compressed `.npz` (`images`: uint8 (N, 128, 128, 3)):
the GPU machine has no pandas-free way to a manifest and the whole tree it is sent with must stay
under 64 MiB. `.gpu/` is ignored by git (add it to `.git/info/exclude`) and named in the call's `carry`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    import numpy as np

    from preprocess.pack import PrepOptions, ensure_pack, load_pack

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--manifest", type=Path, required=True)
    ap.add_argument("-o", "--out", type=Path, default=Path(".gpu/pack.npz"))
    ap.add_argument("--max", type=int, default=1500)
    a = ap.parse_args(argv)
    info = ensure_pack(a.manifest, PrepOptions(size=128), progress=True)
    arr, _ids = load_pack(Path(info.npy_path))
    arr = np.ascontiguousarray(arr[: a.max])
    a.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(a.out, images=arr)
    print(f"{a.out}: {arr.shape} uint8, {a.out.stat().st_size / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
