"""Command line: ``python -m training {train,fold,export,export-module,verify,all} ...``.

The parsers come from torch-free modules (``training.commands``: see there how
a command is laid out), so ``--help`` and argument errors answer at once; a
command's implementation is imported only when it runs. Options are checked
right after parsing (``training.options.check_args``). Every ``UsageError``
(bad input) is printed as one line and exits with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Any

from training.commands import COMMANDS, module_of
from training.errors import UsageError
from training.option_parser import check_args


class OneLineParser(argparse.ArgumentParser):
    """argparse, with its usage errors on one line (exit status 2, as argparse's own)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())}\n")


def add_commands(subparsers: Any) -> None:
    """Register every training sub-command on ``subparsers`` (``bnfold`` reuses this)."""
    for name in COMMANDS:
        importlib.import_module(f"training.commands.{module_of(name)}_options").register(subparsers)


def build_parser(prog: str = "python -m training") -> argparse.ArgumentParser:
    """The top-level parser with every sub-command registered."""
    parser = OneLineParser(
        prog=prog,
        description="Train BatchNorm models, fold BN into the weights, export to ONNX, verify.",
    )
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=OneLineParser
    )
    add_commands(sub)
    return parser


def run_command(args: argparse.Namespace) -> int:
    """Check ``args``, import the command's implementation and run it; the exit status."""
    try:
        check_args(args)
        from training.console import set_quiet

        set_quiet(bool(getattr(args, "quiet", False)))
        module = importlib.import_module(f"training.commands.{module_of(args.command)}")
        return int(module.run(args))
    except UsageError as exc:
        # One line, whatever the message holds (pydantic and torch errors span several).
        print("error: " + " ".join(str(exc).split()), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the process exit status."""
    return run_command(build_parser().parse_args(argv))
