"""``service.transport``: one system call per loop step, nothing lost or reordered."""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.server import ServerState

from service.protocol import ConnectionLimits, ServiceConfig, ServiceProtocol
from service.transport import HOLD_BYTES, CoalescingTransport


class FakeTransport:
    """Records what reaches the socket: each ``write`` call is one system call."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self.reading = True

    def write(self, data: bytes) -> None:
        assert not self.closed, "write after close"
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 5000)}.get(name, default)

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


async def _one_step() -> None:
    await asyncio.sleep(0)  # the loop runs what call_soon scheduled


def test_the_writes_of_one_step_are_one_write_in_order() -> None:
    async def main() -> list[bytes]:
        fake = FakeTransport()
        wrapped = CoalescingTransport(fake, asyncio.get_running_loop())  # type: ignore[arg-type]
        wrapped.write(b"head ")
        wrapped.write(b"body")
        assert fake.writes == []  # not before the end of the step
        await _one_step()
        wrapped.write(b"next")
        await _one_step()
        return fake.writes

    assert asyncio.run(main()) == [b"head body", b"next"]


def test_a_large_write_goes_out_at_once_under_the_transports_flow_control() -> None:
    async def main() -> list[bytes]:
        fake = FakeTransport()
        wrapped = CoalescingTransport(fake, asyncio.get_running_loop())  # type: ignore[arg-type]
        wrapped.write(b"head")
        wrapped.write(b"x" * HOLD_BYTES)  # a big body: not held until the end of the step
        written = list(fake.writes)
        wrapped.write(b"tail")
        await _one_step()
        return [*written, *fake.writes[len(written) :]]

    assert asyncio.run(main()) == [b"head" + b"x" * HOLD_BYTES, b"tail"]


def test_writelines_keeps_the_order_and_the_buffer_size_counts_what_is_pending() -> None:
    async def main() -> tuple[list[bytes], int]:
        fake = FakeTransport()
        wrapped = CoalescingTransport(fake, asyncio.get_running_loop())  # type: ignore[arg-type]
        wrapped.write(b"first,")
        wrapped.writelines([b"second,", b"third"])
        size = wrapped.get_write_buffer_size()
        await _one_step()
        return fake.writes, size

    assert asyncio.run(main()) == ([b"first,second,third"], 18)


def test_close_writes_what_is_pending_first_and_later_writes_are_dropped() -> None:
    async def main() -> FakeTransport:
        fake = FakeTransport()
        wrapped = CoalescingTransport(fake, asyncio.get_running_loop())  # type: ignore[arg-type]
        wrapped.write(b"last answer")
        wrapped.close()
        wrapped.write(b"too late")
        await _one_step()
        return fake

    fake = asyncio.run(main())
    assert fake.writes == [b"last answer"]
    assert fake.closed


def test_other_attributes_are_the_transports() -> None:
    async def main() -> None:
        fake = FakeTransport()
        wrapped = CoalescingTransport(fake, asyncio.get_running_loop())  # type: ignore[arg-type]
        wrapped.pause_reading()
        assert not fake.reading
        assert wrapped.get_extra_info("peername") == ("127.0.0.1", 5000)

    asyncio.run(main())


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await receive()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"11")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b'{"ok":true}'})


def _connected() -> tuple[ServiceProtocol, FakeTransport]:
    """The service's protocol serving ``_app`` on a new connection over a ``FakeTransport``."""
    config = ServiceConfig(_app, limits=ConnectionLimits(), lifespan="off", log_level="error")
    config.load()
    protocol = ServiceProtocol(config, ServerState(), {})
    fake = FakeTransport()
    protocol.connection_made(fake)  # type: ignore[arg-type]
    return protocol, fake


def test_a_response_leaves_the_server_in_one_write() -> None:
    """uvicorn alone writes the status line and headers, then the body: two system calls."""

    async def main() -> list[bytes]:
        protocol, fake = _connected()
        protocol.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 2)  # two, pipelined
        for _ in range(20):
            await _one_step()
        protocol.connection_lost(None)
        return fake.writes

    writes = asyncio.run(main())
    assert len(writes) == 2, writes
    for write in writes:
        assert write.startswith(b"HTTP/1.1 200 OK\r\n")
        assert write.endswith(b'\r\n\r\n{"ok":true}')


def test_a_client_that_half_closes_after_its_request_gets_the_response() -> None:
    """``printf 'GET / ...' | nc -N``: the request, then the end of stream, read in the same
    loop step as the app writes its answer; the transport then closes itself."""

    async def main() -> list[bytes]:
        protocol, fake = _connected()
        protocol.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await _one_step()  # the app ran and wrote: its writes wait for the end of this step
        if protocol.eof_received() is None:  # what asyncio's transports do on end of stream
            fake.close()
        for _ in range(5):
            await _one_step()
        protocol.connection_lost(None)
        return fake.writes

    writes = asyncio.run(main())
    assert len(writes) == 1 and writes[0].startswith(b"HTTP/1.1 200 OK\r\n"), writes
