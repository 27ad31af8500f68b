"""The RPC transport contract, on real sockets: the daemon's native transport.

Each test serves a small service from a background thread's event loop and calls it with a
grpcio client from the test thread. The services use containerd's generated messages: the real
Version service, and a test ``pcdtest.Echo`` service (declared here) with one method of each
kind over the Content service's messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, empty_pb2
from google.protobuf.descriptor import ServiceDescriptor

from pycontainerd import errdefs
from pycontainerd.api.containerd.services.content.v1 import content_pb2
from pycontainerd.api.containerd.services.version.v1 import version_pb2
from pycontainerd.daemon.rpc import RPCServer, ServicerContext
from pycontainerd.daemon.services.version import VersionService
from pycontainerd.daemon.transport.native import NativeServer
from pycontainerd.errdefs import Code

pytestmark = pytest.mark.integration

T = TypeVar("T")
MiB = 1 << 20


def _echo_service() -> ServiceDescriptor:
    """``pcdtest.Echo``: Unary, ServerStream, ClientStream and Bidi over Content's messages."""
    pool = descriptor_pool.Default()
    try:
        return pool.FindServiceByName("pcdtest.Echo")
    except KeyError:
        pass
    content = "containerd.services.content.v1."
    f = descriptor_pb2.FileDescriptorProto(
        name="pcdtest/echo.proto",
        package="pcdtest",
        dependency=[content_pb2.DESCRIPTOR.name],
        syntax="proto3",
    )
    svc = f.service.add(name="Echo")
    for name, req, resp, cs, ss in [
        ("Unary", "InfoRequest", "InfoResponse", False, False),
        ("ServerStream", "ReadContentRequest", "ReadContentResponse", False, True),
        ("ClientStream", "WriteContentRequest", "WriteContentResponse", True, False),
        ("Bidi", "WriteContentRequest", "WriteContentResponse", True, True),
        ("Missing", "InfoRequest", "InfoResponse", False, False),
    ]:
        svc.method.add(
            name=name,
            input_type=f".{content}{req}",
            output_type=f".{content}{resp}",
            client_streaming=cs,
            server_streaming=ss,
        )
    pool.Add(f)
    return pool.FindServiceByName("pcdtest.Echo")


ECHO = _echo_service()


class Echo:
    """The test service. Behaviour is chosen by the request (``digest`` / ``ref``) or by flags."""

    def __init__(self) -> None:
        self.metadata: list[tuple[str, str]] = []
        self.time_remaining: float | None = None
        self.started = threading.Event()
        self.cancelled = threading.Event()
        self.saw_cancelled_context = False
        self.produced = 0

    async def _hang(self, context: ServicerContext) -> None:
        self.started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            self.saw_cancelled_context = context.cancelled()
            self.cancelled.set()
            raise

    async def Unary(
        self, request: content_pb2.InfoRequest, context: ServicerContext
    ) -> content_pb2.InfoResponse:
        self.metadata = list(context.invocation_metadata())
        self.time_remaining = context.time_remaining()
        d = request.digest
        if d == "hang":
            await self._hang(context)
        elif d.startswith("sleep:"):
            self.started.set()
            await asyncio.sleep(float(d.removeprefix("sleep:")))
        elif d.startswith("raise:"):
            cls = getattr(errdefs, d.removeprefix("raise:"))
            raise cls(f"content {d}: failed")
        elif d == "boom":
            raise RuntimeError("boom")
        elif d == "abort":
            await context.abort(Code.PERMISSION_DENIED, "not yours")
        elif d.startswith("big:"):
            size = int(d.removeprefix("big:"))
            return content_pb2.InfoResponse(info=content_pb2.Info(digest="x" * size))
        return content_pb2.InfoResponse(info=content_pb2.Info(digest=d, size=len(d)))

    async def ServerStream(
        self, request: content_pb2.ReadContentRequest, context: ServicerContext
    ) -> AsyncIterator[content_pb2.ReadContentResponse]:
        if request.digest == "hang":
            yield content_pb2.ReadContentResponse(offset=0)
            await self._hang(context)
        chunk = b"\x5a" * request.size
        for i in range(request.offset):
            self.produced = i + 1
            yield content_pb2.ReadContentResponse(offset=i, data=chunk)
        if request.digest == "fail":
            raise errdefs.FailedPrecondition("stream failed at the end")

    async def ClientStream(
        self, requests: AsyncIterator[content_pb2.WriteContentRequest], context: ServicerContext
    ) -> content_pb2.WriteContentResponse:
        total = count = 0
        async for r in requests:
            total += len(r.data)
            count += 1
        return content_pb2.WriteContentResponse(offset=total, total=count)

    async def Bidi(
        self, requests: AsyncIterator[content_pb2.WriteContentRequest], context: ServicerContext
    ) -> AsyncIterator[content_pb2.WriteContentResponse]:
        async for r in requests:
            if r.ref == "hang":
                yield content_pb2.WriteContentResponse(offset=-1)
                await self._hang(context)
            yield content_pb2.WriteContentResponse(offset=r.offset, total=len(r.data))


