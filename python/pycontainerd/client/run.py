"""``Client.run``: an image's command in a new container, as ``ctr run`` (and ``docker run``).

::

    res = c.run("docker.io/library/busybox:latest", ["echo", "hi"])
    res.exit_code, res.stdout, res.stderr      # 0, b"hi\\n", b""
    res.check()                                 # raises ContainerError unless the code is 0

    task = c.run(image, ["sleep", "60"], detach=True)   # a started Task
    task.kill(); task.wait(); task.delete()             # also removes the container

The image is pulled (and unpacked) when it is missing. By default stdout and stderr are
captured in memory; pass a stream, a file or a file descriptor to send them there instead.
"""

from __future__ import annotations

import contextlib
import io
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pycontainerd import cio, errdefs
from pycontainerd.client.containers import DEFAULT_RUNTIME
from pycontainerd.client.tasks import ExitStatus, Task
from pycontainerd.mount import Mount
from pycontainerd.oci import (
    Spec,
    SpecOpt,
    root_from_mounts,
    with_cpus,
    with_env,
    with_memory_limit,
    with_mounts,
    with_net_host,
    with_process_cwd,
    with_rootfs_readonly,
    with_tty,
    with_user,
)
from pycontainerd.snapshots import DEFAULT_SNAPSHOTTER

if TYPE_CHECKING:
    from pycontainerd.client.client import Client
    from pycontainerd.remotes import Resolver

__all__ = ["ContainerError", "MountSpec", "RunResult", "run"]

#: A mount of :meth:`Client.run`: an OCI mount object, a ``Mount`` (whose target is the
#: destination), or ctr's ``type=bind,src=/a,dst=/b,options=rbind:ro``.
MountSpec = Mapping[str, Any] | Mount | str


class ContainerError(errdefs.ContainerdError):
    """A container run by :meth:`Client.run` exited with a non-zero code
    (:meth:`RunResult.check`)."""

    def __init__(self, message: str, result: RunResult) -> None:
        super().__init__(message)
        self.result = result


@dataclass(frozen=True)
class RunResult:
    """What a container run to its end left: its exit status and captured output
    (``None`` where the stream went elsewhere)."""

    id: str
    exit_status: ExitStatus
    stdout: bytes | None
    stderr: bytes | None

    @property
    def exit_code(self) -> int:
        """The container's exit code."""
        return self.exit_status.code

    def wait(self) -> ExitStatus:
        """The exit status (the container has exited: a :class:`Task`'s ``wait`` shape)."""
        return self.exit_status

    def check(self) -> RunResult:
        """This result, or :class:`ContainerError` if the exit code is not 0."""
        if self.exit_code != 0:
            detail = (self.stderr or b"").decode(errors="replace").strip()
            message = f"container {self.id} exited with {self.exit_code}"
            raise ContainerError(f"{message}: {detail}" if detail else message, self)
        return self


def _mount_json(m: MountSpec) -> Mapping[str, Any]:
    if isinstance(m, str):
        from pycontainerd.cli.containers import parse_mount

        return parse_mount(m)
    if isinstance(m, Mount):
        return {
            "destination": m.target,
            "type": m.type,
            "source": m.source,
            "options": list(m.options),
        }
    return m


def _user_opt(client: Client, snapshotter: str, container_id: str, user: str) -> SpecOpt:
    """``with_user`` resolving names in the container's own snapshot."""

    def opt(s: Spec) -> None:
        mounts = client.snapshots(snapshotter).mounts(container_id)
        with_user(user, root_from_mounts(mounts))(s)

    return opt


def _ensure_image(
    client: Client,
    image: str,
    snapshotter: str,
    resolver: Resolver | None,
    plain_http: bool,
) -> str:
    try:
        img = client.images.get(image)
    except errdefs.NotFound:
        img = client.pull(image, resolver=resolver, plain_http=plain_http, snapshotter=snapshotter)
        return img.name
    if not client.images.is_unpacked(img, snapshotter=snapshotter):
        client.images.unpack(img, snapshotter=snapshotter)
    return img.name


