"""schemathesis against the app's own OpenAPI schema: no 5xx, responses conform.

Runs against the service under uvicorn, so that the schema is the one the
loaded model produced (request bodies and examples derived from its card).
schemathesis' pytest plugin (``from_fixture``) fails under pytest 9, so each
operation's hypothesis strategy is driven directly.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = pytest.mark.slow
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_operation_conforms(live_image: str, mode: GenerationMode) -> None:
    schema = schemathesis.openapi.from_url(f"{live_image}/openapi.json")
    seen = []
    for result in schema.get_all_operations():
        operation = result.ok()
        seen.append(operation.label)

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=30, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(checks=CHECKS, timeout=10)

        try:
            check()
        except Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE  # nothing to break: no parameters, no body
    assert "POST /predict" in seen and "POST /v2/models/{model_name}/infer" in seen