ServerFactory = Callable[..., RPCServer]

TRANSPORTS: dict[str, ServerFactory] = {"native": NativeServer}


class Served:
    """A transport serving ``services`` from its own thread's event loop."""

    def __init__(self, factory: ServerFactory, services: list[object], **limits: int) -> None:
        self._dir = tempfile.mkdtemp(prefix="pcd-rpc-")
        self.path = os.path.join(self._dir, "rpc.sock")
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        kw = {"max_recv_message_size": 16 * MiB, "max_send_message_size": 16 * MiB} | limits
        self.server: RPCServer = self.run(self._make(factory, kw))
        for svc in services:
            if isinstance(svc, Echo):
                self.server.add_service(ECHO, svc)
            else:
                svc.register(self.server)  # type: ignore[attr-defined]
        self.run(self.server.start(self.path))
        self.channel = grpc.insecure_channel(f"unix:{self.path}")
        self.stopped = False

    @staticmethod
    async def _make(factory: ServerFactory, kw: dict[str, int]) -> RPCServer:
        return factory(**kw)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self, grace: float) -> None:
        if not self.stopped:
            self.stopped = True
            self.run(self.server.stop(grace))

    def close(self) -> None:
        self.channel.close()
        self.stop(0)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    # Client stubs.

    def unary(self) -> grpc.UnaryUnaryMultiCallable[Any, Any]:
        return self.channel.unary_unary(
            "/pcdtest.Echo/Unary",
            request_serializer=content_pb2.InfoRequest.SerializeToString,
            response_deserializer=content_pb2.InfoResponse.FromString,
        )

    def server_stream(self) -> grpc.UnaryStreamMultiCallable[Any, Any]:
        return self.channel.unary_stream(
            "/pcdtest.Echo/ServerStream",
            request_serializer=content_pb2.ReadContentRequest.SerializeToString,
            response_deserializer=content_pb2.ReadContentResponse.FromString,
        )

    def client_stream(self) -> grpc.StreamUnaryMultiCallable[Any, Any]:
        return self.channel.stream_unary(
            "/pcdtest.Echo/ClientStream",
            request_serializer=content_pb2.WriteContentRequest.SerializeToString,
            response_deserializer=content_pb2.WriteContentResponse.FromString,
        )

    def bidi(self) -> grpc.StreamStreamMultiCallable[Any, Any]:
        return self.channel.stream_stream(
            "/pcdtest.Echo/Bidi",
            request_serializer=content_pb2.WriteContentRequest.SerializeToString,
            response_deserializer=content_pb2.WriteContentResponse.FromString,
        )


@pytest.fixture(params=sorted(TRANSPORTS))
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def serve(transport: str) -> Iterator[Callable[..., Served]]:
    """Start a transport with the given services and limits; closed after the test."""
    started: list[Served] = []

    def start(*services: object, **limits: int) -> Served:
        s = Served(TRANSPORTS[transport], list(services), **limits)
        started.append(s)
        return s

    yield start
    for s in started:
        s.close()


@pytest.fixture
def echo(serve: Callable[..., Served]) -> tuple[Served, Echo]:
    svc = Echo()
    return serve(svc), svc


def _code(exc: pytest.ExceptionInfo[grpc.RpcError]) -> grpc.StatusCode:
    assert isinstance(exc.value, grpc.Call)
    return exc.value.code()


