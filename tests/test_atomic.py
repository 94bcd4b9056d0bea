"""common.atomic: temp file beside the target, os.replace on success, cleanup on failure."""
import os
import stat
import subprocess
import sys

import pytest

from common.atomic import atomic_path, temp_beside, write_bytes_atomic, write_text_atomic

from tests.conftest import REPO


def _leftovers(folder, keep):
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


def test_success_replaces(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with atomic_path(target, suffix=".png") as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".out.bin.") and tmp.suffix == ".png"
        assert tmp.exists() and target.read_bytes() == b"old"  # the old file stays until the end
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new"
    assert _leftovers(tmp_path, {"out.bin"}) == []


def test_exception_keeps_old_file_and_removes_temp(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert _leftovers(tmp_path, {"out.txt"}) == []


def test_keyboard_interrupt_and_missing_target(tmp_path):
    target = tmp_path / "new" / "x.json"
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target):
            raise KeyboardInterrupt
    assert not target.exists()
    assert _leftovers(target.parent, set()) == []  # the folder is made, nothing left in it


def test_write_helpers_make_folders(tmp_path):
    assert write_bytes_atomic(tmp_path / "a" / "b.bin", b"\x00\x01").read_bytes() == b"\x00\x01"
    p = write_text_atomic(tmp_path / "c" / "d.txt", "é\n", fsync=True)
    assert p.read_text(encoding="utf-8") == "é\n"
    assert _leftovers(p.parent, {"d.txt"}) == []


def test_prefix_and_mode(tmp_path):
    target = tmp_path / "s.json"
    with atomic_path(target, suffix=".json", prefix=".tmp-", mode=0o644) as tmp:
        assert tmp.name.startswith(".tmp-") and tmp.name.endswith(".json")
        assert stat.S_IMODE(os.stat(tmp).st_mode) == 0o644
        tmp.write_text("{}")
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o644
    t = temp_beside(target, mode=0o600)
    assert t.parent == tmp_path and t.exists() and stat.S_IMODE(os.stat(t).st_mode) == 0o600


def test_default_mode_is_what_a_plain_open_gives(tmp_path):
    """mkstemp makes files private; ours must be readable like any file the user's umask allows."""
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    written = write_text_atomic(tmp_path / "ours.txt", "x")
    assert stat.S_IMODE(os.stat(written).st_mode) == stat.S_IMODE(os.stat(plain).st_mode)
    old = os.umask(0o027)
    try:
        code = "from common.atomic import write_text_atomic as w; import sys; w(sys.argv[1], 'x')"
        subprocess.run([sys.executable, "-c", code, str(tmp_path / "g.txt")], check=True, cwd=REPO)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "g.txt").st_mode) == 0o640
