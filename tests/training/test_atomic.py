"""Atomic writes: all or nothing, and ordinary permissions."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from training.atomic import atomic_path, write_text_atomic


def test_write_replaces_the_file(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "file.txt"
    write_text_atomic(target, "one")
    write_text_atomic(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in target.parent.iterdir()] == ["file.txt"]


def test_a_failure_leaves_the_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "file.txt"
    target.write_text("good")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "good"
    assert [p.name for p in tmp_path.iterdir()] == ["file.txt"]


def test_permissions_follow_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "model.onnx", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "model.onnx").stat().st_mode) == 0o644


def test_leftovers_of_killed_writers_are_removed(tmp_path: Path) -> None:
    dead = tmp_path / ".model.onnx.999999999.x1y2z3.tmp"  # no process has this pid
    alive = tmp_path / f".card.json.{os.getpid()}.abc123.tmp"  # a live writer's
    dead.write_text("a partial file from a kill -9")
    alive.write_text("being written")
    write_text_atomic(tmp_path / "model.onnx", "x")
    assert not dead.exists()
    assert alive.exists()
