"""``AsyncClient`` on the real daemon, shim and runc, with a busybox image pushed to a real
registry: the same calls as ``Client`` awaited, many at once, handles (tasks, processes,
leases, event streams, readers) and a daemon that cannot be reached or goes away, for the
async and the sync client alike."""

from __future__ import annotations

import asyncio
import io
import signal
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from pycontainerd import AsyncClient, Client, cio, errdefs
from pycontainerd.api.containerd.events import namespace_pb2
from pycontainerd.client.aio import AsyncEventStream, AsyncRunResult, AsyncTask
from pycontainerd.client.tasks import ProcessStatus
from pycontainerd.errdefs import Unavailable
from tests.fixtures.daemon import Daemon, make_daemon
from tests.fixtures.images import make_test_image, push_image
from tests.fixtures.registry import run_registry

pytestmark = pytest.mark.integration

SNAPSHOTTER = "overlayfs"
SYNC_TOPIC = "/test/sync"
T = TypeVar("T")


@pytest.fixture(scope="module")
def image_ref() -> Iterator[str]:
    from pycontainerd.remotes import Resolver

    with run_registry() as reg:
        ref = f"{reg.host}/test/busybox:async"
        with Resolver(plain_http=True) as r:
            push_image(r, ref, make_test_image("async"))
        yield ref


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


async def clean(c: AsyncClient) -> None:
    """Remove everything of the client's namespace, then the namespace."""
    for task_id, _, _ in await c.tasks.list():
        task = await c.tasks.get(task_id)
        await task.delete(force=True)
    for container in await c.containers.list():
        await c.containers.delete(container.id, cleanup_snapshot=True)
    for img in await c.images.list():
        await c.images.delete(img.name, sync=True)
    await c.namespaces.delete(c.namespace)


def in_namespace(daemon: Daemon, body: Callable[[AsyncClient], Awaitable[None]]) -> None:
    """Run ``body`` with an async client in a fresh namespace, removed afterwards."""

    async def main() -> None:
        async with AsyncClient(daemon.address, namespace=f"aio-{uuid.uuid4().hex[:8]}") as c:
            try:
                await body(c)
            finally:
                await clean(c)
        for controller in Path("/sys/fs/cgroup").iterdir():
            cg = controller / c.namespace
            if cg.is_dir():
                cg.rmdir()

    run(main())


def test_introspection_and_records(daemon: Daemon) -> None:
    async def body(c: AsyncClient) -> None:
        with Client(daemon.address) as sync:
            assert await c.version() == sync.version()
            assert await c.server() == sync.server()
            assert [p.id for p in await c.plugins(["type==io.containerd.grpc.v1"])] == [
                p.id for p in sync.plugins(["type==io.containerd.grpc.v1"])
            ]
        await c.namespaces.create(c.namespace, {"team": "a"})
        assert await c.namespaces.labels(c.namespace) == {"team": "a"}
        assert c.namespace in [n.name for n in await c.namespaces.list()]
        with pytest.raises(errdefs.NotFound, match="nosuch"):
            await c.images.get("nosuch")
        with pytest.raises(errdefs.AlreadyExists):
            await c.namespaces.create(c.namespace)

    in_namespace(daemon, body)


def test_run_and_wait(daemon: Daemon, image_ref: str, tmp_path: Path) -> None:
    async def body(c: AsyncClient) -> None:
        res = await c.run(image_ref, ["sh", "-c", "echo hi; exit 3"], plain_http=True)
        assert isinstance(res, AsyncRunResult)
        status = await res.wait()
        assert (status.code, res.exit_code, res.stdout, res.stderr) == (3, 3, b"hi\n", b"")
        assert status.exited_at is not None
        with pytest.raises(errdefs.ContainerdError, match="exited with 3"):
            res.check()
        assert (await c.run(image_ref, ["true"])).check().exit_code == 0

        task = await c.run(image_ref, ["cat"], detach=True, stdin=b"in\n", name="bg")
        assert isinstance(task, AsyncTask)
        assert task.id == "bg"
        assert (await task.wait()).code == 0
        assert task.io.stdout_data == b"in\n"
        await task.delete()
        assert await c.containers.list() == []  # run's default: removed with the task

    in_namespace(daemon, body)


