"""The POST routes' work, from headers and an ASGI ``receive`` to response bytes.

One implementation per route, called by both the FastAPI routes (which document
them and answer under any path prefix) and the ASGI fast path in front of them
(``service.fastpath``), so that the two can never answer differently. Errors are
raised as ``ServiceError`` and rendered by the one handler (``service.errors``).
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import Receive

from service.body import read_inference, read_json, read_sample
from service.jsonio import dumps
from service.oip_infer import find_model, infer_response, parse_infer
from service.predictor import Slot


class Endpoints:
    """``/predict``, ``/predict/batch`` and V2 infer for the model in ``slot``."""

    def __init__(self, slot: Slot, body_limit: int) -> None:
        self.slot = slot
        self.limit = body_limit

    async def predict(self, headers: Headers, receive: Receive) -> bytes:
        """One sample, in the shape the model card declares, or an image file."""
        predictor = self.slot.get()
        files = predictor.images.files is not None
        return predictor.predict(await read_sample(headers, receive, self.limit, files))

    async def predict_batch(self, headers: Headers, receive: Receive) -> bytes:
        """Up to MAX_BATCH_SIZE samples; each equals ``/predict`` on it alone."""
        predictor = self.slot.get()
        return predictor.predict_batch(await read_json(headers, receive, self.limit))

    async def infer(
        self, headers: Headers, receive: Receive, model_name: str, model_version: str | None
    ) -> bytes:
        """An Open Inference Protocol infer request (JSON, or the binary tensor extension)."""
        predictor = find_model(self.slot, model_name, model_version)
        payload, binary = await read_inference(headers, receive, self.limit)
        batch, wanted, request_id = parse_infer(predictor, payload, binary)
        return dumps(infer_response(predictor, batch, wanted, request_id))
