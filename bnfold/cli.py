"""The ``bnfold`` console script: every ``python -m training`` command, plus ``serve``.

``bnfold train|fold|export|verify|all ...`` are the training commands (the list
comes from ``training.commands.COMMANDS``, so new ones appear here too);
``bnfold serve ...`` is ``python -m service ...``. ``--help`` and argument
errors are answered from torch-free parsers; a command's implementation (torch,
ONNX Runtime, uvicorn) is imported only when it runs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from bnfold import __version__

PROG = "bnfold"


def build_parser() -> argparse.ArgumentParser:
    """The ``bnfold`` parser: the training commands, ``serve`` and ``--version``."""
    from training.cli import OneLineParser, add_commands

    parser = OneLineParser(
        prog=PROG,
        description="BatchNorm networks from training to a single-sample prediction service: "
        "train, fold BN into the weights, export to ONNX with a model card, verify, serve.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=OneLineParser
    )
    add_commands(sub)
    sub.add_parser(
        "serve",
        help="check an exported model and serve it over HTTP (`bnfold serve --help`)",
        add_help=False,  # its own parser (python -m service) answers --help
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``bnfold``; return the process exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, rest = parser.parse_known_args(args_list)
    if args.command == "serve":
        from service.__main__ import main as serve

        return serve(rest, prog=f"{PROG} serve")
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    from training.cli import run_command

    return run_command(args)
