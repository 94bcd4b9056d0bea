"""Agreement of the filter's verdict with a person's labels (curate.agreement), and the labels CSV."""
from pathlib import Path

import pandas as pd
import pytest

from curate.agreement import LABELS, compare, read_labels
from common.errors import UserError

REPO = Path(__file__).resolve().parents[1]
LABELS_CSV = REPO / "benchmarks" / "labels" / "shared_data.csv"


def verdicts():
    """Six photos: kept, busy, a duplicate of a kept copy, a duplicate whose group is all rejected..."""
    return pd.DataFrame({
        "path": ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg", "f.jpg"],
        "crop_index": [0] * 6,
        "keep": pd.array([True, False, False, False, False, True], dtype="boolean"),
        "reject_reason": pd.array([None, "busy", "duplicate", "duplicate", "no_motorbike", None],
                                  dtype="string"),
        "dup_group": pd.array([1, None, 1, 2, 2, None], dtype="Int64"),
    })


def test_recalls_precision_and_copies():
    labels = pd.Series({"a.jpg": "keep", "b.jpg": "keep", "c.jpg": "keep", "d.jpg": "keep",
                        "e.jpg": "no_motorbike", "f.jpg": "part_closeup"})
    ag = compare(verdicts(), labels)
    # c is a copy of a, which is kept: the picture is in the set; d's whole group is rejected
    assert (ag.person_keeps, ag.tool_keeps_of_those) == (4, 2)
    assert ag.keep_recall == 0.5
    assert (ag.person_rejects, ag.tool_rejects_of_those) == (2, 1)
    rules = {r.rule: r for r in ag.rules}
    assert rules["busy"].fired == 1 and rules["busy"].precision == 0.0
    assert rules["no_motorbike"].precision == 1.0 and rules["no_motorbike"].recall == 1.0
    assert rules["closeup"].fired == 0 and rules["closeup"].recall == 0.0      # missed f
    assert rules["duplicate"].fired == 1 and rules["duplicate"].precision == 0.0
    assert set(ag.disagreements["path"]) == {"b.jpg", "d.jpg", "f.jpg"}
    assert ag.confusion.loc["keep", "kept (as a copy)"] == 1


def test_labels_without_a_row_and_bad_labels_are_errors(tmp_path):
    with pytest.raises(UserError, match="not in the manifest"):
        compare(verdicts(), pd.Series({"zzz.jpg": "keep"}))
    bad = tmp_path / "l.csv"
    bad.write_text("path,label\na.jpg,nice\n")
    with pytest.raises(UserError, match="unknown label 'nice'"):
        read_labels(bad)
    bad.write_text("path,label\na.jpg,keep\na.jpg,keep\n")
    with pytest.raises(UserError, match="labelled twice"):
        read_labels(bad)


def test_the_labels_cover_every_shared_photo_once(shared_data):
    """The calibration labels name every photo of the labelled folders, each once, with a known label."""
    labels = read_labels(LABELS_CSV)
    assert set(labels["label"]) <= set(LABELS)
    for folder in ("web/bikes", "web/cars", "motorbikes/caltech101", "motorbikes/cctv"):
        on_disk = {f"{folder}/{p.name}" for p in (shared_data / folder).iterdir() if p.is_file()}
        labelled = set(labels["path"][labels["path"].str.startswith(folder + "/")])
        assert labelled == on_disk, folder
