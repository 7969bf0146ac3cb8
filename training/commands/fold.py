"""``python -m training fold CHECKPOINT [--json OUT]``: fold every BatchNorm and show the report.

The network is rebuilt from the checkpoint (it takes standardized input) and
folded on standardized training samples; nothing is written except the JSON
report when ``--json`` is given. ``export`` does the same fold before exporting.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from training.atomic import write_text_atomic
from training.checkpoint import Checkpoint, load_checkpoint
from training.commands.fold_options import FoldOptions
from training.console import say
from training.data import load_splits
from training.errors import UsageError
from training.folding import fold_batchnorm
from training.option_parser import from_args


def example_inputs(ckpt: Checkpoint, samples: int) -> tuple[torch.Tensor, str]:
    """Standardized training samples, or standard-normal ones if the data cannot be read."""
    try:
        x = load_splits(ckpt.data_spec).train.X[:samples]
        source = f"{len(x)} standardized training samples"
        x = ckpt.standardization.apply(x)
    except (UsageError, OSError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        # The data may be gone (e.g. a CSV on another machine): the fold itself only
        # needs inputs of the right shape, and standardized data is ~N(0, 1).
        shape = tuple(int(d) for d in ckpt.input["sample_shape"])
        x = np.random.default_rng(0).standard_normal((samples, *shape)).astype(np.float32)
        source = f"{samples} random N(0,1) samples (training data unavailable: {reason})"
    return torch.as_tensor(np.asarray(x), dtype=torch.float32), source


def run(args: argparse.Namespace) -> int:
    """Fold and print the report; write it as JSON if asked."""
    options: FoldOptions = from_args(FoldOptions, args)
    ckpt = load_checkpoint(options.checkpoint)
    model = ckpt.build()
    x, source = example_inputs(ckpt, options.samples)
    result = fold_batchnorm(model, x)
    report = result.report
    say(report.render(color=sys.stdout.isatty()))
    say(f"verified on {source}; BatchNorm layers left in the folded model: {result.bn_left}")
    if options.json:
        write_text_atomic(options.json, report.to_json() + "\n")
        say(f"report written to {options.json}")
    return 0
