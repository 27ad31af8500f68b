"""The exchange: containerd's ``events/exchange``, broadcasting envelopes to subscribers.

Publishing never blocks and may happen from any thread: each subscriber has its own queue and
is woken on its event loop. containerd's queues grow without bound, so one stalled subscriber
can take the daemon's memory; ours hold at most ``queue_size`` envelopes. A subscriber that
falls that far behind is ended with :class:`SlowSubscriber` (after the envelopes it has
queued) instead of silently missing events: it knows to subscribe again and to re-read state.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
from types import TracebackType
from typing import Final

from google.protobuf.message import Message

from pycontainerd import errdefs, filters
from pycontainerd.errdefs import Code
from pycontainerd.events.envelope import Envelope, validate_envelope, validate_topic

__all__ = ["DEFAULT_QUEUE_SIZE", "Exchange", "SlowSubscriber", "Subscription"]

log = logging.getLogger(__name__)

#: Envelopes one subscriber may have waiting; events are a few hundred bytes each.
DEFAULT_QUEUE_SIZE: Final = 4096


class SlowSubscriber(errdefs.ContainerdError):
    """A subscription ended because its reader fell too far behind."""

    code = Code.RESOURCE_EXHAUSTED


class Subscription:
    """The envelopes matching one subscriber's filters: an async iterator, closed when done."""

    def __init__(self, exchange: Exchange, filter_: filters.Filter, queue_size: int) -> None:
        self._exchange = exchange
        self._filter = filter_
        self._queue_size = queue_size
        self._lock = threading.Lock()
        self._queue: collections.deque[Envelope] = collections.deque()
        self._closed = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None

    @property
    def closed(self) -> bool:
        """Whether the subscription has ended (closed, or dropped for being too slow)."""
        return self._closed

    def _offer(self, envelope: Envelope) -> bool:
        """Queue ``envelope`` if it matches; False once the subscription is over."""
        if not self._filter.always and not self._filter.match(envelope):
            return not self._closed
        with self._lock:
            if self._closed:
                return False
            if len(self._queue) >= self._queue_size:
                self._closed = True
                self._error = SlowSubscriber(
                    f"events subscription: more than {self._queue_size} events waiting, "
                    "the subscriber is too slow"
                )
                log.warning("ending a slow events subscriber (%d queued)", len(self._queue))
            else:
                self._queue.append(envelope)
            waiter, self._waiter = self._waiter, None
        if waiter is not None:
            _wake(waiter)
        return not self._closed

    def close(self) -> None:
        """End the subscription: the iterator stops after what is queued."""
        with self._lock:
            self._closed = True
            waiter, self._waiter = self._waiter, None
        if waiter is not None:
            _wake(waiter)
        self._exchange._remove(self)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Envelope:
        while True:
            with self._lock:
                if self._queue:
                    return self._queue.popleft()
                if self._error is not None:
                    raise self._error
                if self._closed:
                    raise StopAsyncIteration
                waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                with self._lock:
                    if self._waiter is waiter:
                        self._waiter = None

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _wake(waiter: asyncio.Future[None]) -> None:
    loop = waiter.get_loop()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        _resolve(waiter)
    else:
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            loop.call_soon_threadsafe(_resolve, waiter)


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class Exchange:
    """Broadcasts envelopes: a :class:`Publisher`, :class:`Forwarder` and :class:`Subscriber`."""

    def __init__(self, *, queue_size: int = DEFAULT_QUEUE_SIZE) -> None:
        if queue_size < 1:
            raise errdefs.InvalidArgument(f"events queue size {queue_size}: must be at least 1")
        self.queue_size = queue_size
        self._lock = threading.Lock()
        self._subscribers: list[Subscription] = []

    def publish(self, namespace: str, topic: str, event: Message) -> None:
        """Stamp ``event`` with the time, ``namespace`` and ``topic``, and broadcast it."""
        if not namespace:
            raise errdefs.FailedPrecondition("failed publishing event: namespace is required")
        validate_topic(topic)
        envelope = Envelope.now(namespace, topic, event)
        self._broadcast(envelope)
        log.debug(
            "event published: topic=%s ns=%s type=%s", topic, namespace, envelope.event.type_url
        )

    def forward(self, envelope: Envelope) -> None:
        """Broadcast an envelope made elsewhere, as it is, once it is valid."""
        validate_envelope(envelope)
        self._broadcast(envelope)
        log.debug(
            "event forwarded: topic=%s ns=%s type=%s",
            envelope.topic,
            envelope.namespace,
            envelope.event.type_url,
        )

    def subscribe(self, *filter_strings: str, queue_size: int | None = None) -> Subscription:
        """A subscription to envelopes matching any of ``filter_strings`` (all without any).

        Filters are containerd's syntax over ``topic``, ``namespace`` and ``event.<field>``;
        a malformed one is :class:`~pycontainerd.errdefs.InvalidArgument`.
        """
        try:
            parsed = filters.parse(*filter_strings)
        except errdefs.InvalidArgument as exc:
            raise errdefs.InvalidArgument(
                f"failed parsing subscription filters: {exc.message}"
            ) from None
        sub = Subscription(self, parsed, queue_size or self.queue_size)
        with self._lock:
            self._subscribers.append(sub)
        return sub

    def subscribers(self) -> int:
        """How many subscriptions are open."""
        with self._lock:
            return len(self._subscribers)

    def shutdown(self) -> None:
        """End every subscription, as the daemon stops (its streams then end by themselves)."""
        self.close()

    def close(self) -> None:
        """End every subscription."""
        with self._lock:
            subs, self._subscribers = self._subscribers, []
        for sub in subs:
            sub.close()

    def _broadcast(self, envelope: Envelope) -> None:
        with self._lock:
            subs = list(self._subscribers)
        ended = [sub for sub in subs if not sub._offer(envelope)]
        for sub in ended:
            self._remove(sub)

    def _remove(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subscribers:
                self._subscribers.remove(sub)
