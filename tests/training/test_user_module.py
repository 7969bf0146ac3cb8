"""``FILE.py:FACTORY`` and ``package.module:FACTORY`` factories, and strict state_dict loading."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from own_nets import TabularMLP

from training.errors import UsageError
from training.user_module import build_module, load_weights, split_spec


def test_a_file_may_import_its_neighbours(tmp_path: Path) -> None:
    (tmp_path / "blocks.py").write_text(
        "from torch import nn\n\ndef head():\n    return nn.Linear(4, 2)\n"
    )
    (tmp_path / "net.py").write_text(
        "from torch import nn\nfrom blocks import head\n\n"
        "class Net(nn.Sequential):\n    def __init__(self):\n        super().__init__(head())\n"
    )
    model = build_module(f"{tmp_path / 'net.py'}:Net")
    assert isinstance(model, torch.nn.Sequential) and not model.training


def test_a_dotted_module_path() -> None:
    model = build_module("own_nets:mlp")  # tests/training is on sys.path (conftest)
    assert isinstance(model, TabularMLP)


def test_a_dotted_module_that_does_not_import() -> None:
    with pytest.raises(UsageError, match="cannot import no_such_package_here"):
        build_module("no_such_package_here.models:build")


@pytest.mark.parametrize("spec", ["net.py", ":build", "net.py:", "net.py:not-an-identifier"])
def test_malformed_spec(spec: str) -> None:
    with pytest.raises(UsageError, match=r"FILE\.py:FACTORY"):
        split_spec(spec)


def test_weights_load_strictly_and_return_the_file_hash(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = TabularMLP()
    torch.save(source.state_dict(), tmp_path / "w.pt")
    target = TabularMLP()
    sha = load_weights(target, tmp_path / "w.pt")
    assert len(sha) == 64
    assert all(
        torch.equal(a, b)
        for a, b in zip(source.state_dict().values(), target.state_dict().values(), strict=True)
    )


def test_weights_with_a_pickled_object_are_refused(tmp_path: Path) -> None:
    torch.save({"fc.weight": torch.zeros(1), "config": object()}, tmp_path / "w.pt")
    with pytest.raises(UsageError, match="not a readable weights file"):
        load_weights(TabularMLP(), tmp_path / "w.pt")