def test_many_awaits_at_once(daemon: Daemon, image_ref: str) -> None:
    async def body(c: AsyncClient) -> None:
        await c.pull(image_ref, plain_http=True)
        lists = await asyncio.gather(*(c.images.list() for _ in range(50)))
        assert {tuple(i.name for i in images) for images in lists} == {(image_ref,)}
        results = await asyncio.gather(
            *(c.run(image_ref, ["sh", "-c", f"echo {n}"], name=f"r{n}") for n in range(6))
        )
        assert sorted(r.stdout or b"" for r in results) == [f"{n}\n".encode() for n in range(6)]
        # six detached tasks waited for at once: each wait holds a pool thread
        tasks = await asyncio.gather(
            *(c.run(image_ref, ["busybox", "sleep", "0.3"], detach=True) for _ in range(6))
        )
        statuses = await asyncio.gather(*(t.wait() for t in tasks))
        assert [s.code for s in statuses] == [0] * 6
        await asyncio.gather(*(t.delete() for t in tasks))

    in_namespace(daemon, body)


def test_container_handle_task_and_exec(daemon: Daemon, image_ref: str) -> None:
    async def body(c: AsyncClient) -> None:
        await c.pull(image_ref, plain_http=True)
        await c.containers.create_from_image("box", image_ref, args=["busybox", "sleep", "100"])
        handle = c.container("box")
        assert (await handle.info()).id == "box"
        assert (await handle.spec())["process"]["args"] == ["busybox", "sleep", "100"]
        task = await handle.new_task()
        exited = task.wait_future()
        await task.start()
        assert (await task.status()).status is ProcessStatus.RUNNING
        assert task.pid in [p.pid for p in await task.pids()]
        proc = await task.exec("e1", ["sh", "-c", "echo inside"], io=cio.capture())
        await proc.start()
        assert (await proc.wait()).code == 0
        assert proc.io.stdout_data == b"inside\n"
        await proc.delete()
        await task.pause()
        assert (await task.status()).status is ProcessStatus.PAUSED
        await task.resume()
        await task.kill(signal.SIGKILL)
        assert (await exited).signal is signal.SIGKILL
        again = await handle.task()
        assert again.pid == task.pid
        await task.delete()
        await handle.delete()
        assert await c.containers.list() == []

    in_namespace(daemon, body)


def test_leases_content_and_images(daemon: Daemon, image_ref: str) -> None:
    async def body(c: AsyncClient) -> None:
        image = await c.pull(image_ref, plain_http=True)
        manifest = await c.content.read_blob(image.target)
        assert manifest == await c.content.read_blob(image.target.digest)
        async with await c.content.reader_at(image.target) as reader:
            assert reader.size == len(manifest)
            assert await reader.read_at(0, 10) == manifest[:10]
        async with await c.leases.create(labels={"k": "v"}) as lease:
            assert lease.labels["k"] == "v"
            assert lease.id in [x.id for x in await c.leases.list()]
            async with await lease.content.writer("w1") as w:
                await w.write(b"leased blob")
                await w.commit(len(b"leased blob"), "")
            assert [r.type for r in await lease.resources()] == ["content"]
        assert lease.id not in [x.id for x in await c.leases.list()]
        async with c.with_lease() as held:
            assert c.lease == held
        assert c.lease is None
        await c.images.tag(image_ref, "example.com/copy:1")
        assert sorted(i.name for i in await c.images.list()) == sorted(
            [image_ref, "example.com/copy:1"]
        )
        out = io.BytesIO()
        await c.images.export(out, ["example.com/copy:1"])
        await c.images.delete("example.com/copy:1")
        out.seek(0)
        imported = await c.images.import_(out)
        assert [i.name for i in imported] == ["example.com/copy:1"]
        assert await c.images.is_unpacked(image, snapshotter=SNAPSHOTTER)
        walked: list[str] = []
        await c.snapshots(SNAPSHOTTER).walk(lambda info: walked.append(info.name))
        assert await c.images.chain_id(image) in walked

    in_namespace(daemon, body)


