"""``python -m training fold CHECKPOINT [--json OUT]``: fold every BatchNorm and show the report.

The network is rebuilt from the checkpoint (it takes standardized input) and
folded on standardized training samples; nothing is written except the JSON
report when ``--json`` is given. ``export`` does the same fold before exporting.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np
import torch

from training.atomic import write_text_atomic
from training.checkpoint import Checkpoint, load_checkpoint
from training.errors import UsageError
from training.folding import fold_batchnorm

DEFAULT_SAMPLES = 256


def register(subparsers: Any) -> None:
    """Add the ``fold`` sub-command."""
    parser = subparsers.add_parser(
        "fold",
        help="fold BatchNorm into the weights and print what was folded and why not",
        description="Fold every BatchNorm of a checkpoint's network into the neighbouring "
        "Linear/Conv layer, verify each fold and print the report as a table.",
    )
    parser.add_argument("checkpoint", help="checkpoint.pt written by `python -m training train`")
    parser.add_argument("--json", metavar="OUT", help="also write the full report as JSON to OUT")
    parser.add_argument(
        "--samples",
        type=int,
        default=DEFAULT_SAMPLES,
        help="training samples used to verify the folds (default: %(default)s)",
    )
    parser.set_defaults(func=run)


def example_inputs(ckpt: Checkpoint, samples: int) -> tuple[torch.Tensor, str]:
    """Standardized training samples, or standard-normal ones if the data cannot be read."""
    if samples < 1:
        raise UsageError(f"--samples must be at least 1, got {samples}")
    from training.data import load_splits

    try:
        x = load_splits(ckpt.data_spec).train.X[:samples]
        source = f"{len(x)} standardized training samples"
        x = ckpt.standardization.apply(x)
    except (UsageError, OSError) as exc:
        # The data may be gone (e.g. a CSV on another machine): the fold itself only
        # needs inputs of the right shape, and standardized data is ~N(0, 1).
        shape = tuple(int(d) for d in ckpt.input["sample_shape"])
        x = np.random.default_rng(0).standard_normal((samples, *shape)).astype(np.float32)
        source = f"{samples} random N(0,1) samples (training data unavailable: {exc})"
    return torch.as_tensor(np.asarray(x), dtype=torch.float32), source


def run(args: argparse.Namespace) -> int:
    """Fold and print the report; write it as JSON if asked."""
    ckpt = load_checkpoint(args.checkpoint)
    try:
        model = ckpt.build()
    except (RuntimeError, ValueError) as exc:  # load_state_dict: keys or shapes disagree
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UsageError(
            f"{args.checkpoint}: weights do not fit the model config ({first})"
        ) from exc
    x, source = example_inputs(ckpt, args.samples)
    result = fold_batchnorm(model, x)
    report = result.report
    print(report.render(color=sys.stdout.isatty()))
    print(f"verified on {source}; BatchNorm layers left in the folded model: {result.bn_left}")
    if args.json:
        write_text_atomic(args.json, report.to_json() + "\n")
        print(f"report written to {args.json}")
    return 0
