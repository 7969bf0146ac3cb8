"""``python -m training`` (training/cli.py): torch-free parsers, commands imported when run."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from training.cli import build_parser, main
from training.commands import COMMANDS, module_of
from training.commands.export_options import ExportOptions

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "onnx", "onnxruntime", "sklearn", "matplotlib", "fastapi")

PROBE = """
import json, sys
from training.cli import main
results = {}
for argv in json.loads(sys.argv[1]):
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    results[" ".join(argv)] = [code, [m for m in HEAVY if m in sys.modules]]
print(json.dumps(results))
"""


def probe(*argvs: list[str]) -> dict[str, list[object]]:
    """Run ``main(argv)`` for each argv in a fresh interpreter; exit codes, heavy modules."""
    code = f"HEAVY = {HEAVY!r}\n" + PROBE
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(list(argvs))],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])  # type: ignore[no-any-return]


def test_help_and_argument_errors_import_no_torch() -> None:
    argvs = [["--help"], *([name, "--help"] for name in COMMANDS)]
    argvs += [
        ["train", "--epochs", "0"],
        ["all", "--widths", "8,x"],
        ["train", "--val-fraction", "0.6", "--test-fraction", "0.6"],
        ["export", "model.pt"],  # --out missing
        ["fold", "ckpt.pt", "--samples", "0"],
        ["verify", "m.onnx", "--split", "holdout"],
        ["export-module", "m.py:build", "--input-shape", "3,32", "--labels", "a,b", "--out", "o"],
        ["export-module", "m.py:build", "--input-shape", "4", "--labels", "a,b", "--mean", "1"],
        ["verify", "m.onnx", "--module", "m.py:build", "--std", "0"],
    ]
    # Last, a command that runs: it imports its implementation, so the probe can see torch.
    results = probe(*argvs, ["fold", "missing.pt"])
    code, heavy = results.pop("fold missing.pt")
    assert code == 2 and "torch" in heavy
    for argv, (code, heavy) in results.items():
        assert heavy == [], f"`{argv}` imported {heavy}"
        assert code == (0 if argv.endswith("--help") else 2), argv


def test_every_command_has_a_parser_module_and_an_implementation() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert list(sub.choices) == list(COMMANDS)  # type: ignore[union-attr]
    for name in COMMANDS:
        assert callable(importlib.import_module(f"training.commands.{module_of(name)}").run)
    assert module_of("export-module") == "export_module"


def test_export_options_default_opset_is_the_exporters() -> None:
    from training.export import DEFAULT_OPSET

    assert ExportOptions().opset == DEFAULT_OPSET


def test_argument_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["train", "--widths", "a,b"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "argument --widths: expected comma-separated int values like 32,64" in err
    assert main(["fold", "ckpt.pt", "--samples", "0"]) == 2
    assert capsys.readouterr().err == "error: --samples must be >= 1, got 0\n"