def _details(exc: pytest.ExceptionInfo[grpc.RpcError]) -> str:
    assert isinstance(exc.value, grpc.Call)
    return exc.value.details() or ""


def test_unary_round_trip(serve: Callable[..., Served]) -> None:
    s = serve(VersionService())
    version = s.channel.unary_unary(
        "/containerd.services.version.v1.Version/Version",
        request_serializer=empty_pb2.Empty.SerializeToString,
        response_deserializer=version_pb2.VersionResponse.FromString,
    )
    from pycontainerd.version import VERSION

    for _ in range(3):
        assert version(empty_pb2.Empty(), timeout=10).version == VERSION


def test_metadata_and_deadline_reach_the_handler(echo: tuple[Served, Echo]) -> None:
    s, svc = echo
    s.unary()(
        content_pb2.InfoRequest(digest="x"),
        metadata=(("containerd-namespace", "ns1"), ("x-trace", "abc")),
        timeout=20,
    )
    assert ("containerd-namespace", "ns1") in svc.metadata
    assert ("x-trace", "abc") in svc.metadata
    assert all(k == k.lower() for k, _ in svc.metadata)
    # grpc core rounds the timeout it sends up a little.
    assert svc.time_remaining is not None
    assert 15 < svc.time_remaining <= 21
    s.unary()(content_pb2.InfoRequest(digest="x"))
    assert svc.time_remaining is None


@pytest.mark.parametrize(
    "cls",
    ["NotFound", "AlreadyExists", "InvalidArgument", "FailedPrecondition", "Unavailable",
     "NotImplemented", "Canceled", "DeadlineExceeded", "Unknown"],
)  # fmt: skip
def test_errdefs_become_their_status(echo: tuple[Served, Echo], cls: str) -> None:
    s, _ = echo
    with pytest.raises(grpc.RpcError) as exc:
        s.unary()(content_pb2.InfoRequest(digest=f"raise:{cls}"), timeout=10)
    expected = getattr(errdefs, cls).code
    assert _code(exc) == grpc.StatusCode[expected.name]
    assert _details(exc) == f"content raise:{cls}: failed"


def test_unexpected_errors_are_unknown(echo: tuple[Served, Echo]) -> None:
    s, _ = echo
    with pytest.raises(grpc.RpcError) as exc:
        s.unary()(content_pb2.InfoRequest(digest="boom"), timeout=10)
    assert (_code(exc), _details(exc)) == (grpc.StatusCode.UNKNOWN, "boom")


def test_abort(echo: tuple[Served, Echo]) -> None:
    s, _ = echo
    with pytest.raises(grpc.RpcError) as exc:
        s.unary()(content_pb2.InfoRequest(digest="abort"), timeout=10)
    assert (_code(exc), _details(exc)) == (grpc.StatusCode.PERMISSION_DENIED, "not yours")


def test_unknown_service_and_method_are_unimplemented(
    echo: tuple[Served, Echo], transport: str
) -> None:
    s, _ = echo
    cases = {
        "/pcdtest.Nope/Unary": "unknown service pcdtest.Nope",
        "/pcdtest.Echo/Nope": "unknown method Nope for service pcdtest.Echo",
        "/pcdtest.Echo/Missing": "unknown method Missing for service pcdtest.Echo",
    }
    for path, message in cases.items():
        call = s.channel.unary_unary(
            path,
            request_serializer=content_pb2.InfoRequest.SerializeToString,
            response_deserializer=content_pb2.InfoResponse.FromString,
        )
        with pytest.raises(grpc.RpcError) as exc:
            call(content_pb2.InfoRequest(), timeout=10)
        assert _code(exc) == grpc.StatusCode.UNIMPLEMENTED
        assert _details(exc) == message


def test_server_streaming_many_messages(echo: tuple[Served, Echo]) -> None:
    s, _ = echo
    got = list(s.server_stream()(content_pb2.ReadContentRequest(offset=2000, size=100), timeout=30))
    assert [r.offset for r in got] == list(range(2000))
    assert all(r.data == b"\x5a" * 100 for r in got)


