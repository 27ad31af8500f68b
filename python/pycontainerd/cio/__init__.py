"""Client-side stdio of tasks and processes: containerd's ``cio`` package.

The client makes the FIFOs a shim opens, as containerd's client does:
``<fifo dir>/<random>/<id>-stdin|stdout|stderr`` (no stderr for a terminal, which has one
stream), and copies between them and Python streams or files in threads::

    io = cio.with_streams(stdin=b"input", stdout=sys.stdout, stderr=sys.stderr)("web")
    ... Tasks.Create(stdin=io.config.stdin, stdout=io.config.stdout, ...)
    io.start()          # the process runs: stdin may be closed when its data is written
    io.wait(); io.close()   # output drained; the FIFOs and their directory removed

A :data:`Creator` makes the IO of a new process from its id: :func:`with_streams`,
:func:`with_stdio`, :func:`capture`, :func:`null_io`, :func:`log_uri`, :func:`log_file`,
:func:`binary_io`. :func:`attach` and :func:`load` reuse the FIFOs of an existing process
(``ctr tasks attach`` and ``ctr tasks delete``).

Streams: an input is ``bytes``/``str`` data, a file descriptor, or an object with ``read``
(or ``fileno``); an output is a file descriptor or an object with ``write`` (or ``fileno``;
text streams get decoded text). Reading a FIFO ends when its writer (the shim) has opened
and closed it, or when the IO is cancelled.
"""

from __future__ import annotations

import contextlib
import fcntl
import io as _io
import os
import select
import stat
import sys
import tempfile
import termios
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol, TypeAlias

from pycontainerd import errdefs

__all__ = [
    "DEFAULT_FIFO_DIR",
    "IO",
    "Creator",
    "DirectIO",
    "FIFOSet",
    "IOConfig",
    "Input",
    "Output",
    "attach",
    "binary_io",
    "capture",
    "load",
    "log_file",
    "log_uri",
    "new_fifo_set_in_dir",
    "null_io",
    "with_stdio",
    "with_streams",
]

#: Where the client's FIFO directories are made (ctr's is ``/run/containerd/fifo``).
DEFAULT_FIFO_DIR: Final = "/run/pycontainerd/fifo"
_CHUNK: Final = 65536


def _os_error(exc: OSError, what: str) -> errdefs.ContainerdError:
    reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
    kind: type[errdefs.ContainerdError] = errdefs.Unknown
    if isinstance(exc, FileNotFoundError):
        kind = errdefs.NotFound
    elif isinstance(exc, PermissionError | NotADirectoryError):
        kind = errdefs.FailedPrecondition
    return kind(f"{what}: {reason}")


class _Readable(Protocol):
    def read(self, n: int = ..., /) -> bytes | str: ...


class _Writable(Protocol):
    def write(self, data: Any, /) -> Any: ...


#: What stdin can be read from: data, a file descriptor or a readable object.
Input: TypeAlias = bytes | str | int | _Readable
#: Where stdout and stderr can go: a file descriptor or a writable object.
Output: TypeAlias = int | _Writable


@dataclass(frozen=True)
class IOConfig:
    """What a task or process is created with: the stdio paths (empty: none) and whether it
    has a terminal (containerd's ``cio.Config``)."""

    stdin: str = ""
    stdout: str = ""
    stderr: str = ""
    terminal: bool = False


@dataclass(frozen=True)
class FIFOSet:
    """The FIFO paths of one process and the directory made for them (empty: not ours to
    remove)."""

    config: IOConfig
    directory: str = ""

    def remove(self) -> None:
        """Remove the FIFOs (only FIFOs) and then the directory, if it is left empty."""
        for path in (self.config.stdin, self.config.stdout, self.config.stderr):
            if not path:
                continue
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISFIFO(os.lstat(path).st_mode):
                    os.unlink(path)
        if self.directory:
            with contextlib.suppress(FileNotFoundError, OSError):
                os.rmdir(self.directory)


