"""A run folder is replaced as a whole: never a mix of two runs, even after kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from training import folder_swap
from training.atomic import write_text_atomic
from training.errors import UsageError

REPO = Path(__file__).resolve().parents[2]


def test_an_update_keeps_other_files_and_swaps_at_once(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with folder_swap.update_folder(run) as stage:
        write_text_atomic(stage / "checkpoint.pt", "train 1")
        write_text_atomic(stage / "plots" / "curves.png", "plot 1")
    (run / "notes.txt").write_text("the user's own file")
    with folder_swap.update_folder(run) as stage:
        write_text_atomic(stage / "model.onnx", "export 1")
        assert not (run / "model.onnx").exists()  # nothing visible before the swap
    assert (run / "checkpoint.pt").read_text() == "train 1"
    assert (run / "plots" / "curves.png").read_text() == "plot 1"
    assert (run / "model.onnx").read_text() == "export 1"
    assert (run / "notes.txt").read_text() == "the user's own file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_a_failed_update_leaves_the_folder_as_it_was(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with folder_swap.update_folder(run) as stage:
        write_text_atomic(stage / "a", "old")
    with pytest.raises(RuntimeError), folder_swap.update_folder(run) as stage:
        write_text_atomic(stage / "a", "new")
        raise RuntimeError("crash")
    assert (run / "a").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_without_an_atomic_exchange_two_renames_are_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(folder_swap, "_exchange", lambda a, b: False)
    run = tmp_path / "run"
    for value in ("1", "2"):
        with folder_swap.update_folder(run) as stage:
            write_text_atomic(stage / "a", value)
    assert (run / "a").read_text() == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_a_swap_interrupted_between_its_renames_is_restored(tmp_path: Path) -> None:
    run = tmp_path / "run"
    old = tmp_path / ".run.old-999999999-abcd"  # a pid that cannot exist
    old.mkdir()
    (old / "a").write_text("previous run")
    stage = tmp_path / ".run.stage-999999999-abcd"
    stage.mkdir()
    (run.parent / ".x.999999999.tmpname.tmp").write_text("unrelated folder's leftovers")
    folder_swap.recover(run)
    assert (run / "a").read_text() == "previous run"
    assert not stage.exists() and not old.exists()


def test_the_write_probe_of_a_killed_process_is_removed(tmp_path: Path) -> None:
    # kill -9 between check_target's probe mkdir and rmdir left a folder nothing removed.
    run = tmp_path / "run"
    with folder_swap.update_folder(run) as stage:
        (stage / "a").write_text("1")
    probe = tmp_path / ".run.probe-999999999-abcd"  # a pid that cannot exist
    probe.mkdir()
    folder_swap.recover(run)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_the_current_folder_cannot_be_the_run_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for target in (tmp_path, tmp_path.parent):
        with pytest.raises(UsageError, match="current folder"):
            folder_swap.check_target(target)
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="not a folder"):
        folder_swap.check_target(tmp_path / "file")


WRITER = """
import sys, time
sys.path.insert(0, {repo!r})
from training.folder_swap import update_folder
from training.atomic import write_text_atomic
run = sys.argv[1]
for generation in range(10**6):
    with update_folder(run) as stage:
        for name in ("checkpoint.pt", "summary.json", "model.onnx", "card.json"):
            write_text_atomic(stage / name, str(generation) * 20000)
            time.sleep(0.001)
    print(generation, flush=True)
"""


@pytest.mark.slow
def test_kill_9_at_any_moment_leaves_one_consistent_run(tmp_path: Path) -> None:
    run = tmp_path / "run"
    script = WRITER.format(repo=str(REPO))
    delays = [0.05 + 0.037 * i for i in range(12)]
    for delay in delays:
        child = subprocess.Popen(
            [sys.executable, "-c", script, str(run)], stdout=subprocess.PIPE, text=True
        )
        assert child.stdout is not None
        child.stdout.readline()  # one whole generation exists
        time.sleep(delay)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        child.stdout.close()
        contents = {p.name: p.read_text() for p in run.iterdir()}
        assert sorted(contents) == ["card.json", "checkpoint.pt", "model.onnx", "summary.json"]
        assert len(set(contents.values())) == 1, "files of two runs in one folder"
        folder_swap.recover(run)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["run"], "leftovers not removed"
