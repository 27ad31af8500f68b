"""``Client.events`` and ``Client.publish``: the Events service from the SDK."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message

from pycontainerd.api.containerd.services.events.v1 import events_pb2, events_pb2_grpc
from pycontainerd.events import Envelope, marshal_any, unmarshal_any
from pycontainerd.namespaces import NAMESPACE_HEADER

if TYPE_CHECKING:
    from pycontainerd.client.connection import Connection

__all__ = ["Event", "EventStream", "EventsAPI"]


@dataclass(frozen=True)
class Event:
    """One envelope as a subscriber sees it.

    ``event`` is the decoded message when its type is known here (every containerd event
    is), else the raw ``Any``; ``timestamp_ns`` keeps the nanoseconds ``timestamp`` rounds.
    """

    timestamp_ns: int
    namespace: str
    topic: str
    event: Message
    type_url: str

    @property
    def timestamp(self) -> datetime:
        """The event's time as an aware UTC ``datetime`` (to the microsecond)."""
        return datetime.fromtimestamp(self.timestamp_ns / 1e9, UTC)

    @property
    def envelope(self) -> Envelope:
        """The event as an exchange :class:`~pycontainerd.events.Envelope` (for ``forward``)."""
        return Envelope(self.timestamp_ns, self.namespace, self.topic, marshal_any(self.event))


def _from_proto(msg: events_pb2.Envelope) -> Event:
    raw = any_pb2.Any()
    raw.CopyFrom(msg.event)
    decoded = unmarshal_any(raw)
    return Event(
        timestamp_ns=msg.timestamp.ToNanoseconds(),
        namespace=msg.namespace,
        topic=msg.topic,
        event=raw if decoded is None else decoded,
        type_url=raw.type_url,
    )


class EventStream:
    """A running subscription: iterate it for :class:`Event` values; ``close()`` ends it.

    Iteration blocks until the next event. It ends without error when closed (from another
    thread too); a daemon that goes away or drops a subscriber that fell too far behind
    (``RESOURCE_EXHAUSTED``) raises the matching ``errdefs`` error.
    """

    def __init__(self, call: Any, conn: Connection) -> None:
        self._call = call
        self._conn = conn
        self._closed = False

    def __iter__(self) -> Iterator[Event]:
        try:
            for msg in self._call:
                yield _from_proto(msg)
        except grpc.RpcError as exc:
            cancelled = isinstance(exc, grpc.Call) and exc.code() == grpc.StatusCode.CANCELLED
            if self._closed and cancelled:
                return
            raise self._conn.error(exc) from None

    def close(self) -> None:
        """End the subscription; iteration stops without error (from any thread)."""
        self._closed = True
        self._call.cancel()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class EventsAPI:
    """The Events service: subscribe, publish and forward."""

    def __init__(self, conn: Connection, namespace: str, timeout: float | None) -> None:
        self._conn = conn
        self._stub = events_pb2_grpc.EventsStub(conn.channel)
        self.namespace = namespace
        self._timeout = timeout

    def subscribe(self, *filters: str) -> EventStream:
        """Events of every namespace matching any of ``filters`` (containerd's syntax over
        ``topic``, ``namespace`` and ``event.<field>``), from now until closed."""
        req = events_pb2.SubscribeRequest(filters=list(filters))
        call = self._stub.Subscribe(req, metadata=((NAMESPACE_HEADER, self.namespace),))
        return EventStream(call, self._conn)

    def publish(self, topic: str, event: Message) -> None:
        """Publish ``event`` in this namespace (an ``Any`` goes as it is)."""
        req = events_pb2.PublishRequest(topic=topic, event=marshal_any(event))
        self._conn.call(self._stub.Publish, req, namespace=self.namespace, timeout=self._timeout)

    def forward(self, envelope: Envelope) -> None:
        """Pass on an envelope made elsewhere, its namespace and timestamp kept."""
        msg = events_pb2.Envelope(
            namespace=envelope.namespace, topic=envelope.topic, event=envelope.event
        )
        msg.timestamp.FromNanoseconds(envelope.timestamp)
        req = events_pb2.ForwardRequest(envelope=msg)
        self._conn.call(self._stub.Forward, req, namespace=self.namespace, timeout=self._timeout)
