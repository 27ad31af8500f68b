"""``AsyncClient`` on both daemons: the same calls as ``Client``, awaited (run with
``asyncio.run`` inside each test)."""

from __future__ import annotations

import asyncio

import pytest

from pycontainerd import AsyncClient, errdefs
from tests.client.conftest import Env


def test_pull_run_and_records(env: Env) -> None:
    async def main() -> None:
        async with AsyncClient(env.target.address, namespace=env.namespace) as c:
            assert (await c.version()).version
            img = await c.pull(env.ref, plain_http=True)
            assert [i.name for i in await c.images.list()] == [img.name]
            results = await asyncio.gather(
                *(
                    c.run(env.ref, ["echo", str(i)], plain_http=True, fifo_dir=str(env.fifo_dir))
                    for i in range(3)
                )
            )
            assert sorted(r.stdout or b"" for r in results) == [b"0\n", b"1\n", b"2\n"]
            assert await c.containers.list() == []

    asyncio.run(main())


def test_detached_task_and_exec(env: Env) -> None:
    from pycontainerd import cio

    async def main() -> None:
        async with AsyncClient(env.target.address, namespace=env.namespace) as c:
            task = await c.run(
                env.ref,
                ["busybox", "sleep", "1000"],
                detach=True,
                plain_http=True,
                fifo_dir=str(env.fifo_dir),
            )
            p = await task.exec("e", ["sh", "-c", "echo in"], io=cio.capture())
            await p.start()
            assert (await p.wait()).code == 0
            await p.delete()
            assert p.io.stdout_data == b"in\n"
            await task.kill("SIGKILL")
            assert (await task.wait()).code == 137
            await task.delete()

    asyncio.run(main())


def test_errors(env: Env) -> None:
    async def main() -> None:
        async with AsyncClient(env.target.address, namespace=env.namespace) as c:
            with pytest.raises(errdefs.NotFound, match="missing"):
                await c.containers.get("missing")
            await c.containers.create("a", spec={"ociVersion": "1.0.2"})
            with pytest.raises(errdefs.AlreadyExists, match="a"):
                await c.containers.create("a", spec={"ociVersion": "1.0.2"})
            await c.containers.delete("a")

    asyncio.run(main())
