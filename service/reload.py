"""Zero-downtime model swap: SIGHUP (or MODEL_POLL_SECONDS) reloads MODEL_PATH while serving.

``Reloader.request`` starts a reload on the event loop; the file is read and
put through every startup check (``ModelRuntime.load``) in a thread, so requests
keep being answered meanwhile. A model that passes replaces the served one in
one assignment (``Slot.predictor``): a request holds the predictor it started
with, so in-flight requests finish on the old model and new ones get the new
one; ``/model``, ``model_version``, the metrics and the drift monitor (a new
window on the new model's reference) follow. A file that fails any check is
refused with one log line and the old model serves on
(``bnfold_model_reloads_total{result}``). Requests that arrive during a reload
make one more reload once it ends, so the last file written is the one served.

Signals: ``python -m service`` blocks SIGHUP from its start, so a SIGHUP that
arrives while the model loads is kept pending instead of ending the process;
workers spawned by the supervisor inherit the blocked mask. The app's lifespan
installs the handler and unblocks it (``Reloader.start``); the supervisor keeps
it blocked, takes it with ``take_sighup`` and forwards it to every worker
(``service.serving.Supervisor``), which reloads on its own. After startup the
file is compared with the one read (its device, inode, size and modification
time), so a file replaced while the model loaded is noticed too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path

from service.metrics import Metrics
from service.predictor import Predictor, Slot
from service.runtime import FileIdentity, ModelLoadError, ModelRuntime, file_identity

log = logging.getLogger("service")

Loader = Callable[[], Predictor]  # reads and checks MODEL_PATH; ModelLoadError if refused


def take_sighup() -> bool:
    """Whether a SIGHUP was pending here (it is consumed); SIGHUP must be blocked."""
    return signal.sigtimedwait({signal.SIGHUP}, 0) is not None


class Reloader:
    """Reloads of the model in ``slot`` (see the module docstring)."""

    def __init__(
        self,
        slot: Slot,
        metrics: Metrics,
        path: Path,
        load: Loader,
        swapped: Callable[[], None],
    ) -> None:
        self.slot = slot
        self.metrics = metrics
        self.path = path
        self.load = load
        self.swapped = swapped  # called after each swap (e.g. drop the cached OpenAPI schema)
        self.tried: FileIdentity | None = None  # the file the last reload read
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._again = False
        self._poller: asyncio.Task[None] | None = None
        self._closed = False

    def install(self, predictor: Predictor) -> None:
        """Serve ``predictor`` from now on (startup, and every successful reload)."""
        previous = self.slot.predictor
        self.slot.predictor = predictor
        runtime = predictor.runtime
        old = None if previous is None else previous.runtime
        self.metrics.serving(runtime.name, runtime.version, runtime.load_seconds, old)
        self.swapped()

    def start(self, poll_seconds: float = 0.0) -> None:
        """Begin listening (on the running loop): SIGHUP when this is the main thread, the
        file every ``poll_seconds`` if set; a file changed since it was read reloads now."""
        self._loop = asyncio.get_running_loop()
        if threading.current_thread() is threading.main_thread():
            self._loop.add_signal_handler(signal.SIGHUP, self.request, "SIGHUP")
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})
        if poll_seconds > 0:
            self._poller = self._loop.create_task(self._poll(poll_seconds))
        if self.changed():
            self.request("MODEL_PATH changed during startup")

    async def close(self) -> None:
        """Stop listening and cancel a reload in progress (the server is shutting down)."""
        self._closed = True
        if self._loop is not None and threading.current_thread() is threading.main_thread():
            self._loop.remove_signal_handler(signal.SIGHUP)
        for task in (self._poller, self._task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def request(self, why: str = "request") -> None:
        """Reload soon (on the loop thread); during a reload, once more after it."""
        if self._closed:
            return
        if self._task is not None and not self._task.done():
            self._again = True
            return
        loop = self._loop or asyncio.get_running_loop()
        self._task = loop.create_task(self._reloads(why))

    async def wait(self) -> None:
        """Until the requested reloads are done (tests, and ``reload``)."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    async def reload(self, why: str = "request") -> str:
        """Reload now; the result: ``success``, ``refused`` or ``unchanged``."""
        current = self.slot.get()
        self.tried = self._identity()
        try:
            predictor = await asyncio.to_thread(self.load)
        except Exception as exc:  # whatever fails, the served model must stay
            reason = str(exc) if isinstance(exc, ModelLoadError) else _unexpected(exc)
            self.metrics.reloads.labels("refused").inc()
            log.error(
                "model reload (%s) refused, still serving version %s: %s",
                why,
                current.version,
                reason,
            )
            return "refused"
        if self._closed:
            return "refused"
        new = predictor.runtime
        self.tried = new.source
        if new.card.digest == current.runtime.card.digest:
            self.metrics.reloads.labels("unchanged").inc()
            log.info("model reload (%s): version %s unchanged", why, new.version)
            return "unchanged"
        self.install(predictor)
        self.metrics.reloads.labels("success").inc()
        log.info(
            "model reloaded (%s): %r version %s -> %r version %s (loaded and checked in %.3f s)",
            why,
            current.runtime.name,
            current.version,
            new.name,
            new.version,
            new.load_seconds,
        )
        return "success"

    def changed(self) -> bool:
        """Whether MODEL_PATH is now another file (or changed) than the one last read."""
        predictor = self.slot.predictor
        if predictor is None or Path(predictor.runtime.path) != self.path:
            return False  # a runtime handed in from elsewhere (tests)
        now, served = self._identity(), predictor.runtime.source
        return now is not None and served is not None and now not in (served, self.tried)

    async def _reloads(self, why: str) -> None:
        while True:
            self._again = False
            await self.reload(why)
            if not self._again or self._closed:
                return
            why = "requested during the last reload"

    async def _poll(self, seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            if self.changed():
                self.request("MODEL_PATH changed")

    def _identity(self) -> FileIdentity | None:
        try:
            return file_identity(os.stat(self.path))
        except OSError:
            return None


def _unexpected(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def runtime_loader(options: dict[str, object], make: Callable[[ModelRuntime], Predictor]) -> Loader:
    """A ``Loader`` that loads with ``ModelRuntime.load(**options)`` and wraps with ``make``."""

    def load() -> Predictor:
        return make(ModelRuntime.load(**options))  # type: ignore[arg-type]

    return load
