"""Shim executables: finding one for a runtime name, and its ``start`` and ``delete`` commands.

The command line is containerd's: ``<shim> -namespace NS -address GRPC -publish-binary BIN
[-debug] -id ID start`` with the bundle as working directory, ``TTRPC_ADDRESS`` in the
environment and the runtime options (a serialized ``Any``) on stdin; the shim prints its ttrpc
address. ``... -id ID -bundle PATH delete`` cleans up after a shim that died and prints a
``containerd.task.v2.DeleteResponse``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from google.protobuf import any_pb2

from pycontainerd import errdefs
from pycontainerd.api.containerd.task.v2 import shim_pb2
from pycontainerd.runtime.bundle import Bundle

__all__ = [
    "DEFAULT_SHIMS",
    "Exit",
    "ShimCommand",
    "binary_name",
    "resolve_runtime",
]

log = logging.getLogger(__name__)

#: Candidates per runtime name, the first on PATH wins: our shim, else containerd's.
DEFAULT_SHIMS: Final[Mapping[str, Sequence[str]]] = {
    "io.containerd.runc.v2": ("containerd-shim-pycontainerd-v2", "containerd-shim-runc-v2"),
}

#: How long ``start`` and ``delete`` may take.
COMMAND_TIMEOUT: Final = 30.0


@dataclass(frozen=True)
class Exit:
    """How a process ended: its pid, status and time (nanoseconds since the epoch)."""

    pid: int
    status: int
    timestamp: int


def binary_name(runtime: str) -> str:
    """containerd's rule: ``io.containerd.X.vN`` runs ``containerd-shim-X-vN``; "" if no match."""
    parts = runtime.split(".")
    if len(parts) < 2 or not parts[-1] or not parts[-2]:
        return ""
    return f"containerd-shim-{parts[-2]}-{parts[-1]}"


def resolve_runtime(runtime: str, shims: Mapping[str, Sequence[str]] = DEFAULT_SHIMS) -> str:
    """The absolute path of the shim for ``runtime`` (a name, or an absolute path)."""
    if not runtime:
        raise errdefs.InvalidArgument("no runtime name")
    if os.path.isabs(runtime):
        if not os.path.isfile(runtime):
            raise errdefs.InvalidArgument(f"invalid custom binary path {runtime}: no such file")
        return runtime
    candidates = list(shims.get(runtime, ()))
    if not candidates:
        name = binary_name(runtime)
        if not name:
            raise errdefs.InvalidArgument(
                f"invalid runtime name {runtime}, correct runtime name should be either format "
                "like `io.containerd.runc.v1` or a full path to the binary"
            )
        candidates = [name]
    for candidate in candidates:
        if os.path.isabs(candidate):
            if os.path.isfile(candidate):
                return candidate
            continue
        found = shutil.which(candidate)
        if found:
            return os.path.abspath(found)
    raise errdefs.NotFound(f'runtime "{runtime}" binary not installed "{candidates[0]}"')


@dataclass(frozen=True)
class ShimCommand:
    """How to run one shim executable for one bundle."""

    binary: str
    bundle: Bundle
    address: str
    ttrpc_address: str
    publish_binary: str = ""
    debug: bool = False

    def _args(self, *extra: str) -> list[str]:
        return [
            self.binary,
            "-namespace",
            self.bundle.namespace,
            "-address",
            self.address,
            "-publish-binary",
            self.publish_binary,
            *extra,
        ]

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "TTRPC_ADDRESS": self.ttrpc_address,
                "GRPC_ADDRESS": self.address,
                "NAMESPACE": self.bundle.namespace,
                "GOMAXPROCS": "2",
            }
        )
        return env

    async def _run(self, args: list[str], stdin: bytes, what: str) -> tuple[int, bytes, bytes]:
        try:
            proc = await asyncio.create_subprocess_exec(
                *args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=self.bundle.path,
                env=self._env(),
                process_group=0,
            )
        except OSError as exc:
            raise errdefs.Unavailable(f"{what}: exec {self.binary}: {exc.strerror}") from exc
        try:
            async with asyncio.timeout(COMMAND_TIMEOUT):
                out, err = await proc.communicate(stdin)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise errdefs.DeadlineExceeded(
                f"{what}: {self.binary} did not finish within {COMMAND_TIMEOUT:g}s"
            ) from None
        assert proc.returncode is not None
        return proc.returncode, out, err

    async def start(self, options: any_pb2.Any | None) -> str:
        """Run ``start``: the shim daemonizes and prints its ttrpc address."""
        args = self._args(*(["-debug"] if self.debug else []), "-id", self.bundle.id, "start")
        stdin = options.SerializeToString() if options is not None else b""
        code, out, err = await self._run(args, stdin, f"start shim {self.bundle.id}")
        if code != 0:
            message = (out + err).decode(errors="replace").strip()
            raise errdefs.Unknown(
                f"start shim {self.bundle.id}: {message or 'no output'}: exit status {code}"
            )
        address = out.decode(errors="replace").strip()
        if not address:
            raise errdefs.Unknown(f"start shim {self.bundle.id}: no address printed")
        return address

    async def delete(self) -> Exit:
        """Run ``delete`` after a shim died: it kills and deletes the task, reports its exit."""
        args = self._args("-id", self.bundle.id, "-bundle", str(self.bundle.path), "delete")
        code, out, err = await self._run(args, b"", f"delete shim {self.bundle.id}")
        if code != 0:
            message = err.decode(errors="replace").strip()
            raise errdefs.Unknown(
                f"delete shim {self.bundle.id}: {message or 'no output'}: exit status {code}"
            )
        if err.strip():
            log.warning("cleanup warnings %s", err.decode(errors="replace").strip())
        response = shim_pb2.DeleteResponse.FromString(out)
        return Exit(
            pid=response.pid,
            status=response.exit_status,
            timestamp=response.exited_at.ToNanoseconds() if response.HasField("exited_at") else 0,
        )
