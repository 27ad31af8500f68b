"""Events, as containerd's ``events`` package: envelopes, topics, type URLs and the exchange.

An event is a protobuf message carried in an :class:`Envelope` with the time it was published,
the namespace it happened in and a topic (``/images/create``). The message travels as an
``Any`` whose type URL is the message's full name (``containerd.events.TaskExit``,
``containerd.services.images.v1.ImageCreate``): containerd does not register its event types
with ``typeurl``, which then falls back to the bare proto name, and ``ctr events`` decodes by it.
"""

from __future__ import annotations

from pycontainerd.events.envelope import (
    Envelope,
    Forwarder,
    Publisher,
    Subscriber,
    marshal_any,
    message_field,
    type_url,
    unmarshal_any,
    validate_envelope,
    validate_topic,
)
from pycontainerd.events.exchange import (
    DEFAULT_QUEUE_SIZE,
    Exchange,
    SlowSubscriber,
    Subscription,
)

__all__ = [
    "DEFAULT_QUEUE_SIZE",
    "Envelope",
    "Exchange",
    "Forwarder",
    "Publisher",
    "SlowSubscriber",
    "Subscriber",
    "Subscription",
    "marshal_any",
    "message_field",
    "type_url",
    "unmarshal_any",
    "validate_envelope",
    "validate_topic",
]
