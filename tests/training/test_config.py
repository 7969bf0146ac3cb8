"""The declared options (training/config.py): defaults, checkpoints, the data spec."""

from __future__ import annotations

import argparse
import inspect
from pathlib import Path

import pytest

from training.checkpoint import load_checkpoint
from training.commands.train_options import add_train_arguments
from training.config import DataOptions, ModelConfig, TrainConfig
from training.data import make_data_spec
from training.errors import UsageError
from training.option_parser import from_args
from training.options import applicable

COMMITTED = Path(__file__).resolve().parents[2] / "models" / "digits" / "checkpoint.pt"


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    return parser.parse_args(list(argv))


def test_the_committed_checkpoint_loads_and_holds_todays_defaults() -> None:
    # models/digits was trained by `make default-model` (all --seed 0, every other option
    # at its default) before the options were declared as fields.
    ckpt = load_checkpoint(COMMITTED)
    assert ckpt.model_config.kind == "cnn"
    assert ModelConfig.from_dict(ckpt.model_config.to_dict()) == ckpt.model_config
    stored = TrainConfig.from_dict(ckpt.train_config)
    stored.validate()
    assert stored == from_args(TrainConfig, parse(), model_kind="cnn")
    model = from_args(
        ModelConfig,
        parse(),
        model_kind="cnn",
        kind="cnn",
        in_shape=ckpt.model_config.in_shape,
        num_classes=ckpt.model_config.num_classes,
    )
    assert model == ckpt.model_config
    ckpt.build()


def test_data_options_reach_make_data_spec_under_their_names() -> None:
    parameters = inspect.signature(make_data_spec).parameters
    arguments = DataOptions().spec_arguments()
    assert set(arguments) <= set(parameters), "a DataOptions field make_data_spec lacks"
    assert make_data_spec(**arguments) == make_data_spec("digits")
    options = from_args(DataOptions, parse("--dataset", "wine", "--split-seed", "3"))
    assert make_data_spec(**options.spec_arguments())["seed"] == 3


def test_image_only_options_apply_to_cnns_only() -> None:
    cfg = TrainConfig()
    assert {"augment_shift", "exact_inputs"} <= set(applicable(cfg, "cnn"))
    assert not {"augment_shift", "exact_inputs"} & set(applicable(cfg, "mlp"))
    assert set(applicable(cfg, "cnn")) == set(cfg.to_dict())


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"kind": "mlp", "in_shape": [3], "num_classes": 2}, "ModelConfig lacks widths"),
        ({"kind": "mlp", "in_shape": "abc", "num_classes": 2, "widths": [4]}, "lists of integers"),
        ({"kind": "mlp", "in_shape": [3], "num_classes": 2, "widths": [4], "x": 1}, "unknown"),
    ],
)
def test_a_stored_model_config_that_does_not_fit_is_a_usage_error(
    data: dict[str, object], message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        ModelConfig.from_dict(data)


def test_data_fractions_must_leave_a_training_split() -> None:
    DataOptions(val_fraction=0.3, test_fraction=0.3).validate()
    with pytest.raises(UsageError, match=r"--val-fraction \+ --test-fraction must be < 1"):
        DataOptions(val_fraction=0.5, test_fraction=0.5).validate()
    with pytest.raises(UsageError, match=r"--test-fraction must be in \(0, 1\), got 1"):
        DataOptions(test_fraction=1.0).validate()
