"""``containerd.services.events.v1.Events``: publish, forward and subscribe to events.

Two plugins, as containerd's: ``io.containerd.event.v1 exchange`` is the
:class:`~pycontainerd.events.Exchange` other services publish on (``ic.get(Type.EVENT)``), and
``io.containerd.grpc.v1 events`` serves it. A subscription sees every namespace's events, as
in containerd; its filters choose.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from google.protobuf import empty_pb2

from pycontainerd.api.containerd.services.events.v1 import events_pb2
from pycontainerd.daemon.rpc import RPCServer, ServicerContext
from pycontainerd.daemon.services.base import namespace_of
from pycontainerd.events import Envelope, Exchange
from pycontainerd.plugin import InitContext, Registration, Type

__all__ = [
    "EventsService",
    "envelope_from_proto",
    "envelope_to_proto",
    "exchange_registration",
    "publisher",
    "registration",
]


def envelope_to_proto(envelope: Envelope) -> events_pb2.Envelope:
    msg = events_pb2.Envelope(
        namespace=envelope.namespace, topic=envelope.topic, event=envelope.event
    )
    msg.timestamp.FromNanoseconds(envelope.timestamp)
    return msg


def envelope_from_proto(msg: events_pb2.Envelope) -> Envelope:
    return Envelope(
        timestamp=msg.timestamp.ToNanoseconds() if msg.HasField("timestamp") else 0,
        namespace=msg.namespace,
        topic=msg.topic,
        event=msg.event,
    )


class EventsService:
    """Events over the exchange."""

    def __init__(self, exchange: Exchange) -> None:
        self._exchange = exchange

    def register(self, server: RPCServer) -> None:
        server.add_service(events_pb2.DESCRIPTOR.services_by_name["Events"], self)

    async def Publish(
        self, request: events_pb2.PublishRequest, context: ServicerContext
    ) -> empty_pb2.Empty:
        self._exchange.publish(namespace_of(context), request.topic, request.event)
        return empty_pb2.Empty()

    async def Forward(
        self, request: events_pb2.ForwardRequest, context: ServicerContext
    ) -> empty_pb2.Empty:
        self._exchange.forward(envelope_from_proto(request.envelope))
        return empty_pb2.Empty()

    async def Subscribe(
        self, request: events_pb2.SubscribeRequest, context: ServicerContext
    ) -> AsyncIterator[events_pb2.Envelope]:
        # a subscriber that falls too far behind ends with RESOURCE_EXHAUSTED (SlowSubscriber)
        async with self._exchange.subscribe(*request.filters) as sub:
            async for envelope in sub:
                yield envelope_to_proto(envelope)


def publisher(ic: InitContext) -> Exchange:
    """The daemon's exchange, for a plugin that requires ``Type.EVENT``."""
    exchange = ic.get(Type.EVENT)
    assert isinstance(exchange, Exchange)
    return exchange


def _init_exchange(ic: InitContext) -> Exchange:
    return Exchange()


def _init(ic: InitContext) -> EventsService:
    return EventsService(publisher(ic))


exchange_registration = Registration(type=Type.EVENT, id="exchange", init=_init_exchange)

registration = Registration(type=Type.GRPC, id="events", init=_init, requires=(Type.EVENT,))
