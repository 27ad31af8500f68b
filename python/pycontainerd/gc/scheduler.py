"""The ``io.containerd.gc.v1 scheduler`` plugin: when to collect garbage (containerd's own).

Collections run in one background thread:

- after deletions: with ``deletion_threshold = 0`` (the default) at the next scheduled time,
  with a positive threshold as soon as that many deletions have happened;
- after ``mutation_threshold`` changes of any kind, at the next scheduled time;
- on demand: :meth:`Scheduler.schedule_and_wait` (a ``sync`` delete), ``schedule_delay``
  after the request;
- first ``startup_delay`` after the daemon starts.

Between collections the scheduler waits so that collecting takes at most ``pause_threshold``
of the time (0.02: 20ms of every second; at most 0.5), measured from the collections so far.
A failed collection is retried a second later than planned, and its waiters get the error.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Final

from pycontainerd import errdefs
from pycontainerd.durations import format_duration, parse_duration
from pycontainerd.gc import Collector, Stats
from pycontainerd.metadata.db import DB
from pycontainerd.metadata.gc import GarbageCollector
from pycontainerd.plugin import InitContext, Registration, Type

__all__ = ["Config", "Scheduler", "gc_scheduler", "registration"]

log = logging.getLogger(__name__)

#: The wait between checks before the first collection sets a pace (containerd's).
_INTERVAL: Final = 1.0


@dataclass
class Config:
    """``[plugins."io.containerd.gc.v1.scheduler"]``: containerd's keys and defaults."""

    #: The most of real time scheduled collections may take (0 to 0.5).
    pause_threshold: float = 0.02
    #: Collect as soon as this many deletions happened; 0: at the next scheduled collection.
    deletion_threshold: int = 0
    #: Collect at the next scheduled time once this many changes happened; 0: never for that.
    mutation_threshold: int = 100
    #: How long after a trigger (a request, a threshold) to collect, as a Go duration.
    schedule_delay: str = "0s"
    #: How long after start to collect the first time, as a Go duration.
    startup_delay: str = "100ms"


@dataclass(frozen=True)
class _Event:
    ts: float
    mutation: bool
    dirty: bool = False


_STOP: Final = object()