def test_server_streaming_error_after_messages(echo: tuple[Served, Echo]) -> None:
    s, _ = echo
    it = s.server_stream()(content_pb2.ReadContentRequest(digest="fail", offset=3), timeout=10)
    assert [next(it).offset for _ in range(3)] == [0, 1, 2]
    with pytest.raises(grpc.RpcError) as exc:
        next(it)
    assert (_code(exc), _details(exc)) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "stream failed at the end",
    )


def test_slow_consumer_holds_the_producer_back(echo: tuple[Served, Echo]) -> None:
    s, svc = echo
    n = 256
    it = s.server_stream()(content_pb2.ReadContentRequest(offset=n, size=MiB), timeout=60)
    consumed = 0
    for pause_after in (1, 100):
        while consumed < pause_after:
            assert next(it).offset == consumed
            consumed += 1
        time.sleep(1.0)
        # What the handler got ahead of the stalled client is what fits in the flow-control
        # windows and the transport's queue: a few MiB, the same early or late in the stream.
        ahead = svc.produced - consumed
        assert ahead <= 32, f"the handler ran {ahead} MiB ahead of a stalled client"
    consumed += sum(1 for _ in it)
    assert consumed == svc.produced == n


def test_client_streaming(echo: tuple[Served, Echo]) -> None:
    s, _ = echo
    requests = (content_pb2.WriteContentRequest(data=b"a" * i) for i in range(200))
    response = s.client_stream()(requests, timeout=30)
    assert (response.offset, response.total) == (sum(range(200)), 200)
    empty = s.client_stream()(iter(()), timeout=10)
    assert (empty.offset, empty.total) == (0, 0)


def test_bidi(echo: tuple[Served, Echo]) -> None:
    s, _ = echo
    requests = (content_pb2.WriteContentRequest(offset=i, data=b"b" * i) for i in range(300))
    got = list(s.bidi()(requests, timeout=30))
    assert [(r.offset, r.total) for r in got] == [(i, i) for i in range(300)]


def test_bidi_is_interactive(echo: tuple[Served, Echo]) -> None:
    """An answer arrives before the client's next request: requests are not batched."""
    s, _ = echo
    outbox: list[content_pb2.WriteContentRequest] = []
    ready = threading.Condition()

    def requests() -> Iterator[content_pb2.WriteContentRequest]:
        for i in range(5):

            def answered(n: int = i) -> bool:
                return len(outbox) >= n

            with ready:
                ready.wait_for(answered, timeout=10)
            yield content_pb2.WriteContentRequest(offset=i)

    for r in s.bidi()(requests(), timeout=30):
        with ready:
            outbox.append(r)
            ready.notify_all()
    assert [r.offset for r in outbox] == list(range(5))


def _wait(event: threading.Event, what: str, timeout: float = 10) -> None:
    assert event.wait(timeout), f"{what} within {timeout}s"


def test_client_cancel_cancels_the_handler(echo: tuple[Served, Echo]) -> None:
    s, svc = echo
    future = s.unary().future(content_pb2.InfoRequest(digest="hang"))
    _wait(svc.started, "handler started")
    future.cancel()
    _wait(svc.cancelled, "handler cancelled")
    assert svc.saw_cancelled_context


def test_client_cancel_cancels_a_streaming_handler(echo: tuple[Served, Echo]) -> None:
    s, svc = echo
    it = s.server_stream()(content_pb2.ReadContentRequest(digest="hang"))
    next(it)
    _wait(svc.started, "handler started")
    it.cancel()
    _wait(svc.cancelled, "handler cancelled")


def test_deadline_exceeded_cancels_the_handler(echo: tuple[Served, Echo]) -> None:
    s, svc = echo
    with pytest.raises(grpc.RpcError) as exc:
        s.unary()(content_pb2.InfoRequest(digest="hang"), timeout=0.3)
    assert _code(exc) == grpc.StatusCode.DEADLINE_EXCEEDED
    _wait(svc.cancelled, "handler cancelled")
    assert svc.saw_cancelled_context


