"""ttrpc over a real unix socket: framing, errors, concurrency, deadlines, a lost connection,
and the daemon's Events/Forward service onto an exchange."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from google.protobuf import timestamp_pb2

from pycontainerd import errdefs
from pycontainerd.api.containerd.events import task_pb2
from pycontainerd.api.containerd.services.events.ttrpc.v1 import events_pb2
from pycontainerd.api.ttrpc import ttrpc_pb2
from pycontainerd.daemon.ttrpc import EventsTTRPCService, ttrpc_address
from pycontainerd.events import Exchange, marshal_any
from pycontainerd.ttrpc import MESSAGE_LENGTH_MAX, CallContext, Client, Closed, Server

SERVICE = "test.Echo"


def run(tmp_path: Path, body: Callable[[Server, str], Awaitable[None]]) -> None:
    async def main() -> None:
        server = Server()
        path = str(tmp_path / "t.sock")
        await server.start(path)
        try:
            await body(server, path)
        finally:
            await server.stop()

    asyncio.run(main())


async def echo(payload: bytes, ctx: CallContext) -> bytes:
    return payload[::-1] + (ctx.get("k") or "").encode()


def test_round_trip_with_metadata(tmp_path: Path) -> None:
    async def body(server: Server, path: str) -> None:
        server.register(SERVICE, "Reverse", echo)
        client = await Client.connect(path)
        assert await client.call(SERVICE, "Reverse", b"abc", metadata=[("k", "!")]) == b"cba!"
        assert await client.call(SERVICE, "Reverse", b"") == b""
        await client.close()
        assert client.closed
        assert client.closed_by_user

    run(tmp_path, body)


def test_unknown_service_method_and_errors_keep_code_and_message(tmp_path: Path) -> None:
    async def fail(payload: bytes, ctx: CallContext) -> bytes:
        raise errdefs.NotFound("process already finished: not found")

    async def body(server: Server, path: str) -> None:
        server.register(SERVICE, "Fail", fail)
        client = await Client.connect(path)
        with pytest.raises(errdefs.NotImplemented, match="^service nosuch.Service$"):
            await client.call("nosuch.Service", "X", b"")
        with pytest.raises(errdefs.NotImplemented, match="^method Nope$"):
            await client.call(SERVICE, "Nope", b"")
        with pytest.raises(errdefs.NotFound, match="^process already finished: not found$"):
            await client.call(SERVICE, "Fail", b"")
        await client.close()

    run(tmp_path, body)


def test_concurrent_calls_answered_out_of_order(tmp_path: Path) -> None:
    async def body(server: Server, path: str) -> None:
        gates = {b"first": asyncio.Event(), b"second": asyncio.Event()}

        async def gated(payload: bytes, ctx: CallContext) -> bytes:
            await gates[payload].wait()
            return payload

        server.register(SERVICE, "Gated", gated)
        client = await Client.connect(path)
        first = asyncio.create_task(client.call(SERVICE, "Gated", b"first"))
        second = asyncio.create_task(client.call(SERVICE, "Gated", b"second"))
        gates[b"second"].set()
        assert await second == b"second"
        assert not first.done()
        gates[b"first"].set()
        assert await first == b"first"
        await client.close()

    run(tmp_path, body)


def test_deadline_and_lost_connection(tmp_path: Path) -> None:
    async def body(server: Server, path: str) -> None:
        never = asyncio.Event()

        async def hang(payload: bytes, ctx: CallContext) -> bytes:
            await never.wait()
            return b""

        server.register(SERVICE, "Hang", hang)
        closed: list[bool] = []
        client = await Client.connect(path, on_close=lambda: closed.append(True))
        with pytest.raises(errdefs.DeadlineExceeded):
            await client.call(SERVICE, "Hang", b"", timeout=0.05)
        pending = asyncio.create_task(client.call(SERVICE, "Hang", b""))
        await asyncio.sleep(0)
        server.close()
        with pytest.raises(Closed):
            await pending
        await client.wait_closed()
        assert closed == [True]
        assert not client.closed_by_user
        with pytest.raises(Closed):
            await client.call(SERVICE, "Hang", b"")

    run(tmp_path, body)


def test_oversized_and_even_stream_frames_are_refused_not_fatal(tmp_path: Path) -> None:
    async def body(server: Server, path: str) -> None:
        server.register(SERVICE, "Reverse", echo)
        reader, writer = await asyncio.open_unix_connection(path)

        async def answer() -> ttrpc_pb2.Response:
            length, _stream, kind, _ = struct.unpack(">IIBB", await reader.readexactly(10))
            assert kind == 2
            return ttrpc_pb2.Response.FromString(await reader.readexactly(length))

        big = MESSAGE_LENGTH_MAX + 1
        writer.write(struct.pack(">IIBB", big, 1, 1, 0) + b"\0" * big)
        response = await answer()
        assert response.status.code == errdefs.Code.RESOURCE_EXHAUSTED
        request = ttrpc_pb2.Request(service=SERVICE, method="Reverse", payload=b"ab")
        data = request.SerializeToString()
        writer.write(struct.pack(">IIBB", len(data), 2, 1, 0) + data)
        assert (await answer()).status.code == errdefs.Code.INVALID_ARGUMENT
        writer.write(struct.pack(">IIBB", len(data), 3, 1, 0) + data)
        response = await answer()
        assert (response.status.code, response.payload) == (0, b"ba")
        writer.close()

    run(tmp_path, body)


def test_client_refuses_an_oversized_request(tmp_path: Path) -> None:
    async def body(server: Server, path: str) -> None:
        client = await Client.connect(path)
        with pytest.raises(errdefs.InvalidArgument, match="over the limit"):
            await client.call(SERVICE, "Reverse", b"x" * (MESSAGE_LENGTH_MAX + 1))
        await client.close()

    run(tmp_path, body)


def test_connect_to_nothing_is_unavailable(tmp_path: Path) -> None:
    async def main() -> None:
        with pytest.raises(errdefs.Unavailable, match="connect ttrpc"):
            await Client.connect(str(tmp_path / "none.sock"))

    asyncio.run(main())


def test_events_forward_onto_the_exchange(tmp_path: Path) -> None:
    async def body(server: Server, path: str) -> None:
        exchange = Exchange()
        server.add_service(
            events_pb2.DESCRIPTOR.services_by_name["Events"], EventsTTRPCService(exchange)
        )
        sub = exchange.subscribe('topic=="/tasks/exit"')
        client = await Client.connect(path)
        exit_ = task_pb2.TaskExit(container_id="c1", id="c1", pid=42, exit_status=3)
        envelope = events_pb2.Envelope(
            timestamp=timestamp_pb2.Timestamp(seconds=1700000000, nanos=5),
            namespace="ns1",
            topic="/tasks/exit",
            event=marshal_any(exit_),
        )
        request = events_pb2.ForwardRequest(envelope=envelope)
        service = "containerd.services.events.ttrpc.v1.Events"
        await client.call(service, "Forward", request.SerializeToString())
        got = await anext(sub)
        assert (got.namespace, got.topic, got.timestamp) == (
            "ns1",
            "/tasks/exit",
            1_700_000_000 * 10**9 + 5,
        )
        assert got.decode() == exit_
        bad = events_pb2.ForwardRequest(
            envelope=events_pb2.Envelope(namespace="ns1", topic="no-slash", event=envelope.event)
        )
        with pytest.raises(errdefs.InvalidArgument):
            await client.call(service, "Forward", bad.SerializeToString())
        with pytest.raises(errdefs.InvalidArgument, match="unmarshalling"):
            await client.call(service, "Forward", b"\xff\xff")
        sub.close()
        await client.close()

    run(tmp_path, body)


def test_ttrpc_address_is_the_grpc_socket_plus_ttrpc() -> None:
    assert ttrpc_address("/run/x/pcd.sock") == "/run/x/pcd.sock.ttrpc"
    assert ttrpc_address("unix:///run/x/pcd.sock") == "/run/x/pcd.sock.ttrpc"


def test_refuses_peers_of_another_user(tmp_path: Path) -> None:
    # the check reads SO_PEERCRED: a root or same-user peer is let in (we are one of them)
    async def body(server: Server, path: str) -> None:
        server.register(SERVICE, "Reverse", echo)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(path)
        reader, writer = await asyncio.open_unix_connection(sock=sock)
        client = Client(reader, writer)
        assert await client.call(SERVICE, "Reverse", b"12") == b"21"
        await client.close()

    run(tmp_path, body)