def run(
    client: Client,
    image: str,
    args: Sequence[str] | None = None,
    *,
    env: Mapping[str, str] | Sequence[str] | None = None,
    cwd: str | None = None,
    user: str | None = None,
    mounts: Sequence[MountSpec] = (),
    tty: bool = False,
    stdin: cio.Input | None = None,
    detach: bool = False,
    remove: bool = True,
    name: str | None = None,
    labels: Mapping[str, str] | None = None,
    memory: int | None = None,
    cpus: float | None = None,
    network: str = "none",
    ports: Mapping[int | str, int] | None = None,
    read_only: bool = False,
    stdout: cio.Output | None = None,
    stderr: cio.Output | None = None,
    snapshotter: str = DEFAULT_SNAPSHOTTER,
    runtime: str = DEFAULT_RUNTIME,
    resolver: Resolver | None = None,
    plain_http: bool = False,
    fifo_dir: str | None = None,
) -> RunResult | Task:
    """The implementation of :meth:`pycontainerd.Client.run` (see there)."""
    if not network:
        raise errdefs.InvalidArgument('network must be "none", "host" or a network name')
    # a named network (CNI, attached by the daemon at task create) is asked for by labels
    from pycontainerd.network import container_labels

    net_labels = container_labels(network=network, ports=dict(ports or {}))
    if tty and stderr is not None:
        raise errdefs.InvalidArgument("a terminal has no separate stderr: stderr must be None")
    ref = _ensure_image(client, image, snapshotter, resolver, plain_http)
    container_id = name or uuid.uuid4().hex[:12]
    opts: list[SpecOpt] = []
    if env:
        pairs = [f"{k}={v}" for k, v in env.items()] if isinstance(env, Mapping) else list(env)
        opts.append(with_env(pairs))
    if mounts:
        opts.append(with_mounts([_mount_json(m) for m in mounts]))
    if read_only:
        opts.append(with_rootfs_readonly())
    if cwd:
        opts.append(with_process_cwd(cwd))
    if user:
        opts.append(_user_opt(client, snapshotter, container_id, user))
    if tty:
        opts.append(with_tty())
    if network == "host":
        opts.append(with_net_host())
    if cpus:
        opts.append(with_cpus(cpus))
    if memory:
        opts.append(with_memory_limit(memory))
    client.containers.create_from_image(
        container_id,
        ref,
        args=list(args) if args else None,
        spec_opts=opts,
        snapshotter=snapshotter,
        runtime=runtime,
        labels={**(labels or {}), **net_labels},
    )
    buf_out, buf_err = io.BytesIO(), io.BytesIO()
    out: cio.Output | None = buf_out if stdout is None else stdout
    err: cio.Output | None = None if tty else (buf_err if stderr is None else stderr)
    creator = cio.with_streams(stdin, out, err, terminal=tty, fifo_dir=fifo_dir)
    try:
        task = client.tasks.create(container_id, io=creator, remove_container=remove)
    except BaseException:
        # the daemon may have made the task after all (a deadline passed on our side)
        with contextlib.suppress(errdefs.ContainerdError):
            client.tasks.get(container_id).delete(force=True)
        if remove:
            with contextlib.suppress(errdefs.ContainerdError):
                client.containers.delete(container_id, cleanup_snapshot=True)
        raise
    try:
        exited = task.wait_future()
        task.start()
        if detach:
            return task
        status = exited.result()
    except BaseException:
        with contextlib.suppress(errdefs.ContainerdError):
            task.delete(force=True)
        raise
    task.delete()
    return RunResult(
        container_id,
        status,
        buf_out.getvalue() if stdout is None else None,
        buf_err.getvalue() if stderr is None and not tty else None,
    )
