"""A ttrpc client over asyncio: one connection, many concurrent calls.

``await Client.connect(address)`` then ``await client.call(service, method, payload)``; the
payload and the answer are serialized protobuf messages. A failed call raises the
:mod:`~pycontainerd.errdefs` class of its status code with the server's message unchanged; a
call on a lost connection raises :class:`~pycontainerd.ttrpc.channel.Closed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable, Sequence

from pycontainerd import errdefs
from pycontainerd.api.ttrpc import ttrpc_pb2
from pycontainerd.ttrpc.channel import (
    Closed,
    MessageTooLarge,
    MessageType,
    encode_frame,
    read_frame,
    socket_path,
)

__all__ = ["Client"]

log = logging.getLogger(__name__)


class Client:
    """One ttrpc connection; calls are multiplexed by stream id."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._on_close = on_close
        self._ids = itertools.count(1, 2)
        self._pending: dict[int, asyncio.Future[ttrpc_pb2.Response]] = {}
        self._closed = asyncio.get_running_loop().create_future()
        self._user_closed = False
        self._task = asyncio.get_running_loop().create_task(self._run())

    @classmethod
    async def connect(
        cls,
        address: str,
        *,
        timeout: float = 10.0,
        on_close: Callable[[], None] | None = None,
    ) -> Client:
        """Connect to ``address`` (a path or ``unix://`` address)."""
        path = socket_path(address)
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_unix_connection(path)
        except TimeoutError:
            raise errdefs.DeadlineExceeded(f"connect ttrpc {address}: timed out") from None
        except OSError as exc:
            raise errdefs.Unavailable(f"connect ttrpc {address}: {exc.strerror or exc}") from exc
        return cls(reader, writer, on_close=on_close)

    @property
    def closed(self) -> bool:
        """Whether the connection is over."""
        return self._closed.done()

    @property
    def closed_by_user(self) -> bool:
        """Whether :meth:`close` ended the connection (rather than the peer or an error)."""
        return self._user_closed

    async def wait_closed(self) -> None:
        """Wait until the connection is over and ``on_close`` has run."""
        await asyncio.shield(self._closed)

    async def call(
        self,
        service: str,
        method: str,
        payload: bytes,
        *,
        timeout: float | None = None,
        metadata: Sequence[tuple[str, str]] = (),
    ) -> bytes:
        """Call ``service``/``method`` with a serialized request; the serialized response."""
        if self._closed.done():
            raise Closed()
        stream_id = next(self._ids)
        request = ttrpc_pb2.Request(
            service=service,
            method=method,
            payload=payload,
            timeout_nano=round(timeout * 1e9) if timeout else 0,
            metadata=[ttrpc_pb2.KeyValue(key=k, value=v) for k, v in metadata],
        )
        frame = encode_frame(stream_id, MessageType.REQUEST, request.SerializeToString())
        future: asyncio.Future[ttrpc_pb2.Response] = asyncio.get_running_loop().create_future()
        self._pending[stream_id] = future
        try:
            try:
                self._writer.write(frame)
                await self._writer.drain()
            except (ConnectionError, RuntimeError) as exc:
                raise Closed() from exc
            try:
                async with asyncio.timeout(timeout):
                    response = await future
            except TimeoutError:
                raise errdefs.DeadlineExceeded(
                    f"ttrpc {service}/{method}: no answer within {timeout:g}s"
                ) from None
        finally:
            self._pending.pop(stream_id, None)
        status = response.status
        if status.code != 0:
            raise errdefs.from_code(status.code, status.message)
        return response.payload

    async def _run(self) -> None:
        try:
            while True:
                try:
                    frame = await read_frame(self._reader)
                except MessageTooLarge as exc:
                    waiter = self._pending.get(exc.stream_id)
                    if waiter is not None and not waiter.done():
                        waiter.set_exception(exc)
                    continue
                if frame.type != MessageType.RESPONSE:
                    log.debug("ttrpc client: ignoring a frame of type %d", frame.type)
                    continue
                waiter = self._pending.get(frame.stream_id)
                if waiter is None or waiter.done():
                    log.debug("ttrpc client: answer for unknown stream %d", frame.stream_id)
                    continue
                try:
                    waiter.set_result(ttrpc_pb2.Response.FromString(frame.payload))
                except Exception as exc:  # a malformed answer fails that call only
                    waiter.set_exception(
                        errdefs.Unknown(f"ttrpc: malformed response on stream {frame.stream_id}")
                    )
                    log.debug("ttrpc client: malformed response: %s", exc)
        except Closed:
            pass
        except Exception:
            log.exception("ttrpc client: connection failed")
        finally:
            self._finish()

    def _finish(self) -> None:
        for waiter in self._pending.values():
            if not waiter.done():
                waiter.set_exception(Closed())
        self._pending.clear()
        with contextlib.suppress(Exception):
            self._writer.close()
        if not self._closed.done():
            try:
                if self._on_close is not None:
                    self._on_close()
            except Exception:
                log.exception("ttrpc client: on_close callback failed")
            finally:
                self._closed.set_result(None)

    def abort(self) -> None:
        """End the connection now, from synchronous code; pending calls fail with
        :class:`Closed` and ``on_close`` runs."""
        if self._closed.done():
            return
        self._user_closed = True
        self._task.cancel()
        self._finish()

    async def close(self) -> None:
        """End the connection; pending calls fail with :class:`Closed`."""
        self.abort()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