def test_events_as_an_async_iterator(daemon: Daemon) -> None:
    async def body(c: AsyncClient) -> None:
        await c.namespaces.create(c.namespace)
        async with await c.events(f'namespace=="{c.namespace}"') as stream:
            assert isinstance(stream, AsyncEventStream)
            first = asyncio.ensure_future(anext(stream))
            while not first.done():  # markers until the subscription is in place
                await c.publish(SYNC_TOPIC, namespace_pb2.NamespaceUpdate(name="sync"))
                await asyncio.wait([first], timeout=0.2)
            assert first.result().topic == SYNC_TOPIC
            await c.namespaces.set_label(c.namespace, "a", "b")
            async for ev in stream:
                if ev.topic != SYNC_TOPIC:
                    break
            assert ev.topic == "/namespaces/update"
            assert isinstance(ev.event, namespace_pb2.NamespaceUpdate)
            assert dict(ev.event.labels) == {"a": "b"}
        with pytest.raises(StopAsyncIteration):
            await anext(stream)

    in_namespace(daemon, body)


# --- errors -----------------------------------------------------------------------------


def test_missing_socket_is_unavailable_at_once(tmp_path: Path) -> None:
    address = str(tmp_path / "nothing.sock")
    message = f"connect to {address}: no such file or directory"

    async def main() -> None:
        async with AsyncClient(address, timeout=60) as c:
            with pytest.raises(Unavailable, match=message):
                await c.version()
            with pytest.raises(Unavailable, match=message):
                await c.images.list()
            with pytest.raises(Unavailable, match=message):
                await c.run("example.com/x:1", ["true"])
            with pytest.raises(Unavailable, match=message):
                await c.connect()

    start = time.monotonic()
    run(main())
    with Client(address, timeout=60) as c:
        for call in (c.version, c.containers.list, c.namespaces.list, c.connect):
            with pytest.raises(Unavailable, match=message):
                call()
    # the 60s connect timeout is for a daemon that is starting, not for a missing socket
    assert time.monotonic() - start < 30


def test_closed_client_refuses_calls(daemon: Daemon) -> None:
    c = Client(daemon.address)
    c.version()
    c.close()
    with pytest.raises(errdefs.FailedPrecondition, match=f"client of {daemon.address} is closed"):
        c.version()

    async def main() -> None:
        ac = AsyncClient(daemon.address)
        await ac.aclose()
        with pytest.raises(errdefs.FailedPrecondition, match=f"client of {daemon.address} is"):
            await ac.version()

    run(main())


def test_daemon_killed_is_unavailable_naming_the_address(tmp_path: Path) -> None:
    d = make_daemon(tmp_path)
    try:
        d.start()
        sync = Client(d.address)
        sync.version()
        stream = sync.events()
        got: list[BaseException] = []

        def consume() -> None:
            try:
                for _ in stream:
                    pass
            except BaseException as exc:
                got.append(exc)

        reader = threading.Thread(target=consume)
        reader.start()

        async def main() -> None:
            async with AsyncClient(d.address) as c:
                await c.version()
                astream = await c.events()
                pending = asyncio.ensure_future(anext(astream))
                await asyncio.sleep(0.3)
                d.stop(signal.SIGKILL)
                with pytest.raises(Unavailable, match=f"connect to {d.address}"):
                    await pending
                with pytest.raises(Unavailable, match=f"connect to {d.address}"):
                    await c.version()

        run(main())
        reader.join(30)
        assert not reader.is_alive()
        assert len(got) == 1
        assert isinstance(got[0], Unavailable)
        assert f"connect to {d.address}" in str(got[0])
        with pytest.raises(Unavailable, match=f"connect to {d.address}: connection refused"):
            sync.version()
        sync.close()
    finally:
        d.stop()
        d.cleanup()
