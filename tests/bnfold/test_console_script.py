"""The ``bnfold`` console script (bnfold/cli.py): training commands, serve, --version."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import bnfold
from bnfold.cli import main
from training.commands import COMMANDS

ROOT = Path(__file__).resolve().parents[2]


def bnfold_process(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "MODEL_PATH"}
    code = (
        "import sys\nfrom bnfold.cli import main\n"
        "try:\n    code = main(sys.argv[1:])\nexcept SystemExit as exc:\n    code = exc.code\n"
        "heavy = [m for m in ('torch', 'onnx', 'onnxruntime') if m in sys.modules]\n"
        "print('HEAVY', heavy, file=sys.stderr)\nsys.exit(code)"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**environ, "PYTHONPATH": str(ROOT), **(env or {})},
        timeout=120,
    )


def test_the_console_script_is_declared_and_resolves() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    target = project["scripts"]["bnfold"]
    module, function = target.split(":")
    assert getattr(importlib.import_module(module), function) is main


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out == f"bnfold {bnfold.__version__}\n"


def test_help_lists_every_training_command_and_serve(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for name in (*COMMANDS, "serve"):
        # argparse puts a long name (export-module) on a line of its own, its help below.
        assert f"\n    {name} " in out or f"\n    {name}\n" in out, name


def test_a_training_command_error_is_one_line_without_torch() -> None:
    done = bnfold_process("train", "--epochs", "0")
    assert done.returncode == 2
    assert done.stderr.splitlines() == ["error: --epochs must be >= 1, got 0", "HEAVY []"]


def test_serve_help_is_the_services_and_imports_no_torch() -> None:
    done = bnfold_process("serve", "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: bnfold serve")
    assert "MODEL_PATH" in done.stdout and "MAX_BODY_BYTES" in done.stdout
    assert done.stderr.strip() == "HEAVY []"


def test_serve_runs_the_service_and_its_checks() -> None:
    done = bnfold_process("serve", "--port", "8123")
    assert done.returncode == 2
    assert done.stderr.splitlines()[0] == "error: MODEL_PATH is not set"


def test_commands_run_and_refuse_like_python_m_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["fold", str(tmp_path / "none.pt")]) == 2
    assert capsys.readouterr().err.startswith("error: checkpoint not found")
    with pytest.raises(SystemExit) as exc:
        main(["unknown-command"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["fold", "x.pt", "--no-such-option"])
    assert exc.value.code == 2
    assert "unrecognized arguments: --no-such-option" in capsys.readouterr().err
