"""The packer's manifest columns: pack_index, prep_status, prep_reason, prep_scale for every row,
from the pack's sidecar (`plan` is the packer's plan of one pack)."""
from __future__ import annotations

import numpy as np

from .pack_worker import PACKED, SKIPPED

STAGE = "preprocess"


def columns(plan, meta: dict) -> dict[str, list]:
    """pack_index / prep_status / prep_reason / prep_scale for every manifest row, from a sidecar."""
    df = plan.manifest.df
    n = len(df)
    index = [None] * n
    status = [SKIPPED] * n
    reason = list(plan.reasons)
    scale = [None] * n
    pos = {sid: i for i, sid in enumerate(df["sample_id"].tolist())}
    for k, (sid, sc) in enumerate(zip(meta["ids"], meta["scales"])):
        i = pos[sid]
        index[i], status[i], reason[i], scale[i] = k, PACKED, None, sc
    for sid, (st, why, sc) in meta["rejected"].items():
        i = pos[sid]
        status[i], reason[i], scale[i] = st, why, sc
    return {"pack_index": index, "prep_status": status, "prep_reason": reason, "prep_scale": scale}


def columns_match(df, cols: dict[str, list]) -> bool:
    import pandas as pd

    for name in ("pack_index", "prep_status"):
        if name not in df.columns:
            return False
        have = [None if pd.isna(v) else v for v in df[name].tolist()]
        if have != cols[name]:
            return False
    return True


def write_columns(plan, meta: dict, cols: dict[str, list]) -> None:
    import pandas as pd

    from manifests import write_manifest

    m = plan.manifest
    m.df["pack_index"] = pd.array(cols["pack_index"], dtype="Int32")
    m.df["prep_status"] = pd.array(cols["prep_status"], dtype="string")
    m.df["prep_reason"] = pd.array(cols["prep_reason"], dtype="string")
    m.df["prep_scale"] = np.array([np.nan if v is None else v for v in cols["prep_scale"]], dtype=np.float32)
    try:
        pack = plan.npy_path.relative_to(m.folder).as_posix()
    except ValueError:
        pack = str(plan.npy_path)
    params = {**plan.params, "fingerprint": plan.fingerprint, "pack": pack, "n": meta["n"],
              "counts": meta["counts"]}
    write_manifest(m, plan.manifest_path, stage=STAGE, params=params, input_path=plan.manifest_path)
