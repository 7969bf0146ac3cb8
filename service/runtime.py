"""The ONNX Runtime session behind the service, checked against its model card.

This module knows nothing of HTTP. ``ModelRuntime.load`` refuses, with a
one-line ``ModelLoadError``, anything but a regular file of bounded size, and
any file whose digest, BatchNormalization count or golden samples disagree with
its card (or whose digest is not the one the operator pinned): the service never
serves a model that disagrees with its own card.
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path
from typing import Any

# onnxruntime >= 1.32 ships usage telemetry on Linux (it tries to persist a device id
# in $HOME, which fails for a non-root user with a read-only home). A model server
# reports nothing to anyone: off unless the operator explicitly sets the variable.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

import numpy as np
import onnxruntime as ort

from bnfold import digest, onnxwire
from bnfold.card import OUTPUTS, ModelCard

__all__ = [
    "DEFAULT_MAX_BYTES",
    "FileIdentity",
    "ModelLoadError",
    "ModelRuntime",
    "file_identity",
    "read_model_file",
]

DEFAULT_MAX_BYTES = 256 << 20  # Settings.max_model_bytes' default


# (device, inode, size, modification time in ns): which file, in which state, was read.
FileIdentity = tuple[int, int, int, int]


def file_identity(info: os.stat_result) -> FileIdentity:
    """The ``FileIdentity`` of a ``stat`` result: a replaced or rewritten file changes it."""
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)


class ModelLoadError(Exception):
    """The model file cannot be served; the message is one line."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class ModelRuntime:
    """The ORT session(s) of one model plus the card it was checked against.

    ``run`` and ``run_monitored`` are the calls on the request path: they take a
    float32 array of shape ``(N, *card.input.sample_shape)`` that the caller has
    validated. ``run`` uses ``session``, the graph without the drift monitor's
    internal output (ONNX Runtime computes every node of a graph, asked for or not,
    and the monitor's nodes cost about 60% of a small model's run);
    ``run_monitored`` uses ``monitor_session``, the whole graph, which returns the
    answers and the monitor's statistics in the same call. Loading checks that the
    two graphs give bit-identical answers, so monitoring never changes one; where
    they do not, ``run_monitored`` answers from ``session`` and adds a second call.
    """

    def __init__(
        self,
        session: ort.InferenceSession,
        card: ModelCard,
        path: Path,
        load_seconds: float,
        monitor_session: ort.InferenceSession | None = None,
    ) -> None:
        self.session = session
        self.monitor_session = monitor_session
        self.card = card
        self.path = path
        self.load_seconds = load_seconds
        self.name = card.name
        self.version = card.version
        self.input_name = card.input.name
        self.sample_shape: tuple[int, ...] = card.input.sample_shape
        self.labels: list[str] = list(card.labels)
        self._outputs = list(OUTPUTS)
        # The card's internal outputs (the drift monitor's): never returned to clients.
        self._internal = [card.monitor.output] if card.monitor else []
        self._run = session.run
        self._whole_answers = False  # set by _check_monitor: the whole graph answers alike
        self.checks: dict[str, object] = {}
        self.source: FileIdentity | None = None  # the file as it was read (``load``)

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        intra_op_threads: int = 1,
        inter_op_threads: int = 1,
        max_bytes: int = DEFAULT_MAX_BYTES,
        expected_digest: str | None = None,
        monitor: bool = True,
    ) -> ModelRuntime:
        """Read ``path``, run every startup check and return a ready runtime.

        ``path`` must be a regular file of at most ``max_bytes``; ``expected_digest``
        (a prefix of the 64 hex digits) pins the model that may be served; ``monitor``
        False loads no session for the drift monitor's statistics.
        """
        start = time.perf_counter()
        path = Path(path)
        data, source = read_model_file(path, max_bytes)
        card, bn_nodes = _check_file(data, path)
        if expected_digest is not None and not card.digest.startswith(expected_digest):
            raise ModelLoadError(
                f"{path}: digest {card.digest[:16]}... is not the pinned MODEL_DIGEST "
                f"{expected_digest[:16]}..."
            )

        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = inter_op_threads
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        answers, whole = data, None
        if card.monitor is not None:
            # The checked file, less its internal output (None for a graph with subgraphs,
            # which then answers with the whole graph); the whole graph is checked even if
            # the monitor is off, so that a file never disagrees with its card unnoticed.
            answers = onnxwire.prune_outputs(data, {card.monitor.output}) or data
            whole = data
        try:
            session = ort.InferenceSession(answers, options, providers=["CPUExecutionProvider"])
            monitor_session = (
                None
                if whole is None
                else ort.InferenceSession(whole, options, providers=["CPUExecutionProvider"])
            )
        except Exception as exc:  # ORT raises several unrelated types for bad graphs
            raise ModelLoadError(f"ONNX Runtime refused {path}: {_first_line(exc)}") from None
        del data, answers, whole
        runtime = cls(session, card, path, 0.0, monitor_session)
        runtime.source = source
        runtime._check_session()
        golden = runtime._check_golden()
        runtime._check_monitor()
        if not monitor:
            runtime.monitor_session = None
        runtime.checks = {"digest": card.digest, "batch_normalization_nodes": bn_nodes, **golden}
        runtime.load_seconds = time.perf_counter() - start
        return runtime

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Logits and probabilities, each ``(N, classes)`` float32, for a validated batch.

        Each sample runs on its own, so a sample's result never depends on what
        else is in the batch (ORT may pick other kernels for other batch sizes).
        """
        logits, probs = self._each(self._outputs, batch)
        return logits, probs

    def run_monitored(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``run``'s answers plus the monitor's internal output ``(N, columns)``."""
        session = self.monitor_session
        if session is None:
            raise RuntimeError("this runtime was loaded without its monitor session")
        if self._whole_answers:
            logits, probs, stats = self._each([*self._outputs, *self._internal], batch, session.run)
        else:
            logits, probs = self.run(batch)
            stats = self._each(self._internal, batch, session.run)[0]
        return logits, probs, stats

    def _each(self, outputs: list[str], batch: np.ndarray, run: Any = None) -> list[np.ndarray]:
        run, name = run or self._run, self.input_name
        if len(batch) == 1:
            return run(outputs, {name: batch})
        rows = [run(outputs, {name: batch[i : i + 1]}) for i in range(len(batch))]
        return [np.concatenate([r[k] for r in rows]) for k in range(len(outputs))]

    def _check_monitor(self) -> None:
        monitor, session = self.card.monitor, self.monitor_session
        if monitor is None or session is None:
            return
        names = [o.name for o in session.get_outputs()]
        if names != [*self._outputs, *self._internal]:
            raise ModelLoadError(
                f"graph outputs {names} differ from the contract's "
                f"{[*self._outputs, *self._internal]} (the public outputs, then the card's "
                "internal ones)"
            )
        golden = np.asarray([g.input for g in self.card.golden], dtype=np.float32)
        golden = golden.reshape((-1, *self.sample_shape))
        try:
            whole = self._each([*self._outputs, *self._internal], golden, session.run)
        except Exception as exc:  # ORT raises several unrelated types
            raise ModelLoadError(f"the monitor output fails: {_first_line(exc)}") from None
        lean = self.run(golden)
        self._whole_answers = all(np.array_equal(a, b) for a, b in zip(lean, whole, strict=False))
        stats = whole[-1][:1]
        if stats.shape != (1, monitor.columns):
            raise ModelLoadError(
                f"the monitor output {monitor.output!r} has shape {list(stats.shape[1:])}, "
                f"the card's monitor needs [{monitor.columns}]"
            )

    def _check_session(self) -> None:
        card = self.card
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or inputs[0].name != card.input.name:
            found = [i.name for i in inputs]
            raise ModelLoadError(f"graph inputs {found} differ from the card's {card.input.name!r}")
        shape = list(inputs[0].shape)
        declared = card.input.shape
        if len(shape) != len(declared) or any(
            isinstance(got, int) and got != want
            for got, want in zip(shape[1:], declared[1:], strict=True)
        ):
            raise ModelLoadError(f"graph input shape {shape} differs from the card's {declared}")
        names = [o.name for o in self.session.get_outputs()]
        if names not in (self._outputs, [*self._outputs, *self._internal]):
            raise ModelLoadError(
                f"graph outputs {names} differ from the contract's "
                f"{[*self._outputs, *self._internal]} (the public outputs, then the card's "
                "internal ones)"
            )

    def _check_golden(self) -> dict[str, object]:
        card = self.card
        if not card.golden:
            raise ModelLoadError("the card has no golden samples to check the model against")
        batch = np.empty((len(card.golden), *self.sample_shape), dtype=np.float32)
        for i, sample in enumerate(card.golden):  # the card checked the sizes
            batch[i] = np.asarray(sample.input, dtype=np.float32).reshape(self.sample_shape)
        try:
            probs = self.run(batch)[1]
        except Exception as exc:
            raise ModelLoadError(
                f"the model fails on its golden samples: {_first_line(exc)}"
            ) from None
        if probs.shape != (len(card.golden), len(self.labels)):
            raise ModelLoadError(
                f"probabilities have shape {list(probs.shape[1:])}, "
                f"the card has {len(self.labels)} labels"
            )
        worst = 0.0
        for sample, got in zip(card.golden, probs, strict=True):
            delta = float(np.max(np.abs(got - np.asarray(sample.probabilities, np.float32))))
            if not delta <= card.golden_tolerance:  # NaN fails too
                raise ModelLoadError(
                    f"golden sample {sample.note!r} does not reproduce: max |Δprobability| "
                    f"{delta:.3g} > tolerance {card.golden_tolerance:.3g}"
                )
            worst = max(worst, delta)
        whole = self.session.run(self._outputs, {self.input_name: batch})[1]
        if not np.allclose(whole, probs, rtol=0, atol=card.golden_tolerance):
            raise ModelLoadError("results depend on the batch (BatchNorm in training mode?)")
        return {
            "golden_samples": len(card.golden),
            "golden_tolerance": card.golden_tolerance,
            "golden_max_abs_delta": worst,
        }


