"""Typed stub of ``pycontainerd._native``, the Rust extension module (crate ``rust/pcd-py``).

Every function releases the GIL for its whole call and raises ``pycontainerd.errdefs`` classes.
"""

import os
from collections.abc import Sequence
from typing import Any, final

__all__ = [
    "RpcServer",
    "__version__",
    "apply_layer",
    "build_info",
    "mount_all",
    "netns_create",
    "netns_is_pinned",
    "netns_remove",
    "unmount",
    "unmount_all",
    "write_diff",
]

__version__: str

def apply_layer(
    blob_path: str,
    root: str,
    *,
    whiteouts: str,
    media_type: str | None = None,
    max_uncompressed_size: int | None = None,
    same_owner: bool | None = None,
) -> dict[str, Any]:
    """Apply a layer blob into ``root``; see :func:`pycontainerd.archive.apply_layer`.

    Returns the statistics as a dict (``diff_id``, ``compression`` and the counts). Errors:
    ``InvalidArgument`` (hostile or malformed layer, unknown whiteout mode), ``NotFound`` (blob
    or root missing), ``NotImplemented`` (unknown media type), ``Unknown`` (system call, errno in
    the message).
    """

def build_info() -> tuple[str, str]:
    """Return ``(version, revision)`` embedded when the module was built.

    ``revision`` is the git commit of the checkout (``unknown`` outside one, with ``.m``
    appended when the tree had uncommitted changes).
    """

def mount_all(mounts: Sequence[tuple[str, str, str, Sequence[str]]], target: str) -> None:
    """Mount ``(type, source, target, options)`` tuples in order onto ``target``.

    See :func:`pycontainerd.mount.mount_all` (crate ``rust/pcd-mount``). Errors: ``NotFound``
    (source, layer or target missing), ``InvalidArgument`` (options the kernel or containerd
    refuse, ``loop``, options past a page), ``Unknown`` (other errno); messages name the
    type, source, target and errno.
    """

def netns_create(path: str | os.PathLike[str]) -> None:
    """Create a network namespace pinned by a bind mount at ``path`` (a new file), as
    ``ip netns add`` does; the calling thread's namespaces are untouched (crate ``pcd-sys``).

    Errors: ``AlreadyExists`` (``path`` exists), ``NotFound`` (no parent directory),
    ``Unknown`` (the system call, errno in the message). On failure nothing is left at ``path``.
    """

def netns_is_pinned(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` holds a pinned network namespace (an ``nsfs`` bind mount)."""

def netns_remove(path: str | os.PathLike[str]) -> None:
    """Release the namespace pinned at ``path`` (a lazy unmount) and remove the file.

    Idempotent: a missing or unmounted path is no error.
    """

def unmount(target: str, flags: int = 0) -> None:
    """Unmount ``target`` once with ``umount2`` ``flags``; nothing mounted there is no error."""

def unmount_all(target: str, flags: int = 0) -> None:
    """Unmount ``target`` until nothing is mounted there (or it does not exist)."""

def write_diff(
    lower: str,
    upper: str,
    out_path: str,
    *,
    compression: str = "gzip",
    upperdir: bool = False,
) -> dict[str, Any]:
    """Write the layer of changes from ``lower`` to ``upper``; see
    :func:`pycontainerd.archive.write_diff`.

    Returns ``digest``, ``size``, ``diff_id``, ``uncompressed_size``, ``compression`` and the
    counts. Errors: ``NotFound`` (a tree or the output directory missing), ``InvalidArgument``
    (unknown compression, a tree that is not a directory), ``Unknown`` (errno in the message).
    """

@final
class RpcServer:
    """A gRPC server on a unix socket (crate ``rust/pcd-rpc``), for ``daemon.transport.native``.

    Constructing it binds ``path`` on the calling thread (the caller's umask applies; the path
    must be free and is never unlinked) and starts serving on the module's own threads, which
    never take the GIL. Methods are ``(path, kind)`` pairs, ``path`` as
    ``/package.Service/Method`` and ``kind`` 0 unary, 1 server streaming, 2 client streaming,
    3 bidirectional; a method's number is its index. A call to a service not in ``services``
    answers UNIMPLEMENTED "unknown service S", to a method not listed "unknown method M for
    service S". Bind errors raise ``errdefs`` classes (``AlreadyExists`` for EADDRINUSE,
    ``NotFound`` for a missing directory, ...) naming the path and the errno.

    The methods below are short and keep the GIL: they only queue or take work.
    """

    def __new__(
        cls,
        path: str | os.PathLike[str],
        services: Sequence[str],
        methods: Sequence[tuple[str, int]],
        *,
        max_recv_message_size: int = ...,
        max_send_message_size: int = ...,
        send_high_water: int = ...,
        request_window: int = ...,
        max_concurrent_streams: int = ...,
    ) -> RpcServer: ...
    def fileno(self) -> int:
        """The eventfd that is readable while events wait to be drained."""
    def drain(
        self,
    ) -> list[tuple[int, int, int, list[tuple[str, str]] | None, bytes | None, float | None]]:
        """Take the waiting events: ``(kind, call_id, number, metadata, payload, timeout)``.

        kinds: 0 CALL (``number`` the method, ``metadata`` the request headers with keys
        lowercase, ``-bin`` values as sent, ``content-type``/``te``/``grpc-*`` left out;
        ``payload`` the request for unary and server-streaming methods; ``timeout`` the seconds
        left before the client's deadline, or None); 1 MESSAGE (``payload`` the next request of a
        streaming client); 2 HALF_CLOSE (no more requests); 3 CANCELLED (the transport ended the
        call: ``number`` 0 the client went away, 1 the deadline passed and the client was answered
        DEADLINE_EXCEEDED, 2 the transport answered an error of its own such as
        RESOURCE_EXHAUSTED); 4 WRITABLE (the answer queue drained after ``send`` returned
        False); 5 STOPPED (every connection has ended, after ``shutdown``/``close``).
        """
    def send(self, call_id: int, message: bytes) -> bool:
        """Queue an answer message; False: wait for WRITABLE (or CANCELLED) before the next."""
    def respond(self, call_id: int, message: bytes) -> None:
        """Answer a unary or client-streaming call with one message and OK."""
    def finish(self, call_id: int, code: int, message: str) -> None:
        """End a call with a status (0 OK) after the messages already sent."""
    def credit(self, call_id: int, n: int = 1) -> None:
        """Let a streaming client's call deliver ``n`` more request messages."""
    def open_calls(self) -> int:
        """Calls announced and not yet ended."""
    def shutdown(self) -> None:
        """Stop accepting: the listening socket closes now; calls in flight go on."""
    def close(self, timeout: float) -> None:
        """Cut the connections still open after ``timeout`` seconds; STOPPED follows."""
