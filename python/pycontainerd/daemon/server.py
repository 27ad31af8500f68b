"""The daemon's life: lock the root, claim the socket, load plugins, serve until a signal."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import fcntl
import gc
import logging
import os
import signal
import socket
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path

from pycontainerd import errdefs
from pycontainerd.daemon.config import Config
from pycontainerd.daemon.rpc import RPCServer
from pycontainerd.plugin import PluginSet, Registration, Type, load

__all__ = ["Server", "claim_socket"]

log = logging.getLogger(__name__)


def _socket_path(address: str) -> str:
    return address.removeprefix("unix://").removeprefix("unix:")


def claim_socket(path: str) -> None:
    """Make ``path`` free to bind: refuse when a daemon answers there, remove a stale socket."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise errdefs.FailedPrecondition(f"serve {path}: the path exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(2.0)
        probe.connect(path)
    except OSError as exc:
        if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
            raise errdefs.Unavailable(f"serve {path}: probe existing socket: {exc}") from exc
        log.info("removing stale socket %s", path)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    finally:
        probe.close()
    raise errdefs.AlreadyExists(f"serve {path}: another daemon is already serving this socket")


@contextlib.contextmanager
def lock_root(root: Path) -> Iterator[None]:
    """Hold an exclusive lock on the root for the daemon's life: one daemon per root."""
    root.mkdir(parents=True, exist_ok=True, mode=0o711)
    fd = os.open(root / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
            raise errdefs.AlreadyExists(
                f"lock root {root}: another daemon (pid {holder}) is using it"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


class Server:
    """One daemon: its plugins and its gRPC server on the unix socket."""

    def __init__(self, config: Config, registrations: Sequence[Registration]) -> None:
        self.config = config
        self.registrations = registrations
        self.plugins = PluginSet()
        self._server: RPCServer | None = None
        self._stopping = asyncio.Event()
        self._bound = False

    @property
    def socket_path(self) -> str:
        return _socket_path(self.config.grpc.address)

    async def start(self) -> None:
        cfg = self.config
        root, state = Path(cfg.root), Path(cfg.state)
        state.mkdir(parents=True, exist_ok=True, mode=0o711)
        path = self.socket_path
        Path(path).parent.mkdir(parents=True, exist_ok=True, mode=0o711)
        claim_socket(path)

        self.plugins = load(
            self.registrations,
            root=root,
            state=state,
            address=path,
            configs=cfg.plugins,
            disabled=cfg.disabled_plugins,
        )
        for uri in cfg.required_plugins:
            failed = [
                p for p in self.plugins.all() if p.registration.uri == uri and p.error is not None
            ]
            if failed or uri not in {p.registration.uri for p in self.plugins.all()}:
                reason = str(failed[0].error) if failed else "not loaded"
                raise errdefs.FailedPrecondition(f"required plugin {uri}: {reason}")

        server = _make_rpc_server(cfg)
        for id_, instance in self.plugins.instances(Type.GRPC).items():
            register = getattr(instance, "register", None)
            if register is None:
                log.warning("grpc plugin %s has nothing to register", id_)
                continue
            register(server)

        # The socket is made by bind: a tight umask keeps it from ever being world-accessible.
        old_umask = os.umask(0o117)
        try:
            self._bound = True
            await server.start(path)
        finally:
            os.umask(old_umask)
        os.chmod(path, 0o660)
        os.chown(path, cfg.grpc.uid, cfg.grpc.gid)
        self._server = server
        log.info("serving on %s", path)
        # start-up (imports, plugin init, the first collection) leaves freed heap behind
        asyncio.get_running_loop().call_later(TRIM_DELAY, release_heap)

    def request_stop(self) -> None:
        self._stopping.set()

    async def wait(self) -> None:
        await self._stopping.wait()

    async def stop(self) -> None:
        # Plugins with streams that would run on (health watches, event subscriptions) end them
        # first, so the transport's grace period is spent only on calls that finish by themselves.
        for plugin in self.plugins.all():
            shutdown = getattr(plugin.instance, "shutdown", None)
            if plugin.error is None and callable(shutdown):
                shutdown()
        if self._server is not None:
            await self._server.stop(grace=2.0)
            self._server = None
        for plugin in reversed(self.plugins.all()):
            close = getattr(plugin.instance, "close", None)
            if plugin.error is None and callable(close):
                try:
                    close()
                except Exception:
                    log.exception("closing plugin %s", plugin.registration.uri)
        if self._bound:  # never remove a socket another daemon serves
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.socket_path)
            self._bound = False
        log.info("stopped")


def _make_rpc_server(cfg: Config) -> RPCServer:
    from pycontainerd.daemon.transport.native import NativeServer

    return NativeServer(
        max_recv_message_size=cfg.grpc.max_recv_message_size,
        max_send_message_size=cfg.grpc.max_send_message_size,
    )


#: Seconds after start-up before the heap start-up freed is given back to the system.
TRIM_DELAY = 3.0


def release_heap() -> None:
    """Give memory freed on the heap back to the system (glibc's ``malloc_trim``): the
    daemon's idle RSS, not its speed, is what this is for."""
    gc.collect()
    try:
        libc = ctypes.CDLL(None)
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc
        return
    trim(0)


async def serve(config: Config, registrations: Sequence[Registration]) -> None:
    """Run a daemon until SIGTERM or SIGINT."""
    server = Server(config, registrations)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, server.request_stop)
    with lock_root(Path(config.root)):
        try:
            await server.start()
            await server.wait()
            log.info("received signal, shutting down")
        finally:
            await server.stop()
