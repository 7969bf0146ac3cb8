"""SIGTERM under load: no request is dropped, the exit status is 0, for 1 and 2 workers.

A short run of ``benchmarks/drain.py``: 32 keep-alive connections in a closed
loop, SIGTERM after about a second. Before the drain, uvicorn reset 32 requests
and exited 143 (1 worker), or reset 64-96 (2 workers).
"""

from __future__ import annotations

import sys

import pytest
from service_helpers import REAL_MODEL, REPO, free_port

sys.path.insert(0, str(REPO / "benchmarks"))
import drain

pytestmark = pytest.mark.slow
GRACE = 5.0


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_under_load_drops_nothing_and_exits_0(workers: int) -> None:
    result = drain.run(
        REAL_MODEL,
        free_port(),
        workers,
        connections=32,
        before=1.5,
        after=2.0,
        env={"TIMEOUT_SHUTDOWN": str(GRACE)},
    )
    assert result["exit_status"] == 0, result
    assert result["failed"] == 0 and result["non_200"] == 0, result
    assert result["answered"] == result["sent"] > 0, result
    # Every keep-alive connection was told to close, and the load went on into the drain.
    assert result["closed_by_server"] == 32, result
    assert result["answered_after_sigterm"] > 0, result
    assert result["exit_seconds"] < GRACE + 5, result
