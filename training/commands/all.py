"""``python -m training all``: train -> fold -> export -> verify in one command."""

from __future__ import annotations

import argparse
import json
import time

from training.atomic import write_text_atomic
from training.checkpoint import load_checkpoint
from training.commands.export import export_rows
from training.commands.export_options import ExportOptions
from training.commands.train import run_train
from training.commands.verify import evaluation_data, show_report
from training.console import print_table, seconds
from training.distributed import DistEnv
from training.export import export_checkpoint
from training.option_parser import from_args
from training.reference import reference_model
from training.verify import verify_model


def run(args: argparse.Namespace) -> int:
    """Run the four steps; exit 1 if verification fails."""
    start = time.perf_counter()
    checkpoint = run_train(args)
    if not DistEnv.from_environ().is_main:
        return 0  # under torchrun only rank 0 has the checkpoint to export

    options: ExportOptions = from_args(ExportOptions, args)
    export_start = time.perf_counter()
    result = export_checkpoint(
        checkpoint,
        checkpoint.parent,
        name=options.name,
        allow_unfolded=options.allow_unfolded,
        opset=options.opset,
    )
    export_time = time.perf_counter() - export_start
    print_table("export", export_rows(result))

    verify_start = time.perf_counter()
    ckpt = load_checkpoint(checkpoint)
    x, y = evaluation_data(ckpt, None, None, args.split)
    report = verify_model(result.path, reference_model(ckpt), x, y)
    verify_time = time.perf_counter() - verify_start
    show_report(report)
    write_text_atomic(
        result.path.parent / "verify.json", json.dumps(report.to_dict(), indent=2) + "\n"
    )

    metrics = ckpt.metrics
    # The training figures are the ones the train step measured and printed (its summary
    # line); the rest of that step (data, plots, files) is in the total.
    timings = [
        (f"training loop ({int(metrics['epochs_run'])} epochs)", metrics["train_time_s"]),
        ("exact statistics", metrics["exact_stats_time_s"]),
        ("fold + export", export_time),
        (f"verify ({args.split} split)", verify_time),
        ("total (data, plots and files included)", time.perf_counter() - start),
    ]
    print_table(
        "summary",
        [
            *((f"{k}", v) for k, v in sorted(metrics.items()) if k.startswith(("val_", "test_"))),
            (f"{args.split} accuracy (ONNX Runtime)", report.parity.accuracy),
            *((f"time: {step}", seconds(value)) for step, value in timings),
            ("model", result.path),
            ("verified", report.passed),
        ],
    )
    return 0 if report.passed else 1