def new_fifo_set_in_dir(root: str | None, id_: str, terminal: bool) -> FIFOSet:
    """A new directory under ``root`` (default :data:`DEFAULT_FIFO_DIR`) and the FIFO paths of
    process ``id_`` in it, as containerd's ``NewFIFOSetInDir`` (the FIFOs are made later)."""
    root = root or DEFAULT_FIFO_DIR
    try:
        os.makedirs(root, mode=0o700, exist_ok=True)
        directory = tempfile.mkdtemp(dir=root)
    except OSError as exc:
        raise _os_error(exc, f"create fifo directory in {root}") from None
    base = os.path.join(directory, id_)
    return FIFOSet(
        IOConfig(
            stdin=f"{base}-stdin",
            stdout=f"{base}-stdout",
            stderr="" if terminal else f"{base}-stderr",
            terminal=terminal,
        ),
        directory,
    )


class IO:
    """The client's side of a process's stdio (containerd's ``cio.IO``).

    :meth:`start` is called once the process has started (stdin is closed only then, so the
    shim has opened it); :meth:`wait` waits until the outputs are drained; :meth:`cancel`
    stops copying now; :meth:`close` cancels and releases everything (removing the FIFOs the
    IO made).
    """

    def __init__(self, config: IOConfig, fifos: FIFOSet | None = None) -> None:
        self.config = config
        self._fifos = fifos
        self._closed = False

    @property
    def stdout_data(self) -> bytes | None:
        """What was captured of stdout (with :func:`capture`), else None."""
        return None

    @property
    def stderr_data(self) -> bytes | None:
        """What was captured of stderr (with :func:`capture`), else None."""
        return None

    def set_stdin_closer(self, closer: Callable[[], None]) -> None:
        """Call ``closer`` (the process's ``close_stdin``) when stdin's data is all written."""

    def start(self) -> None:
        """The process has started."""

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the outputs are copied; whether they are."""
        return True

    def cancel(self) -> None:
        """Stop copying, whatever is left."""

    def close(self) -> None:
        """Cancel, release the FIFOs and remove those this IO made."""
        if self._closed:
            return
        self._closed = True
        self.cancel()
        if self._fifos is not None:
            self._fifos.remove()


class DirectIO(IO):
    """FIFOs and the threads copying through them (containerd's ``cio.NewCreator`` IO)."""

    def __init__(
        self,
        fifos: FIFOSet,
        stdin: Input | None,
        stdout: Output | None,
        stderr: Output | None,
        *,
        remove: bool = True,
    ) -> None:
        super().__init__(fifos.config, fifos if remove else None)
        self._sinks = (stdout, stderr)
        self._cancel_r, self._cancel_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._started = threading.Event()
        self._cancelled = threading.Event()
        self._closer: Callable[[], None] | None = None
        self._outputs: list[threading.Thread] = []
        self._fds: list[int] = []
        self._lock = threading.Lock()
        cfg = fifos.config
        try:
            if stdin is not None and cfg.stdin:
                fd = _open_fifo(cfg.stdin, os.O_RDWR | os.O_NONBLOCK)
                self._fds.append(fd)
                threading.Thread(
                    target=self._copy_in, args=(stdin, fd), daemon=True, name="cio-stdin"
                ).start()
            for path, sink in ((cfg.stdout, stdout), (cfg.stderr, stderr)):
                if sink is None or not path:
                    continue
                fd = _open_fifo(path, os.O_RDONLY | os.O_NONBLOCK)
                self._fds.append(fd)
                t = threading.Thread(
                    target=self._copy_out, args=(fd, _writer(sink)), daemon=True, name="cio-out"
                )
                t.start()
                self._outputs.append(t)
        except BaseException:
            self.close()
            raise

    @property
    def stdout_data(self) -> bytes | None:
        """What stdout wrote, when it went to an ``io.BytesIO``."""
        sink = self._sinks[0]
        return sink.getvalue() if isinstance(sink, _io.BytesIO) else None

    @property
    def stderr_data(self) -> bytes | None:
        """What stderr wrote, when it went to an ``io.BytesIO``."""
        sink = self._sinks[1]
        return sink.getvalue() if isinstance(sink, _io.BytesIO) else None

    def set_stdin_closer(self, closer: Callable[[], None]) -> None:
        self._closer = closer

    def start(self) -> None:
        self._started.set()

    def wait(self, timeout: float | None = None) -> bool:
        for t in self._outputs:
            t.join(timeout)
        return not any(t.is_alive() for t in self._outputs)

    def cancel(self) -> None:
        if not self._cancelled.is_set():
            self._cancelled.set()
            with contextlib.suppress(OSError):
                os.write(self._cancel_w, b"x")

    def close(self) -> None:
        if self._closed:
            return
        self.cancel()
        for t in self._outputs:
            t.join()
        with self._lock:
            fds, self._fds = self._fds, []
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        for fd in (self._cancel_r, self._cancel_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        super().close()

    def _release(self, fd: int) -> None:
        with self._lock:
            if fd in self._fds:
                self._fds.remove(fd)
                os.close(fd)

    # --- threads ----------------------------------------------------------------------------

    def _copy_out(self, fd: int, write: Callable[[bytes], None]) -> None:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        poller.register(self._cancel_r, select.POLLIN)
        broken = False
        try:
            while True:
                events = dict(poller.poll())
                if self._cancel_r in events:
                    _drain(fd, None if broken else write)
                    return
                mask = events.get(fd, 0)
                if mask & select.POLLIN:
                    try:
                        data = os.read(fd, _CHUNK)
                    except BlockingIOError:
                        continue
                    if not data:
                        return
                    if not broken:
                        try:
                            write(data)
                        except (OSError, ValueError):
                            broken = True  # the reader went away: keep draining the FIFO
                    continue
                if mask & (select.POLLHUP | select.POLLERR | select.POLLNVAL):
                    return
        finally:
            self._release(fd)

    def _copy_in(self, source: Input, fd: int) -> None:
        try:
            for chunk in _chunks(source):
                if not self._write_all(fd, chunk):
                    return
            # end of input: once the process has started (the shim holds the FIFO open),
            # closing the only writer is its end of file
            while not self._started.wait(0.5):
                if self._cancelled.is_set():
                    return
            # and once the shim has read what the FIFO holds: a shim may end the process's
            # input on CloseIO without draining the FIFO first
            while _unread(fd) > 0:
                if self._cancelled.wait(0.005):
                    return
            self._release(fd)
            if self._closer is not None:
                with contextlib.suppress(errdefs.ContainerdError):
                    self._closer()
        except OSError:
            return
        finally:
            self._release(fd)

    def _write_all(self, fd: int, data: bytes) -> bool:
        view = memoryview(data)
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        poller.register(self._cancel_r, select.POLLIN)
        while view:
            events = dict(poller.poll())
            if self._cancel_r in events:
                return False
            try:
                n = os.write(fd, view)
            except BlockingIOError:
                continue
            view = view[n:]
        return True


class _CaptureIO(DirectIO):
    def __init__(self, fifos: FIFOSet, stdin: Input | None) -> None:
        err = None if fifos.config.terminal else _io.BytesIO()
        super().__init__(fifos, stdin, _io.BytesIO(), err)


def _open_fifo(path: str, flags: int) -> int:
    try:
        try:
            os.mkfifo(path, 0o700)
        except FileExistsError:
            if not stat.S_ISFIFO(os.stat(path).st_mode):
                raise errdefs.InvalidArgument(f"open fifo {path}: not a fifo") from None
        return os.open(path, flags | os.O_CLOEXEC)
    except OSError as exc:
        raise _os_error(exc, f"open fifo {path}") from None


def _unread(fd: int) -> int:
    """How many bytes the pipe behind ``fd`` holds (``FIONREAD``)."""
    buf = bytearray(4)
    try:
        fcntl.ioctl(fd, termios.FIONREAD, buf)
    except OSError:
        return 0
    return int.from_bytes(buf, sys.byteorder)


def _drain(fd: int, write: Callable[[bytes], None] | None) -> None:
    while True:
        try:
            data = os.read(fd, _CHUNK)
        except OSError:
            return
        if not data:
            return
        if write is not None:
            with contextlib.suppress(OSError, ValueError):
                write(data)


def _fileno(obj: object) -> int | None:
    fileno = getattr(obj, "fileno", None)
    if fileno is None:
        return None
    try:
        fd = fileno()
    except (OSError, ValueError, _io.UnsupportedOperation):
        return None
    return fd if isinstance(fd, int) else None


def _write_fd(fd: int) -> Callable[[bytes], None]:
    def write(data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                n = os.write(fd, view)
            except BlockingIOError:
                select.select([], [fd], [])
                continue
            view = view[n:]

    return write


def _writer(sink: Output) -> Callable[[bytes], None]:
    if isinstance(sink, int):
        return _write_fd(sink)
    fd = _fileno(sink)
    if fd is not None:
        flush = getattr(sink, "flush", None)
        if flush is not None:
            flush()  # what Python buffered goes first
        return _write_fd(fd)
    if isinstance(sink, _io.TextIOBase):
        text_sink = sink

        def write_text(data: bytes) -> None:
            text_sink.write(data.decode(errors="replace"))
            text_sink.flush()

        return write_text
    obj = sink

    def write_obj(data: bytes) -> None:
        obj.write(data)
        flush = getattr(obj, "flush", None)
        if flush is not None:
            flush()

    return write_obj


def _chunks(source: Input) -> Any:
    if isinstance(source, str):
        source = source.encode()
    if isinstance(source, bytes | bytearray | memoryview):
        if source:
            yield bytes(source)
        return
    fd = source if isinstance(source, int) else None
    if fd is None and not isinstance(source, _io.BytesIO | _io.StringIO):
        fd = _fileno(source)
    if fd is not None:
        while True:
            try:
                data = os.read(fd, _CHUNK)
            except BlockingIOError:
                select.select([fd], [], [])
                continue
            if not data:
                return
            yield data
    assert not isinstance(source, int)
    read1 = getattr(source, "read1", None)
    while True:
        chunk = read1(_CHUNK) if read1 is not None else source.read(_CHUNK)
        if not chunk:
            return
        yield chunk.encode() if isinstance(chunk, str) else bytes(chunk)


# --- creators ------------------------------------------------------------------------------

#: Makes the IO of a new process from its id (containerd's ``cio.Creator``).
Creator: TypeAlias = Callable[[str], IO]


def with_streams(
    stdin: Input | None = None,
    stdout: Output | None = None,
    stderr: Output | None = None,
    *,
    terminal: bool = False,
    fifo_dir: str | None = None,
) -> Creator:
    """FIFOs copied from ``stdin`` and to ``stdout`` and ``stderr`` (a FIFO only for a given
    stream; a terminal has no stderr): containerd's ``NewCreator(WithStreams(...))``."""

    def create(id_: str) -> IO:
        fifos = new_fifo_set_in_dir(fifo_dir, id_, terminal)
        cfg = fifos.config
        fifos = FIFOSet(
            IOConfig(
                stdin=cfg.stdin if stdin is not None else "",
                stdout=cfg.stdout if stdout is not None else "",
                stderr=cfg.stderr if stderr is not None and not terminal else "",
                terminal=terminal,
            ),
            fifos.directory,
        )
        try:
            return DirectIO(fifos, stdin, stdout, stderr)
        except BaseException:
            fifos.remove()
            raise

    return create


def with_stdio(*, terminal: bool = False, fifo_dir: str | None = None) -> Creator:
    """This process's own stdin, stdout and stderr (containerd's ``cio.WithStdio``)."""
    return with_streams(
        sys.stdin.buffer if sys.stdin is not None else None,
        sys.stdout.buffer,
        sys.stderr.buffer,
        terminal=terminal,
        fifo_dir=fifo_dir,
    )


def capture(
    stdin: Input | None = None, *, terminal: bool = False, fifo_dir: str | None = None
) -> Creator:
    """stdout and stderr kept in memory (``io.stdout_data``, ``io.stderr_data``), stdin from
    ``stdin`` if given."""

    def create(id_: str) -> IO:
        fifos = new_fifo_set_in_dir(fifo_dir, id_, terminal)
        if stdin is None:
            fifos = FIFOSet(
                IOConfig("", fifos.config.stdout, fifos.config.stderr, terminal), fifos.directory
            )
        try:
            return _CaptureIO(fifos, stdin)
        except BaseException:
            fifos.remove()
            raise

    return create


def null_io(id_: str) -> IO:
    """No stdio at all: the shim gives the process ``/dev/null`` (containerd's ``NullIO``)."""
    return IO(IOConfig())


def log_uri(uri: str) -> Creator:
    """The process's output goes where ``uri`` says, handled by the shim: ``file:///path``
    (appended to a file) or ``binary:///path/to/logger?arg=...`` (a logging program), as
    containerd's ``cio.LogURI``; no stdin."""
    parsed = urllib.parse.urlsplit(uri)
    if parsed.scheme not in ("file", "binary", "fifo"):
        raise errdefs.InvalidArgument(
            f"log uri {uri!r}: unknown scheme {parsed.scheme!r} (file, binary or fifo)"
        )
    if not parsed.path:
        raise errdefs.InvalidArgument(f"log uri {uri!r}: a path is required")
    if parsed.scheme == "file":
        directory = os.path.dirname(parsed.path)
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as exc:
            raise _os_error(exc, f"create the log directory {directory}") from None

    def create(id_: str) -> IO:
        return IO(IOConfig(stdout=uri, stderr=uri))

    return create


def log_file(path: str) -> Creator:
    """Output appended to the file ``path`` by the shim (containerd's ``cio.LogFile``)."""
    if not os.path.isabs(path):
        raise errdefs.InvalidArgument(f"log file {path!r}: the path must be absolute")
    return log_uri("file://" + urllib.parse.quote(path))


def binary_io(binary: str, args: dict[str, str] | None = None) -> Creator:
    """Output handed to the logging program ``binary`` started by the shim, with ``args`` as
    its URI's query (containerd's ``cio.BinaryIO``)."""
    if not os.path.isabs(binary):
        raise errdefs.InvalidArgument(f"logging binary {binary!r}: the path must be absolute")
    query = urllib.parse.urlencode(sorted((args or {}).items()))
    uri = "binary://" + urllib.parse.quote(binary)
    return log_uri(f"{uri}?{query}" if query else uri)


def attach(
    stdin: Input | None = None,
    stdout: Output | None = None,
    stderr: Output | None = None,
) -> Callable[[IOConfig], IO]:
    """Copy through the FIFOs an existing process was created with (containerd's
    ``cio.NewAttach``); they are left in place when the IO closes."""

    def create(config: IOConfig) -> IO:
        if not _is_fifo_set(config):
            return IO(config)
        fifos = FIFOSet(config)
        return DirectIO(
            fifos,
            stdin if config.stdin else None,
            stdout if config.stdout else None,
            stderr if config.stderr else None,
            remove=False,
        )

    return create


def load(config: IOConfig) -> IO:
    """The IO of an existing process, only to remove its FIFOs and their directory when it
    closes (containerd's ``cio.Load``, which ``ctr tasks delete`` uses)."""
    if not _is_fifo_set(config):
        return IO(config)
    paths = [p for p in (config.stdin, config.stdout, config.stderr) if p]
    dirs = {os.path.dirname(p) for p in paths}
    directory = dirs.pop() if len(dirs) == 1 else ""
    return IO(config, FIFOSet(config, directory))


def _is_fifo_set(config: IOConfig) -> bool:
    for path in (config.stdin, config.stdout, config.stderr):
        if path and "://" in path:
            return False
    return any((config.stdin, config.stdout, config.stderr))
