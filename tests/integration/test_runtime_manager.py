"""The runtime's task manager in-process, with containerd's runc shim: what the daemon finds
on start that the Tasks service cannot produce on its own."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import tempfile
import uuid
from pathlib import Path

import pytest

from pycontainerd.api.containerd.services.events.ttrpc.v1 import events_pb2
from pycontainerd.daemon.ttrpc import EventsTTRPCService
from pycontainerd.events import Exchange
from pycontainerd.runtime import Bundle, ShimCommand, ShimLog, TaskManager
from pycontainerd.ttrpc import Server
from tests.fixtures.containers import oci_spec

pytestmark = pytest.mark.integration

CONTAINERD_SHIM = "/usr/bin/containerd-shim-runc-v2"


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _shims_with_id(id_: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[0] == CONTAINERD_SHIM.encode() and id_.encode() in argv:
            pids.append(int(proc.name))
    return pids


def test_a_shim_without_a_task_is_stopped_on_load(tmp_path: Path) -> None:
    """The daemon died after starting a shim and before creating its task."""

    async def main(sockdir: str) -> None:
        address = os.path.join(sockdir, "d.sock")
        exchange = Exchange()
        server = Server()
        server.add_service(
            events_pb2.DESCRIPTOR.services_by_name["Events"], EventsTTRPCService(exchange)
        )
        await server.start(address + ".ttrpc")
        root, state = tmp_path / "root", tmp_path / "state"
        id_ = f"half-{uuid.uuid4().hex[:8]}"
        spec = json.dumps(oci_spec(["true"], namespace="ns1", id_=id_)).encode()
        bundle = Bundle.new(root, state, "ns1", id_, spec)
        command = ShimCommand(
            binary=CONTAINERD_SHIM, bundle=bundle, address=address, ttrpc_address=address + ".ttrpc"
        )
        shim_log = ShimLog(bundle)  # the shim's stderr: it exits without it
        shim_address = await command.start(None)
        socket_file = Path(shim_address.removeprefix("unix://"))
        try:
            (bundle.path / "shim-binary-path").write_text(CONTAINERD_SHIM)
            shim_pids = _shims_with_id(id_)
            assert len(shim_pids) == 1, shim_pids

            manager = TaskManager(
                root=root,
                state=state,
                address=address,
                ttrpc_address=address + ".ttrpc",
                exchange=exchange,
            )
            shim_log.close()  # the daemon is gone
            manager.start_loading()
            await manager.loaded()
            assert manager.tasks() == []
            assert not bundle.path.exists()
            assert not (root / "ns1" / id_).exists()
            for _ in range(200):
                if not _running(shim_pids[0]) and not socket_file.exists():
                    break
                await asyncio.sleep(0.05)
            assert not _running(shim_pids[0])
            assert not socket_file.exists()
            manager.close()
        finally:  # whatever failed, no shim stays behind
            shim_log.close()
            for pid in _shims_with_id(id_):
                os.kill(pid, signal.SIGKILL)
            socket_file.unlink(missing_ok=True)
            await server.stop()

    with tempfile.TemporaryDirectory(prefix="pcd-") as sockdir:  # short: socket path limit
        asyncio.run(main(sockdir))
