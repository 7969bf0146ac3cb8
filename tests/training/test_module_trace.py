"""An untraceable module: the error names the statement, its file and line, on one line."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from training.errors import UsageError
from training.module_trace import trace_module


class Branch(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return self.fc(x)
        return -self.fc(x)


class Loop(Branch):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(x.shape[0]):
            x = x + 1
        return self.fc(x)


class Length(Branch):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) * len(x)


@pytest.mark.parametrize(
    ("module", "statement"),
    [
        (Branch, "`if x.sum() > 0:`"),
        (Loop, "`for _ in range(x.shape[0]):`"),
        (Length, "`return self.fc(x) * len(x)`"),
    ],
)
def test_the_failing_statement_is_named(module: type[nn.Module], statement: str) -> None:
    with pytest.raises(UsageError) as exc:
        trace_module(module())
    message = str(exc.value)
    assert len(message.splitlines()) == 1
    assert statement in message
    assert "test_module_trace.py:" in message and "in forward" in message
    assert message.startswith(f"cannot trace {module.__name__} with torch.fx")


def test_a_traceable_module_traces() -> None:
    gm = trace_module(nn.Sequential(nn.Linear(4, 2), nn.ReLU()))
    assert [n.op for n in gm.graph.nodes] == ["placeholder", "call_module", "call_module", "output"]