def test_oversized_messages_are_resource_exhausted(serve: Callable[..., Served]) -> None:
    s = serve(Echo(), max_recv_message_size=MiB, max_send_message_size=MiB)
    with pytest.raises(grpc.RpcError) as exc:
        s.unary()(content_pb2.InfoRequest(digest="x" * (MiB + 10)), timeout=10)
    assert _code(exc) == grpc.StatusCode.RESOURCE_EXHAUSTED
    with pytest.raises(grpc.RpcError) as exc:
        s.unary()(content_pb2.InfoRequest(digest=f"big:{MiB + 10}"), timeout=10)
    assert _code(exc) == grpc.StatusCode.RESOURCE_EXHAUSTED
    # The server is fine afterwards.
    assert s.unary()(content_pb2.InfoRequest(digest="ok"), timeout=10).info.digest == "ok"


def test_many_concurrent_calls(echo: tuple[Served, Echo]) -> None:
    s, _ = echo
    n = 300
    begin = time.monotonic()
    futures = [s.unary().future(content_pb2.InfoRequest(digest="sleep:0.2")) for _ in range(n)]
    results = [f.result(timeout=30) for f in futures]
    assert len(results) == n
    assert all(r.info.digest == "sleep:0.2" for r in results)
    # 300 handlers sleeping 0.2s each ran at once, not one after another.
    assert time.monotonic() - begin < 10


def test_stop_lets_a_running_call_finish_then_cancels_stragglers(
    echo: tuple[Served, Echo], transport: str
) -> None:
    s, svc = echo
    quick = s.unary().future(content_pb2.InfoRequest(digest="sleep:0.3"))
    _wait(svc.started, "quick handler started")
    svc.started.clear()
    slow = s.unary().future(content_pb2.InfoRequest(digest="hang"))
    _wait(svc.started, "slow handler started")
    begin = time.monotonic()
    s.stop(grace=1.5)
    took = time.monotonic() - begin
    assert quick.result(timeout=5).info.digest == "sleep:0.3"
    with pytest.raises(grpc.RpcError):
        slow.result(timeout=5)
    assert svc.cancelled.is_set()
    assert 1.0 < took < 6, f"stop took {took:.2f}s"
    # Nobody listens any more; the socket file is left to the caller to remove.
    probe = socket.socket(socket.AF_UNIX)
    with contextlib.closing(probe), pytest.raises(ConnectionRefusedError):
        probe.connect(s.path)
    assert os.path.exists(s.path)


def test_stop_without_calls_is_quick(echo: tuple[Served, Echo]) -> None:
    s, _ = echo
    s.unary()(content_pb2.InfoRequest(digest="x"), timeout=10)
    begin = time.monotonic()
    s.stop(grace=5)
    assert time.monotonic() - begin < 2


def test_native_bind_errors_are_errdefs(tmp_path: Path) -> None:
    async def start(path: str) -> None:
        await NativeServer().start(path)

    missing = str(tmp_path / "no" / "such" / "dir" / "s.sock")
    with pytest.raises(errdefs.NotFound, match=r"serve .*/no/such/dir/s\.sock: bind: .*os error 2"):
        asyncio.run(start(missing))
    taken = str(tmp_path / "taken.sock")
    with socket.socket(socket.AF_UNIX) as other:
        other.bind(taken)
        with pytest.raises(errdefs.AlreadyExists, match=r"bind: address already in use"):
            asyncio.run(start(taken))


def test_native_daemon_process_does_not_import_grpc(tmp_path: Path) -> None:
    code = f"""
import asyncio, sys
from pycontainerd.daemon.transport.native import NativeServer
from pycontainerd.daemon.services.version import VersionService
async def main():
    s = NativeServer()
    VersionService().register(s)
    await s.start({str(tmp_path / "v.sock")!r})
    await s.stop(0)
asyncio.run(main())
print("grpc" in sys.modules)
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "False", out.stderr


def test_native_serves_go_ctr(tmp_path: Path) -> None:
    assert shutil.which("ctr"), "ctr is missing: apt-get install containerd (scripts/setup does)"
    from pycontainerd.daemon.services.introspection import IntrospectionService
    from pycontainerd.plugin import PluginSet
    from pycontainerd.version import VERSION

    s = Served(
        TRANSPORTS["native"], [VersionService(), IntrospectionService(PluginSet(), tmp_path)]
    )
    try:
        out = subprocess.run(
            ["ctr", "-a", s.path, "version"], capture_output=True, text=True, timeout=30
        )
        assert out.returncode == 0, out.stderr
        assert f"Version:  {VERSION}" in out.stdout.split("Server:")[1]
    finally:
        s.close()
