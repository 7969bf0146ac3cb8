"""The proof that an exported model is right (``python -m training verify``).

* Parity: ONNX Runtime, one sample at a time, against the UNFOLDED PyTorch model in
  eval mode (float64) on a whole split: identical argmax, max |Δprobability| ≤ 1e-5.
* Batch independence: every sample's output alone equals its output inside batches
  of 2…64 random other samples, within 1e-6. A model that still normalised with
  batch statistics fails this.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort
from torch import nn

from bnfold import digest, onnxwire
from training.errors import UsageError
from training.onnx_graph import ort_session
from training.reference import reference_outputs

PARITY_TOLERANCE = 1e-5
BATCH_TOLERANCE = 1e-6
BATCH_SIZES = range(2, 65)


@dataclass(frozen=True)
class ParityResult:
    """ONNX Runtime vs the unfolded PyTorch oracle."""

    samples: int
    argmax_mismatches: int
    max_abs_prob_diff: float
    max_abs_logit_diff: float
    accuracy: float | None
    tolerance: float = PARITY_TOLERANCE

    @property
    def passed(self) -> bool:
        return self.argmax_mismatches == 0 and self.max_abs_prob_diff <= self.tolerance


@dataclass(frozen=True)
class BatchIndependenceResult:
    """Each sample alone vs inside batches of random others."""

    min_batch: int
    max_batch: int
    batches: int
    comparisons: int
    max_abs_prob_diff: float
    tolerance: float = BATCH_TOLERANCE

    @property
    def passed(self) -> bool:
        return self.max_abs_prob_diff <= self.tolerance


@dataclass(frozen=True)
class VerifyReport:
    """Everything ``verify`` checked; ``passed`` only if every check passed."""

    model: str
    bn_nodes: int
    card_bn_nodes: int
    digest_matches_card: bool
    parity: ParityResult
    batch_independence: BatchIndependenceResult
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return (
            self.bn_nodes == self.card_bn_nodes
            and self.digest_matches_card
            and self.parity.passed
            and self.batch_independence.passed
        )

    def to_dict(self) -> dict[str, object]:
        """A JSON-serialisable form, with every ``passed`` flag spelled out."""
        data = asdict(self)
        data["parity"]["passed"] = self.parity.passed
        data["batch_independence"]["passed"] = self.batch_independence.passed
        data["passed"] = self.passed
        return data


def run_probabilities(session: ort.InferenceSession, x: np.ndarray) -> np.ndarray:
    """The ``probabilities`` output of ``session`` for the batch ``x``."""
    name = session.get_inputs()[0].name
    return np.asarray(session.run(["probabilities"], {name: x.astype(np.float32)})[0])


def run_alone(session: ort.InferenceSession, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Logits and probabilities of every sample of ``x``, each run as a batch of one."""
    name = session.get_inputs()[0].name
    outputs = [
        session.run(["logits", "probabilities"], {name: x[i : i + 1]}) for i in range(len(x))
    ]
    logits = np.concatenate([o[0] for o in outputs])
    probs = np.concatenate([o[1] for o in outputs])
    return logits, probs


def check_parity(
    session: ort.InferenceSession,
    oracle: nn.Module,
    x: np.ndarray,
    y: np.ndarray | None = None,
    *,
    tolerance: float = PARITY_TOLERANCE,
) -> ParityResult:
    """Compare ``session`` (one sample at a time) with ``oracle`` (float64) on ``x``."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    logits, probs = run_alone(session, x)
    ref_logits, ref_probs = reference_outputs(oracle, x)
    predicted = probs.argmax(axis=1)
    return ParityResult(
        samples=len(x),
        argmax_mismatches=int(np.sum(predicted != ref_probs.argmax(axis=1))),
        max_abs_prob_diff=float(np.max(np.abs(probs - ref_probs))),
        max_abs_logit_diff=float(np.max(np.abs(logits - ref_logits))),
        accuracy=None if y is None else float(np.mean(predicted == y)),
        tolerance=tolerance,
    )


def check_batch_independence(
    session: ort.InferenceSession,
    x: np.ndarray,
    *,
    sizes: range = BATCH_SIZES,
    seed: int = 0,
    tolerance: float = BATCH_TOLERANCE,
) -> BatchIndependenceResult:
    """For every batch size, run every sample once inside a batch of random other samples."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = len(x)
    if n < 2:
        raise UsageError("batch independence needs at least 2 samples")
    _, alone = run_alone(session, x)
    rng = np.random.default_rng(seed)
    worst, batches, comparisons = 0.0, 0, 0
    for size in sizes:
        order = rng.permutation(n)
        for start in range(0, n, size):
            members = order[start : start + size]
            fillers = rng.choice(n, size=size - len(members))  # pad the last batch
            batch = np.concatenate([members, fillers])
            rng.shuffle(batch)
            probs = run_probabilities(session, x[batch])
            worst = max(worst, float(np.max(np.abs(probs - alone[batch]))))
            batches += 1
            comparisons += size
    return BatchIndependenceResult(
        min_batch=sizes.start,
        max_batch=sizes.stop - 1,
        batches=batches,
        comparisons=comparisons,
        max_abs_prob_diff=worst,
        tolerance=tolerance,
    )


def verify_model(
    model_path: str | os.PathLike[str],
    oracle: nn.Module,
    x: np.ndarray,
    y: np.ndarray | None = None,
) -> VerifyReport:
    """Run every check on the ONNX file at ``model_path`` against ``oracle`` on ``x``."""
    path = Path(model_path)
    if not path.is_file():
        raise UsageError(f"model file {path} does not exist")
    data = path.read_bytes()
    try:
        card = digest.read_card(data)
        bn_nodes = onnxwire.count_ops(data, "BatchNormalization")
    except digest.DigestError as exc:
        raise UsageError(f"{path}: {exc}") from None
    except ValueError:
        raise UsageError(f"{path} is not a readable ONNX file") from None
    try:
        digest.check(data)
        sealed = True
    except digest.DigestError:
        sealed = False
    session = ort_session(str(path))
    notes = []
    if card.bn_nodes:
        notes.append(f"exported with --allow-unfolded: {card.bn_nodes} BatchNorm node(s) left")
    return VerifyReport(
        model=str(path),
        bn_nodes=bn_nodes,
        card_bn_nodes=card.bn_nodes,
        digest_matches_card=sealed,
        parity=check_parity(session, oracle, x, y),
        batch_independence=check_batch_independence(session, x),
        notes=notes,
    )
