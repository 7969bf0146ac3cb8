"""The model digest: what makes a bnfold file tamper-evident and names its version.

The digest is a SHA-256 over

* every top-level field of the ONNX ``ModelProto`` except ``metadata_props``, as the
  bytes stand in the file: the whole graph (nodes, attributes, initializers,
  inputs/outputs, subgraphs), the opset imports, the IR version, local functions;
* the model card's canonical JSON without its ``digest`` field.

So changing one node, attribute, weight or card field (the golden tolerance, a
label...) changes the digest, and the version with it. Hashing the bytes as they
stand needs no canonical re-serialization, and works the same with or without the
``onnx`` package. The exporter seals the file without the card (``seal``),
the service checks the file it is given (``check``).

A digest is not a signature: whoever can write the file can recompute it. An
operator who needs more pins the expected digest in the service's settings.
"""

from __future__ import annotations

import hashlib

from bnfold import onnxwire
from bnfold.card import CARD_KEY, ModelCard, card_from_json

__all__ = ["DigestError", "check", "model_digest", "read_card", "seal"]

_DOMAIN = b"bnfold model digest v2\n"


class DigestError(ValueError):
    """The file has no card, an invalid one, or a digest that does not match it."""


def model_digest(data: bytes, card: ModelCard) -> str:
    """The hex digest of the serialized model ``data`` together with ``card``."""
    digest = hashlib.sha256(_DOMAIN)
    for field, wire, value in onnxwire.fields(data):
        if field == onnxwire.MODEL_METADATA:
            continue
        if isinstance(value, int):
            digest.update(f"{field}:{wire}:{value}\n".encode())
        else:
            digest.update(f"{field}:{wire}:{len(value)}\n".encode())
            digest.update(value)
    digest.update(b"card\n")
    digest.update(card.canonical_unsealed())
    return digest.hexdigest()


def seal(data: bytes, card: ModelCard) -> tuple[bytes, ModelCard]:
    """The sealed file and card: ``data`` (a serialized model without a card) with ``card``
    and its digest appended to the metadata."""
    if CARD_KEY in onnxwire.metadata(data):
        raise DigestError(f"the model already has a '{CARD_KEY}' entry")
    sealed = card.model_copy(update={"digest": model_digest(data, card)})
    return data + onnxwire.metadata_entry(CARD_KEY, sealed.to_json()), sealed


def read_card(data: bytes) -> ModelCard:
    """The card stored in the serialized model ``data`` (not checked against the digest).

    Raises ``DigestError`` for a file without a card or with an invalid one (the
    message names the first field at fault), ``onnxwire.WireError`` for bytes that
    are not protobuf.
    """
    props = onnxwire.metadata(data)
    if CARD_KEY not in props:
        raise DigestError(f"the model has no '{CARD_KEY}' metadata (not exported by bnfold?)")
    text = props[CARD_KEY]
    try:
        return card_from_json(text)
    except ValueError as exc:
        raise DigestError(f"invalid model card: {describe_validation(exc, text)}") from None


def check(data: bytes) -> ModelCard:
    """The card of ``data`` after checking that the file's digest matches it."""
    card = read_card(data)
    if not card.digest:
        raise DigestError("the model card has no digest (the file was never sealed)")
    actual = model_digest(data, card)
    if actual != card.digest:
        raise DigestError(
            f"digest {actual[:16]}... differs from the card's {card.digest[:16]}... "
            "(the graph, the weights or the card changed after export)"
        )
    return card


def describe_validation(exc: Exception, text: str | bytes = "") -> str:
    """One line naming the field(s) at fault in a card ``ValidationError``."""
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return "not valid JSON" if text else str(exc).splitlines()[0]
    parts = []
    for err in errors(include_input=False, include_url=False)[:3]:
        where = ".".join(str(p) for p in err.get("loc", ())) or "card"
        kind = err.get("type", "")
        if kind == "json_invalid":
            return "not valid JSON"
        if kind == "literal_error" and where == "schema_version":
            return "schema_version: this service reads card schema version 2 (re-export the model)"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)
