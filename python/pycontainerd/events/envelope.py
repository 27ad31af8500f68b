"""The envelope, topic rules, event type URLs and the filter adaptor of an event."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, Protocol

from google.protobuf import any_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message

from pycontainerd import errdefs, identifiers

# imported for their registration in the default descriptor pool: the types events decode to
from pycontainerd.api.containerd.events import (  # noqa: F401
    container_pb2,
    content_pb2,
    image_pb2,
    namespace_pb2,
    snapshot_pb2,
    task_pb2,
)

__all__ = [
    "Envelope",
    "Forwarder",
    "Publisher",
    "Subscriber",
    "marshal_any",
    "message_field",
    "type_url",
    "unmarshal_any",
    "validate_envelope",
    "validate_topic",
]

_TIMESTAMP = "google.protobuf.Timestamp"
_ANY = "google.protobuf.Any"


def type_url(message: Message) -> str:
    """The type URL containerd gives an event: the message's full proto name."""
    return message.DESCRIPTOR.full_name


def marshal_any(event: Message) -> any_pb2.Any:
    """``event`` as an ``Any`` (an ``Any`` is kept as it is, as ``typeurl.MarshalAny`` does)."""
    if isinstance(event, any_pb2.Any):
        return event
    return any_pb2.Any(type_url=type_url(event), value=event.SerializeToString())


def _message_class(url: str) -> type[Message] | None:
    name = url.rsplit("/", 1)[-1]
    try:
        desc = descriptor_pool.Default().FindMessageTypeByName(name)
    except KeyError:
        return None
    return message_factory.GetMessageClass(desc)


def unmarshal_any(value: any_pb2.Any) -> Message | None:
    """The message in ``value`` when its type is known here, else None.

    The type is looked up by the last segment of the URL, so ``containerd.events.TaskExit``
    and ``types.containerd.io/containerd.events.TaskExit`` both decode.
    """
    cls = _message_class(value.type_url)
    if cls is None:
        return None
    msg = cls()
    try:
        msg.ParseFromString(value.value)
    except DecodeError:
        return None
    return msg


def message_field(message: Message, fieldpath: Sequence[str]) -> tuple[str, bool]:
    """A message's value at ``fieldpath`` as containerd's generated ``Field`` methods give it.

    Strings (present when not empty), bools (``true``/``false``), ``labels`` maps (the rest of
    the path joined with dots is the key), ``Any`` fields (decoded, then followed) and nested
    messages (followed); timestamps, numbers and repeated fields are not filterable.
    """
    if not fieldpath:
        return "", False
    fd = message.DESCRIPTOR.fields_by_name.get(fieldpath[0])
    if fd is None:
        return "", False
    value = getattr(message, fd.name)
    if _is_labels(fd):
        key = ".".join(fieldpath[1:])
        return (value[key], True) if key in value else ("", False)
    if fd.is_repeated:
        return "", False
    if fd.type == FieldDescriptor.TYPE_STRING:
        return value, bool(value)
    if fd.type == FieldDescriptor.TYPE_BOOL:
        return ("true" if value else "false"), True
    if fd.type == FieldDescriptor.TYPE_MESSAGE and fd.message_type is not None:
        name = fd.message_type.full_name
        if name == _TIMESTAMP or not message.HasField(fd.name):
            return "", False
        if name == _ANY:
            decoded = unmarshal_any(value)
            return ("", False) if decoded is None else message_field(decoded, fieldpath[1:])
        return message_field(value, fieldpath[1:])
    return "", False


def _is_labels(fd: Any) -> bool:  # a FieldDescriptor (pure Python or upb)
    return (
        fd.name == "labels"
        and fd.message_type is not None
        and fd.message_type.full_name.endswith(".LabelsEntry")
    )


@dataclass(frozen=True)
class Envelope:
    """One event: when (nanoseconds since the epoch), where, what topic, and the message."""

    timestamp: int
    namespace: str
    topic: str
    event: any_pb2.Any

    @property
    def time(self) -> datetime:
        """The timestamp as an aware UTC datetime (microseconds)."""
        return datetime.fromtimestamp(self.timestamp / 1e9, UTC)

    def decode(self) -> Message | None:
        """The event message, when its type is known."""
        return unmarshal_any(self.event)

    @cached_property
    def _decoded(self) -> Message | None:
        # decoded once for every subscriber's filter
        return unmarshal_any(self.event)

    def field(self, fieldpath: Sequence[str]) -> tuple[str, bool]:
        """The filter adaptor: ``topic``, ``namespace`` and ``event.<field>`` (not timestamp)."""
        if not fieldpath:
            return "", False
        head = fieldpath[0]
        if head == "namespace":
            return self.namespace, bool(self.namespace)
        if head == "topic":
            return self.topic, bool(self.topic)
        if head == "event":
            decoded = self._decoded
            return ("", False) if decoded is None else message_field(decoded, fieldpath[1:])
        return "", False

    @staticmethod
    def now(namespace: str, topic: str, event: Message) -> Envelope:
        """A new envelope stamped with the current time."""
        return Envelope(time.time_ns(), namespace, topic, marshal_any(event))


def validate_topic(topic: str) -> None:
    """containerd's topic rule: ``/`` then one or more ``/``-separated identifiers."""
    if not topic:
        raise errdefs.InvalidArgument(f'envelope topic "{topic}": must not be empty')
    if topic[0] != "/":
        raise errdefs.InvalidArgument(f"envelope topic \"{topic}\": must start with '/'")
    if len(topic) == 1:
        raise errdefs.InvalidArgument(f'envelope topic "{topic}": must have at least one component')
    for component in topic[1:].split("/"):
        try:
            identifiers.validate(component)
        except errdefs.InvalidArgument as exc:
            raise errdefs.InvalidArgument(
                f'envelope topic "{topic}": failed validation on component "{component}": '
                f"{exc.message}"
            ) from None


def validate_envelope(envelope: Envelope) -> None:
    """What ``Forward`` checks: a valid namespace and topic, and a timestamp."""
    try:
        identifiers.validate(envelope.namespace)
    except errdefs.InvalidArgument as exc:
        raise errdefs.InvalidArgument(
            f"event envelope has invalid namespace: {exc.message}"
        ) from None
    validate_topic(envelope.topic)
    if envelope.timestamp == 0:
        raise errdefs.InvalidArgument("timestamp must be set on forwarded event")


class Publisher(Protocol):
    """Posts an event in a namespace under a topic."""

    def publish(self, namespace: str, topic: str, event: Message) -> None:
        """Post ``event`` under ``topic`` in ``namespace``."""
        ...


class Forwarder(Protocol):
    """Passes on an envelope made elsewhere (by a shim, say) as it is."""

    def forward(self, envelope: Envelope) -> None:
        """Pass on ``envelope`` with its namespace and timestamp."""
        ...


class Subscriber(Protocol):
    """Gives the envelopes matching any of the filters (every one without filters)."""

    def subscribe(self, *filters: str) -> AsyncIterator[Envelope]:
        """The envelopes matching any of ``filters``, from now on."""
        ...
