"""Walk a folder recursively, safely: every entry is reported, loops never hang.

A symlink (to a file or a folder) that leads outside the root is not followed: it is an entry with
status `outside_folder`, so a scraped archive's link to `/etc` or `/` cannot make the scan walk the
machine; `follow_links=True` (`curate scan --follow-links`) follows such folders once. A link that
points back to one of its own ancestors (a loop), into the scanned tree (its
files are listed under their real path) or to a folder already walked is
reported as an entry with a problem instead of being entered. Broken symlinks, folders that cannot be
listed and names that are not valid UTF-8 are entries with a problem too, so the
scan can give each of them a row with status `unreadable`.
"""
from __future__ import annotations

import errno
import logging
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Entry:
    relpath: str               # POSIX separators, relative to the root
    problem: str | None = None  # why it cannot be scanned as a file; None for a normal entry
    status: str = "unreadable"  # the scan status of an entry with a problem


def _describe_target(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return "?"


def _rel(prefix: str, name: str) -> str:
    return f"{prefix}/{name}" if prefix else name


def walk_files(root: str | os.PathLike, *, exclude: Callable[[str], bool] | None = None,
               follow_links: bool = False) -> Iterator[Entry]:
    """Yield one `Entry` per non-folder entry under `root` (sorted, depth first).

    `exclude(real_path)` returning True leaves that file or folder out (used to keep the
    manifest's own outputs out of the scan when the walk reaches them). It gets the entry's
    path with every symlinked folder on the way resolved (the real folder is carried down the
    walk, not looked up per file); for a symlink, also the real path of its target.
    """
    root = os.path.abspath(os.fspath(root))
    root_real = os.path.realpath(root)
    st = os.stat(root)
    visited: dict[tuple[int, int], str] = {(st.st_dev, st.st_ino): "."}
    # stack of (absolute folder, relative prefix, ancestor folder ids, real path of the folder)
    stack: list[tuple[str, str, frozenset, str]] = [(root, "", frozenset({(st.st_dev, st.st_ino)}),
                                                     root_real)]
    while stack:
        folder, prefix, ancestors, folder_real = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            if not prefix:
                raise
            yield Entry(prefix, f"cannot list folder: {exc.strerror or exc}")
            continue
        subdirs: list[tuple[str, str, frozenset, str]] = []
        for e in entries:
            real = os.path.join(folder_real, e.name)
            if exclude is not None and exclude(real):
                log.info("not scanning %s (an output of this manifest)", e.path)
                continue
            rel = _rel(prefix, e.name)
            try:
                rel.encode("utf-8")
            except UnicodeEncodeError:
                shown = os.fsencode(rel).decode("utf-8", "backslashreplace")
                yield Entry(shown, "file name is not valid UTF-8 (bytes shown escaped); rename it")
                continue
            try:
                is_link = e.is_symlink()
                is_dir = e.is_dir(follow_symlinks=False)
            except OSError as exc:
                yield Entry(rel, f"cannot stat: {exc.strerror or exc}")
                continue
            if is_link:
                try:
                    target = os.stat(e.path)
                except FileNotFoundError:
                    yield Entry(rel, f"broken symlink -> {_describe_target(e.path)}")
                    continue
                except OSError as exc:
                    if exc.errno == errno.ELOOP:
                        yield Entry(rel, f"symlink loop -> {_describe_target(e.path)}")
                    else:
                        yield Entry(rel, f"cannot follow symlink: {exc.strerror or exc}")
                    continue
                real = os.path.realpath(e.path)
                if exclude is not None and exclude(real):
                    log.info("not scanning %s (links to %s, an output of this manifest)", e.path, real)
                    continue
                outside = not (real == root_real or real.startswith(root_real + os.sep))
                if outside and not follow_links:
                    kind = "folder" if stat.S_ISDIR(target.st_mode) else "file"
                    yield Entry(rel, f"symlink to a {kind} outside the scanned folder "
                                     f"({_describe_target(e.path)}), not followed; `curate scan "
                                     "--follow-links` follows it", status="outside_folder")
                    continue
                if not stat.S_ISDIR(target.st_mode):
                    yield Entry(rel)
                    continue
                key = (target.st_dev, target.st_ino)
                if key in ancestors:
                    yield Entry(rel, f"symlink loop: points to its own ancestor folder "
                                     f"({_describe_target(e.path)})")
                    continue
                if real == root_real or real.startswith(root_real + os.sep):
                    inside = os.path.relpath(real, root_real).replace(os.sep, "/")
                    yield Entry(rel, f"symlink to a folder inside the scanned folder, not followed "
                                     f"(its files are listed under '{inside}')")
                    continue
            elif is_dir:
                target = e.stat(follow_symlinks=False)
                key = (target.st_dev, target.st_ino)
            else:
                yield Entry(rel)
                continue
            if key in visited:
                yield Entry(rel, f"folder already scanned as '{visited[key]}' (linked twice)")
                continue
            visited[key] = rel
            subdirs.append((e.path, rel, ancestors | {key}, real))
        stack.extend(reversed(subdirs))
