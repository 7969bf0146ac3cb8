"""argparse from declared options (training/option_parser.py): flags, help, checks, values."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from option_demo import Demo

from training.errors import UsageError
from training.option_parser import add_options, check_args, from_args
from training.options import option, options_class


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="demo")
    add_options(p, Demo)
    return p


def test_one_field_gives_flag_type_default_help_and_group() -> None:
    p = parser()
    args = p.parse_args(["in.csv", "--sizes", "2,3", "--names", "a, b", "--verbose"])
    assert args.source == Path("in.csv") and args.count == 3 and args.rate == 0.5
    assert args.sizes == (2, 3) and args.names == ("a", "b")
    assert args.colour == "red" and args.kind == "auto" and args.verbose is True
    assert not hasattr(args, "hidden")
    helps = {a.dest: a.help for a in p._actions}
    assert helps["count"] == "how many to take (default: 3)"
    assert helps["sizes"] == "comma-separated sizes (default: 8,8 for CNN, 4 for MLP)"
    assert helps["kind"] == "the kind (default: auto)"
    assert helps["names"] == "comma-separated names"  # no "(default: None)"
    groups = {g.title: [a.dest for a in g._group_actions] for g in p._action_groups}
    assert groups["numbers"] == ["sizes", "count", "rate"]
    assert groups["words"] == ["names", "colour", "kind", "shift", "verbose", "channels"]
    assert args.channels is None and p.parse_args(["x", "--channels", "3"]).channels == 3
    assert "a share (default: 0.5)" in p.format_help()


def test_per_kind_defaults_and_fixed_values() -> None:
    args = parser().parse_args(["x"])
    demo = from_args(Demo, args, model_kind="cnn", kind="cnn")
    assert demo.sizes == (8, 8) and demo.kind == "cnn" and demo.hidden == 7
    args = parser().parse_args(["x", "--sizes", "5"])
    assert from_args(Demo, args, model_kind="mlp", kind="mlp").sizes == (5,)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--count", "0"], "--count must be >= 1 (need one), got 0"),
        (["--rate", "0"], "--rate must be in (0, 1], got 0"),
        (["--rate", "1.5"], "--rate must be in (0, 1], got 1.5"),
        (["--rate", "inf"], "--rate must be a finite number, got inf"),
        (["--sizes", "4,0,2"], "every value of --sizes must be >= 1, got 4,0,2"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_flag(argv: list[str], message: str) -> None:
    args = parser().parse_args(["x", *argv])
    with pytest.raises(UsageError) as exc:
        check_args(args)
    assert str(exc.value) == message


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--count", "many"], "argument --count: invalid int value: 'many'"),
        (["--sizes", "a,b"], "expected comma-separated int values like 32,64, got 'a,b'"),
        (["--colour", "blue"], "argument --colour: invalid choice: 'blue'"),
        (["--kind", "rnn"], "invalid choice: 'rnn'"),
        (["--channels", "2"], "argument --channels: invalid choice: 2 (choose from 1, 3)"),
        ([], "the following arguments are required: source"),
    ],
)
def test_argparse_refuses_what_it_cannot_convert(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        parser().parse_args(argv if not argv else ["x", *argv])
    assert exc.value.code == 2
    assert needle in capsys.readouterr().err


def test_a_field_is_declared_once_per_parser() -> None:
    p = parser()
    with pytest.raises(ValueError, match="already on the parser"):
        add_options(p, Demo)


def test_help_texts_are_required_and_percent_signs_survive() -> None:
    with pytest.raises(ValueError, match="needs a help text"):
        option(1)

    @options_class
    class Share:
        part: float = option(0.3, None, "the part kept, e.g. 30% of it")

    p = argparse.ArgumentParser()
    add_options(p, Share)
    assert "e.g. 30% of it (default: 0.3)" in p.format_help()
