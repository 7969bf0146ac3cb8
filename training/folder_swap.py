"""A run folder is always one consistent run: every update replaces the whole folder at once.

``train`` writes a checkpoint, metrics, a summary and plots; ``export`` adds the
model, its card and the verification. Files renamed one by one can be mixed by a
crash (a new ``model.onnx`` beside an old ``card.json``). ``update_folder``
instead stages the new state in a sibling folder that starts as hard links to
the current files (cheap, and nothing the user put there is lost), lets the
caller write into it (always by atomic replacement, never in place: the links
are shared with the current folder), then swaps it with the folder in ONE
``renameat2(RENAME_EXCHANGE)`` (Linux). Where that call is missing, two renames
are used and a folder found missing with its ``.old`` twin present is restored.
Staging folders left by a killed process are removed on the next update.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

from training.atomic import pid_alive, remove_stale_temporaries
from training.errors import UsageError

_STAGE = re.compile(r"^\.(?P<name>.+)\.(?P<kind>stage|old|probe)-(?P<pid>\d+)-[0-9a-f]+$")
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap the paths ``a`` and ``b``; False if the system cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    result = renameat2(
        _AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), ctypes.c_uint(_RENAME_EXCHANGE)
    )
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _hardlink_tree(source: Path, dest: Path) -> None:
    shutil.copytree(source, dest, symlinks=True, copy_function=os.link)


def recover(folder: Path) -> None:
    """Restore ``folder`` from an interrupted two-rename swap; delete dead processes' stages."""
    parent = folder.parent
    with contextlib.suppress(OSError):
        for entry in os.scandir(parent):
            match = _STAGE.match(entry.name)
            if not match or match["name"] != folder.name or pid_alive(int(match["pid"])):
                continue
            path = Path(entry.path)
            if match["kind"] == "old" and not folder.exists():
                os.rename(path, folder)  # the swap died between its two renames
            else:
                shutil.rmtree(path, ignore_errors=True)
    remove_stale_temporaries(folder)


def check_target(folder: str | os.PathLike[str]) -> None:
    """``UsageError`` unless ``folder`` can be written and replaced as a whole (before any work)."""
    folder = Path(folder).absolute()
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--out {folder} exists and is not a folder")
    cwd = Path.cwd().absolute()
    if folder == cwd or folder in cwd.parents:
        raise UsageError(
            f"--out {folder} is the current folder or contains it; a run folder is replaced "
            "as a whole, so choose a folder of its own (e.g. artifacts/NAME)"
        )
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        # Named like a stage (pid first), so that recover() removes it after a kill -9 here.
        probe = folder.parent / f".{folder.name}.probe-{os.getpid()}-{secrets.token_hex(4)}"
        probe.mkdir()
        probe.rmdir()
    except OSError as exc:
        raise UsageError(
            f"--out {folder}: cannot write in {folder.parent} ({exc.strerror or exc})"
        ) from None


@contextlib.contextmanager
def update_folder(folder: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a staging copy of ``folder``; on success it becomes ``folder`` atomically.

    On any exception the staging copy is deleted and ``folder`` is untouched.
    """
    folder = Path(folder).absolute()
    check_target(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    recover(folder)
    token = f"{os.getpid()}-{secrets.token_hex(4)}"
    stage = folder.parent / f".{folder.name}.stage-{token}"
    try:
        if folder.is_dir():
            _hardlink_tree(folder, stage)
        else:
            stage.mkdir()
        yield stage
        _fsync_dir(stage)
        if not folder.exists():
            with contextlib.suppress(FileExistsError, OSError):
                os.rename(stage, folder)  # fails only if the folder appeared meanwhile
        if stage.exists() and not _exchange(stage, folder):
            old = folder.parent / f".{folder.name}.old-{token}"
            os.rename(folder, old)
            os.rename(stage, folder)
            stage = old
        _fsync_dir(folder.parent)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