def read_model_file(path: Path, max_bytes: int) -> tuple[bytes, FileIdentity]:
    """The bytes of ``path``, a regular file of at most ``max_bytes`` (one-line error if not),
    and the identity of the file they were read from.

    Opened without blocking and checked with ``fstat`` on the open file: a FIFO would
    hang a plain ``read`` forever and ``/dev/zero`` would fill the memory.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise ModelLoadError(f"cannot read model file {path}: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ModelLoadError(f"model file {path} is not a regular file")
        if info.st_size > max_bytes:
            raise ModelLoadError(
                f"model file {path} has {info.st_size} bytes, more than MAX_MODEL_BYTES={max_bytes}"
            )
        with open(fd, "rb", closefd=False) as file:
            data = file.read(max_bytes + 1)
    except OSError as exc:
        raise ModelLoadError(f"cannot read model file {path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:  # it grew while we read it
        raise ModelLoadError(f"model file {path} is larger than MAX_MODEL_BYTES={max_bytes}")
    return data, file_identity(info)


def _check_file(data: bytes, path: Path) -> tuple[ModelCard, int]:
    """The card (digest checked) and the BatchNormalization count, read without ``onnx``."""
    try:
        card = digest.check(data)
        bn = onnxwire.count_ops(data, "BatchNormalization")
    except digest.DigestError as exc:
        raise ModelLoadError(f"{path}: {exc}") from None
    except ValueError:
        raise ModelLoadError(f"{path} is not an ONNX model (cannot parse the protobuf)") from None
    if bn:
        raise ModelLoadError(
            f"{bn} BatchNormalization node(s) left in the graph; serve folded models only"
        )
    return card, bn
