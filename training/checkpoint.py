"""The training checkpoint: weights, configs, standardization, labels and metrics.

On disk it is a ``torch.save``d dict of plain values and tensors (see
docs/architecture.md), with ``"format": "bnfold-checkpoint"`` and
``"version": 1``, so ``torch.load(weights_only=True)`` reads it without
running any pickled code. In memory, ``model_config`` and ``standardization``
are the typed objects.
"""

from __future__ import annotations

import os
import platform
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from bnfold.card import ImageFiles, TabularSpec
from training.atomic import write_with_atomic
from training.config import ModelConfig, StatsMode
from training.data import Standardization
from training.errors import UsageError
from training.models import BNNet, build_model

FORMAT = "bnfold-checkpoint"
VERSION = 1
_FIELDS = (
    "model_config",
    "state_dict",
    "standardization",
    "input",
    "labels",
    "stats_mode",
    "metrics",
    "train_config",
    "data_spec",
    "versions",
)


@dataclass
class Checkpoint:
    """Everything needed to rebuild, evaluate and export a trained model."""

    model_config: ModelConfig
    state_dict: dict[str, Tensor]
    standardization: Standardization
    input: dict[str, Any]
    labels: list[str]
    stats_mode: StatsMode
    metrics: dict[str, float]
    train_config: dict[str, Any]
    data_spec: dict[str, Any]
    versions: dict[str, str]

    def build(self) -> BNNet:
        """The network with these weights, in eval mode (takes standardized input)."""
        model = build_model(self.model_config)
        model.load_state_dict(self.state_dict)
        return model.eval()


def library_versions() -> dict[str, str]:
    """Versions of Python and the libraries that trained the model."""
    versions = {"python": platform.python_version(), "torch": torch.__version__}
    for dist in ("numpy", "scikit-learn", "pillow", "bnfold"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return versions


def save_checkpoint(path: str | os.PathLike[str], ckpt: Checkpoint) -> None:
    """Write ``ckpt`` to ``path`` atomically (a crash leaves any previous file intact)."""
    payload: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "model_config": ckpt.model_config.to_dict(),
        "state_dict": {k: v.detach().cpu().clone() for k, v in ckpt.state_dict.items()},
        "standardization": ckpt.standardization.to_dict(),
        "input": dict(ckpt.input),
        "labels": [str(label) for label in ckpt.labels],
        "stats_mode": ckpt.stats_mode,
        "metrics": {str(k): float(v) for k, v in ckpt.metrics.items()},
        "train_config": dict(ckpt.train_config),
        "data_spec": dict(ckpt.data_spec),
        "versions": {str(k): str(v) for k, v in ckpt.versions.items()},
    }
    write_with_atomic(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read a checkpoint written by ``save_checkpoint``; ``UsageError`` if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        # torch's own text is about its internals (miniz, unpickler opcodes, even advice to
        # load unsafely): say what is wrong with the file instead.
        raise UsageError(f"{path}: not a readable checkpoint ({_unreadable(path)})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UsageError(f"{path}: not a bnfold checkpoint")
    if payload.get("version") != VERSION:
        raise UsageError(f"{path}: unsupported checkpoint version {payload.get('version')!r}")
    missing = [name for name in _FIELDS if name not in payload]
    if missing:
        raise UsageError(f"{path}: checkpoint lacks {', '.join(missing)}")
    try:
        ckpt = Checkpoint(
            model_config=ModelConfig.from_dict(payload["model_config"]),
            state_dict=dict(payload["state_dict"]),
            standardization=Standardization.from_dict(payload["standardization"]),
            input=dict(payload["input"]),
            labels=[str(label) for label in payload["labels"]],
            stats_mode=_stats_mode(payload["stats_mode"]),
            metrics={str(k): float(v) for k, v in payload["metrics"].items()},
            train_config=dict(payload["train_config"]),
            data_spec=dict(payload["data_spec"]),
            versions={str(k): str(v) for k, v in payload["versions"].items()},
        )
        _check_weights(ckpt)
        check_input_encoding(ckpt.input)
    except UsageError as exc:
        raise UsageError(f"{path}: malformed checkpoint: {exc}") from exc
    except KeyError as exc:
        raise UsageError(f"{path}: malformed checkpoint: an entry lacks {exc.args[0]!r}") from exc
    except (TypeError, ValueError, AttributeError) as exc:
        raise UsageError(
            f"{path}: malformed checkpoint: an entry has values of the wrong type"
        ) from exc
    return ckpt


def _check_weights(ckpt: Checkpoint) -> None:
    """``UsageError`` naming the tensors that do not fit the network the config describes."""
    expected = build_model(ckpt.model_config).state_dict()
    problems = [f"no {name}" for name in expected if name not in ckpt.state_dict]
    problems += [f"an unknown {name}" for name in ckpt.state_dict if name not in expected]
    for name, tensor in ckpt.state_dict.items():
        if not isinstance(tensor, Tensor):
            problems.append(f"{name} is not a tensor")
        elif name in expected and tuple(tensor.shape) != tuple(expected[name].shape):
            problems.append(
                f"{name} of shape {list(tensor.shape)} where the config needs "
                f"{list(expected[name].shape)}"
            )
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise UsageError(
            f"its weights do not fit its model config: {', '.join(problems[:3])}{more}"
        )


def check_input_encoding(info: dict[str, Any]) -> None:
    """``UsageError`` unless the ``input`` entry's encoding parses (``tabular``: a card
    ``TabularSpec``; ``image_files``: a card ``ImageFiles``) and fits ``sample_shape``."""
    shape = [int(d) for d in info["sample_shape"]]
    try:
        columns = None
        if info.get("tabular") is not None:
            columns = TabularSpec.model_validate(info["tabular"]).columns
        files = None
        if info.get("image_files") is not None:
            files = ImageFiles.model_validate(info["image_files"])
    except ValueError as exc:
        first = str(exc).strip().splitlines()[0]
        raise UsageError(f"its input encoding is not valid ({first})") from None
    if columns is not None and [len(columns)] != shape:
        raise UsageError(f"its input encoding makes {len(columns)} columns, not {shape}")
    if files is not None and (len(shape) != 3 or shape[0] != (1 if files.mode == "L" else 3)):
        raise UsageError(f"its image files in mode {files.mode} do not make samples of {shape}")


def _unreadable(path: Path) -> str:
    """Why ``torch.load`` refused ``path``, in the user's terms."""
    size = path.stat().st_size
    if size == 0:
        return "the file is empty"
    if not zipfile.is_zipfile(path):
        return f"{size} bytes that are not a PyTorch checkpoint; truncated or another format?"
    return (
        "a PyTorch file that is damaged or holds more than plain tensors and values; "
        "write it again with `python -m training train`"
    )


def _stats_mode(value: object) -> StatsMode:
    if value == "ema":
        return "ema"
    if value == "exact":
        return "exact"
    raise ValueError(f"stats_mode must be 'ema' or 'exact', got {value!r}")