class Scheduler:
    """Runs ``collector.garbage_collect`` in a thread of its own, as the config says."""

    def __init__(self, collector: Collector, config: Config | None = None) -> None:
        config = config or Config()
        self.collector = collector
        self.pause_threshold = min(max(float(config.pause_threshold), 0.0), 0.5)
        self.deletion_threshold = int(config.deletion_threshold)
        self.mutation_threshold = max(int(config.mutation_threshold), 0)
        self.schedule_delay = max(parse_duration(config.schedule_delay), 0) / 1e9
        self.startup_delay = max(parse_duration(config.startup_delay), 0) / 1e9
        self._events: queue.SimpleQueue[_Event | object] = queue.SimpleQueue()
        self._waiters: list[concurrent.futures.Future[Stats]] = []
        self._waiters_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        #: Collections done, and the last one's stats.
        self.collections = 0
        self.last_stats: Stats | None = None
        collector.register_mutation_callback(self._mutation)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="gc-scheduler", daemon=True)
            self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        """Stop scheduling; a collection under way finishes first (up to ``timeout``)."""
        if self._closed:
            return
        self._closed = True
        self._events.put(_STOP)
        if self._thread is not None:
            self._thread.join(timeout)
        with self._waiters_lock:
            waiters, self._waiters = self._waiters, []
        for w in waiters:
            _settle(w, errdefs.Unavailable("garbage collection: the scheduler stopped"))

    # --- requests ------------------------------------------------------------------------

    def schedule(self) -> concurrent.futures.Future[Stats]:
        """Ask for a collection that starts after now; the future has its stats."""
        fut: concurrent.futures.Future[Stats] = concurrent.futures.Future()
        if self._closed:
            fut.set_exception(errdefs.Unavailable("garbage collection: the scheduler stopped"))
            return fut
        with self._waiters_lock:
            self._waiters.append(fut)
        self._events.put(_Event(time.monotonic(), mutation=False))
        return fut

    def schedule_and_wait(self, timeout: float | None = None) -> Stats:
        """Collect and wait for it (containerd's ``ScheduleAndWait``)."""
        try:
            return self.schedule().result(timeout)
        except TimeoutError:
            raise errdefs.Unavailable(f"garbage collection: not done within {timeout:g}s") from None

    async def schedule_and_wait_async(self) -> Stats:
        """:meth:`schedule_and_wait` for the daemon's event loop."""
        return await asyncio.wrap_future(self.schedule())

    def _mutation(self, dirty: bool) -> None:
        self._events.put(_Event(time.monotonic(), mutation=True, dirty=dirty))

    # --- the loop ------------------------------------------------------------------------

    def _run(self) -> None:
        interval = _INTERVAL
        gc_time = 0.0
        triggered = False
        deletions = mutations = 0
        last: float | None = None
        next_at: float | None = None
        if self.startup_delay > 0:
            next_at = time.monotonic() + self.startup_delay
        while True:
            timeout = None if next_at is None else max(0.0, next_at - time.monotonic())
            try:
                ev = self._events.get(timeout=timeout)
            except queue.Empty:
                ev = None
            if ev is _STOP:
                return
            now = time.monotonic()
            if isinstance(ev, _Event):
                if ev.mutation and last is not None and last > ev.ts:
                    continue  # a change the last collection already saw
                if ev.dirty:
                    deletions += 1
                if ev.mutation:
                    mutations += 1
                else:
                    triggered = True
                if (
                    triggered
                    or (self.deletion_threshold > 0 and deletions >= self.deletion_threshold)
                    or (
                        next_at is None
                        and (
                            (self.deletion_threshold == 0 and deletions > 0)
                            or (
                                self.mutation_threshold > 0 and mutations >= self.mutation_threshold
                            )
                        )
                    )
                ) and (next_at is None or next_at > now + self.schedule_delay):
                    next_at = now + self.schedule_delay
                continue
            if next_at is not None and now < next_at:
                continue  # woken early
            # the scheduled time: collect unless there is nothing to collect for
            if (
                not triggered
                and last is not None
                and deletions == 0
                and (self.mutation_threshold == 0 or mutations < self.mutation_threshold)
            ):
                next_at = now + interval
                continue
            with self._waiters_lock:
                waiters, self._waiters = self._waiters, []
            triggered = False
            deletions = mutations = 0
            started = time.monotonic()
            try:
                stats = self.collector.garbage_collect()
            except Exception as exc:
                log.error("garbage collection failed: %s", exc, exc_info=True)
                done = time.monotonic()
                next_at = done + (started - (last if last is not None else started)) + 1.0
                last = done
                err = exc if isinstance(exc, errdefs.ContainerdError) else None
                for w in waiters:
                    _settle(w, err or errdefs.Unknown(f"garbage collection failed: {exc}"))
                continue
            last = time.monotonic()
            self.collections += 1
            self.last_stats = stats
            gc_time += stats.elapsed()
            if self.pause_threshold > 0.0:
                avg = gc_time / self.collections
                interval = avg / self.pause_threshold - avg
            log.debug("garbage collected in %.1fms", stats.elapsed() * 1e3)
            next_at = last + interval
            for w in waiters:
                _settle(w, stats)


def _settle(fut: concurrent.futures.Future[Stats], outcome: Stats | BaseException) -> None:
    """Give a waiter its outcome, unless it stopped waiting (a cancelled call)."""
    try:
        if isinstance(outcome, BaseException):
            fut.set_exception(outcome)
        else:
            fut.set_result(outcome)
    except concurrent.futures.InvalidStateError:
        pass


def gc_scheduler(ic: InitContext) -> Scheduler | None:
    """For a plugin that uses the scheduler: it, or None when it is disabled or failed."""
    try:
        gc = ic.get(Type.GC, "scheduler")
    except errdefs.ContainerdError as exc:
        log.warning("no garbage collection scheduler: %s", exc)
        return None
    return gc if isinstance(gc, Scheduler) else None


def _init(ic: InitContext) -> Scheduler:
    db = ic.get(Type.METADATA)
    assert isinstance(db, DB)
    config = ic.config if isinstance(ic.config, Config) else Config()
    try:
        scheduler = Scheduler(GarbageCollector(db), config)
    except errdefs.InvalidArgument as exc:
        raise errdefs.InvalidArgument(f"gc scheduler config: {exc.message}") from None
    ic.meta.exports.update(
        {
            "PauseThreshold": f"{scheduler.pause_threshold:g}",
            "DeletionThreshold": str(scheduler.deletion_threshold),
            "MutationThreshold": str(scheduler.mutation_threshold),
            "ScheduleDelay": format_duration(round(scheduler.schedule_delay * 1e9)),
        }
    )
    scheduler.start()
    return scheduler


registration = Registration(
    type=Type.GC,
    id="scheduler",
    init=_init,
    requires=(Type.METADATA,),
    config=Config,
)
