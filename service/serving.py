"""Running the app under uvicorn: the socket, the connection limits, the workers, the drain.

``python -m service`` binds the socket itself (a port in use is then a one-line
error, not uvicorn's logged traceback and status 3), makes sure the process may
open MAX_CONNECTIONS files, and serves with ``service.protocol`` as the HTTP
implementation. On SIGTERM or SIGINT, for any number of workers: the listening
socket closes, in-flight requests finish (TIMEOUT_SHUTDOWN at most), keep-alive
connections close after a ``Connection: close`` response, and the process exits
with status 0. uvicorn alone re-raises the signal after its drain (status 143
with one worker) and, with several, lets its supervisor keep accepting
connections that no worker will answer.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import resource
import signal
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn
from uvicorn.supervisors.multiprocess import Multiprocess

from service.protocol import ConnectionLimits, ServiceConfig
from service.reload import take_sighup
from service.runtime import ModelRuntime
from service.settings import Settings

log = logging.getLogger("service")
SPARE_FILES = 64  # the model file, ORT, logging, the workers' pipes, the listening socket
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StartupError(Exception):
    """The service cannot start with these settings here; the message is one line."""


def check_open_files(max_connections: int) -> None:
    """Raise the soft limit on open files to what MAX_CONNECTIONS needs, or refuse."""
    need = max_connections + SPARE_FILES
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= need:
        return
    if hard != resource.RLIM_INFINITY and hard < need:
        raise StartupError(
            f"MAX_CONNECTIONS={max_connections} needs {need} open files per worker, "
            f"but this process may open {hard} (ulimit -n)"
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (listening starts with the server)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)  # the workers get it
    return sock


def make_config(settings: Settings, app: Any, **options: Any) -> ServiceConfig:
    """uvicorn's configuration for ``app`` under ``settings``."""
    limits = ConnectionLimits(
        max_header_bytes=settings.max_header_bytes,
        max_connections=settings.max_connections,
        keep_alive=settings.timeout_keep_alive,
        headers=settings.timeout_headers,
        body=settings.timeout_body,
        drain_idle=settings.timeout_shutdown_idle,
        error_backoff=settings.error_backoff,
        error_backoff_max=settings.error_backoff_max,
    )
    return ServiceConfig(
        app,
        limits=limits,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
        access_log=settings.access_log,
        ws="none",  # no websockets: nothing to import, nothing to expose
        lifespan="on",
        server_header=False,
        timeout_keep_alive=math.ceil(settings.timeout_keep_alive),  # the protocol uses the float
        timeout_graceful_shutdown=settings.timeout_shutdown,
        **options,
    )


class Server(uvicorn.Server):
    """uvicorn's server, exiting normally (status 0) after a signal's drain."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """As uvicorn's, without re-raising the signal once the server has shut down."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        original = {sig: signal.signal(sig, self.handle_exit) for sig in _SIGNALS}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


class Supervisor(Multiprocess):
    """uvicorn's worker supervisor, stopping the shared listening socket before the workers
    drain (uvicorn's keeps it open: the kernel queues connections that no worker accepts,
    and resets them once the last copy closes), and waiting a bounded time for them.

    SIGHUP is forwarded to every worker, which reloads the model itself without
    downtime (``service.reload``); uvicorn's own would restart the workers. The
    signal stays blocked here (``hold_sighup``), so workers start with it blocked
    until they can reload, and is taken from the pending set on each loop turn.
    """

    def handle_signals(self) -> None:
        """uvicorn's signals, and a pending SIGHUP forwarded to the workers."""
        if take_sighup():
            self.forward_hup()
        super().handle_signals()

    def handle_hup(self) -> None:
        """A SIGHUP that reached uvicorn's handler (SIGHUP not held): forward it too."""
        self.forward_hup()

    def forward_hup(self) -> None:
        """Ask every live worker to reload the model."""
        pids = [w.pid for w in self.processes if w.pid is not None and w.process.is_alive()]
        log.info("SIGHUP: %d worker(s) reload the model", len(pids))
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGHUP)

    def __init__(self, config: uvicorn.Config, sockets: list[socket.socket], grace: float):
        super().__init__(config, sockets)
        self.grace = grace

    def terminate_all(self) -> None:
        """Stop accepting, for every worker at once, then ask each to drain."""
        for sock in self.sockets:
            # On Linux this stops the listening socket the workers share: until the last
            # worker has closed its copy, connections would still be queued, then reset. It
            # comes before any drain sends 'Connection: close', so no client is reconnecting.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RD)
            sock.close()
        super().terminate_all()

    def join_all(self) -> None:
        """Wait for the workers; kill one that outlives the grace period."""
        deadline = time.monotonic() + self.grace
        for worker in self.processes:
            worker.process.join(max(deadline - time.monotonic(), 0.0))
            if worker.process.is_alive():
                log.error("worker %s did not stop in %.0f s: killed", worker.pid, self.grace)
                worker.kill()
                worker.process.join()


def serve(settings: Settings, runtime: ModelRuntime | None, sock: socket.socket) -> int:
    """Serve on ``sock`` until a signal; return the exit status.

    One worker serves ``runtime`` (already checked) in this process; several are
    spawned, each loading and checking its own copy of the model.
    """
    log.info(
        "listening on http://%s:%d (%d worker(s))", settings.host, settings.port, settings.workers
    )
    if settings.workers == 1:
        from service.app import create_app

        server = Server(make_config(settings, create_app(settings, runtime)))
        server.run(sockets=[sock])
        return 0
    config = make_config(settings, "service.app:app_from_env", factory=True)
    Supervisor(config, [sock], grace=settings.timeout_shutdown + 10).run()
    return 0
