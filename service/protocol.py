"""The HTTP/1.1 connection: uvicorn's httptools protocol, with what a hostile client needs.

uvicorn (0.54) by itself buffers a request head of any size, waits forever for
a first byte, for the rest of the headers and for a body, keeps every
connection it accepts, and closes idle keep-alive connections at shutdown at
once (a request already on its way is then reset). Per connection, this adds:

* a budget of ``max_header_bytes`` for the request line and headers, counted
  while they arrive, before the parser buffers them: 431, then close;
* timeouts: ``keep_alive`` while waiting for a request (the first one too),
  ``headers`` from a request's first byte to the end of its headers,
  ``body`` from there to the end of its body: 408, then close;
* at most ``max_connections`` per worker: a new connection beyond it closes the
  longest idle one (never one with a request in progress), so a flood of idle
  or half-open connections cannot lock the health probes out;
* a backoff after a refused request: a 4xx answer that took t seconds to produce
  leaves the connection unread for ``error_backoff`` x t (at most
  ``error_backoff_max``), so that a client flooding the service with costly bad
  requests gets its share cut in proportion, and a normal client keeps its own;
* a drain at shutdown: every response from then on says ``Connection: close``,
  an idle connection first gets ``drain_idle`` seconds for a request already on
  its way. uvicorn's server stops accepting and waits (TIMEOUT_SHUTDOWN at most).

The app (``service.limits``) caps the header count and the requests in progress.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from dataclasses import dataclass
from typing import Any

import httptools
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from service.errors import HeadersTooLarge, RequestTimeout, error_body
from service.limits import BACKOFF
from service.transport import CoalescingTransport

log = logging.getLogger("service")
_ticks = itertools.count()  # orders connections by their last activity
_WARN_EVERY = 10.0  # seconds: a flood of bad requests must not become a flood of log lines
_warned: dict[str, tuple[float, int]] = {}


def _warn(message: str) -> None:
    """Log ``message`` at most once per ``_WARN_EVERY`` seconds, with the count since."""
    now = time.monotonic()
    last, count = _warned.get(message, (0.0, 0))
    if now - last >= _WARN_EVERY:
        log.warning("%s (%d time(s) since the last report)", message, count + 1)
        _warned[message] = (now, 0)
    else:
        _warned[message] = (last, count + 1)


@dataclass(frozen=True)
class ConnectionLimits:
    """The per-connection limits (seconds and counts), from the service's settings."""

    max_header_bytes: int = 16 << 10
    max_connections: int = 512
    keep_alive: float = 5.0
    headers: float = 10.0
    body: float = 30.0
    drain_idle: float = 1.0
    error_backoff: float = 50.0
    error_backoff_max: float = 1.0


class ServiceConfig(uvicorn.Config):
    """uvicorn's config plus the connection limits (pickled to every worker with it)."""

    def __init__(self, app: Any, *, limits: ConnectionLimits, **options: Any) -> None:
        super().__init__(app, http=ServiceProtocol, **options)
        self.limits = limits


def _response(status: int, reason: bytes, message: str) -> bytes:
    body = error_body(message)
    return b"".join(
        (
            b"HTTP/1.1 %d %s\r\n" % (status, reason),
            b"content-type: application/json\r\ncontent-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
            body,
        )
    )


class ServiceProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header budget, timeouts, connection cap and drain."""

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits: ConnectionLimits = getattr(config, "limits", ConnectionLimits())
        self.timeout_keep_alive = self.limits.keep_alive  # type: ignore[assignment]
        self.in_head = True  # the parser is before a request's end of headers
        self.in_body = False
        self.begun = 0.0  # when the current request's head (or body) began; 0: not begun
        self.head_bytes = 0
        self.timer: asyncio.TimerHandle | None = None
        self.draining = False
        self.last_active = next(_ticks)
        self.refused_cost = 0.0  # seconds the last refused request took (service.limits)
        self.extensions: dict[str, dict[object, object]] = {BACKOFF: {"report": self._refused}}

    # --- connection -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # uvicorn's cycles take the protocol's transport: theirs too from now on.
        self.writes = CoalescingTransport(transport, self.loop)
        self.transport = self.writes  # type: ignore[assignment]
        self._arm_keep_alive()  # a connection that never sends a byte is closed too
        if len(self.connections) > self.limits.max_connections:
            self._make_room()

    def eof_received(self) -> None:
        # The client half-closed after its request (``nc -N``, some probes and proxies): the
        # transport closes itself once this returns, so this step's response goes out first.
        self.writes.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        super().connection_lost(exc)

    def _busy(self) -> bool:
        cycle = self.cycle
        return (cycle is not None and not cycle.response_complete) or bool(self.pipeline)

    def _make_room(self) -> None:
        idle = [
            c
            for c in self.connections
            if isinstance(c, ServiceProtocol)
            and c is not self
            and not c._busy()
            and not c.transport.is_closing()
        ]
        victim = min(idle, key=lambda c: c.last_active, default=self)
        _warn(f"more than {self.limits.max_connections} connections: closed the longest idle")
        victim.transport.close()

    def _arm_keep_alive(self) -> None:
        self._unset_keepalive_if_required()
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )

    # --- reading: the head budget and the request timers ---------------------------------

    def data_received(self, data: bytes) -> None:
        budget = self.limits.max_header_bytes
        try:
            if not self.in_head or self.head_bytes + len(data) <= budget:
                if self.in_head:
                    self.head_bytes += len(data)
                self.parser.feed_data(data)
            else:
                self._feed_in_pieces(memoryview(data), budget)
        except httptools.HttpParserUpgrade:
            pass  # websockets are off: an upgrade request was served as plain HTTP
        except httptools.HttpParserError:
            _warn("invalid HTTP request received")
            self._refuse(400, b"Bad Request", "the request is not valid HTTP/1.1")
            return
        except HeadersTooLarge as exc:
            self._refuse(exc.status_code, b"Request Header Fields Too Large", exc.message)
            return
        self._arm_request_timer()

    def send_400_response(self, msg: str) -> None:  # uvicorn's, in the one error shape
        self._refuse(400, b"Bad Request", "the request is not valid HTTP/1.1")

    def _feed_in_pieces(self, data: memoryview, budget: int) -> None:
        # The parser is never given more head bytes than the budget has left.
        while data:
            if self.in_head:
                room = budget - self.head_bytes
                if room <= 0:
                    raise HeadersTooLarge(f"the request line and headers exceed {budget} bytes")
                piece, data = data[:room], data[room:]
                self.head_bytes += len(piece)
            else:
                piece, data = data, data[:0]
            self.parser.feed_data(piece)
            if self.transport.is_closing():
                return

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope["extensions"] = self.extensions
        if self.timeout_keep_alive_task is not None:
            self.timeout_keep_alive_task.cancel()
            self.timeout_keep_alive_task = None
        self.begun = self.loop.time()

    def on_headers_complete(self) -> None:
        if self.timer is not None:
            self._cancel_timer()
        self.in_head, self.in_body = False, True
        self.head_bytes = 0
        self.begun = self.loop.time()
        super().on_headers_complete()
        if self.draining and self.cycle is not None:
            self.cycle.keep_alive = False

    def on_message_complete(self) -> None:
        if self.timer is not None:
            self._cancel_timer()
        self.in_head, self.in_body = True, False
        self.begun = 0.0
        super().on_message_complete()

    def on_response_complete(self) -> None:
        self.last_active = next(_ticks)
        if self.refused_cost:
            self._back_off()
        else:
            self._next_request()

    def _back_off(self) -> None:
        delay = min(self.refused_cost * self.limits.error_backoff, self.limits.error_backoff_max)
        self.refused_cost = 0.0
        if delay > 0 and not self.transport.is_closing():
            # The connection is not read again (nor a pipelined request started) for a while.
            self.flow.pause_reading()
            self.loop.call_later(delay, self._after_backoff)
            return
        self._next_request()

    def _next_request(self) -> None:
        super().on_response_complete()
        if self.begun:  # the next request is arriving: its own timer runs
            self._unset_keepalive_if_required()

    def _after_backoff(self) -> None:
        if self.draining:
            self.transport.close()
        elif not self.transport.is_closing():
            self._next_request()

    def _refused(self, seconds: float) -> None:
        """``service.limits`` reports a 4xx answer that took ``seconds`` to produce."""
        self.refused_cost = max(self.refused_cost, seconds)

    def _arm_request_timer(self) -> None:
        if self.timer is not None or not self.begun or self.transport.is_closing():
            return
        timeout = self.limits.headers if self.in_head else self.limits.body
        self.timer = self.loop.call_at(self.begun + timeout, self._timed_out)

    def _cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _timed_out(self) -> None:
        self.timer = None
        if self.in_head:
            message = f"the request headers took more than {self.limits.headers:g} s"
        else:
            message = f"the request body took more than {self.limits.body:g} s"
        self._refuse(RequestTimeout.status_code, b"Request Timeout", message)

    def _refuse(self, status: int, reason: bytes, message: str) -> None:
        """Answer the request being read with ``status`` and close the connection.

        Only if that answer would be the next response on the connection: when an earlier
        request (pipelined) or this one already has a response under way, just close.
        """
        cycle = self.cycle
        if self.in_head:  # the request being read has no cycle yet; ``cycle`` is the last one
            answer = cycle is None or cycle.response_complete
        else:  # ``cycle`` is this request's
            answer = cycle is not None and not cycle.response_started and not self.pipeline
            if answer:
                cycle.disconnected = True  # what the app sends from now on is dropped,
                cycle.message_event.set()  # and its receive() sees a disconnect
        if answer and not self.transport.is_closing():
            self.transport.write(_response(status, reason, message))
        self.transport.close()

    # --- shutdown ------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Called by uvicorn's server on SIGTERM, after it stopped accepting connections."""
        self.draining = True
        if self._busy():
            self.cycle.keep_alive = False
        elif not self.begun:  # idle: a request may be on its way; if not, close soon
            self._unset_keepalive_if_required()
            self.timeout_keep_alive_task = self.loop.call_later(
                min(self.limits.drain_idle, self.timeout_keep_alive),
                self.timeout_keep_alive_handler,
            )
        # else: a request is arriving; it will be answered with Connection: close
