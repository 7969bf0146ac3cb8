"""The one error ``fold_batchnorm`` raises for input it cannot work with."""

from __future__ import annotations

from training.errors import UsageError


class FoldingError(UsageError, ValueError):
    """The model or the example inputs cannot be folded at all (e.g. training mode).

    A ``UsageError`` (the CLI prints it as one line, exit 2) and a ``ValueError``
    (for library callers). A BN that merely cannot be folded is *not* an error: it
    is reported as refused in the ``FoldReport`` and stays in the model.
    """
