"""The garbage collection scheduler: triggers, thresholds, waiters, config, the plugin."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pycontainerd import errdefs
from pycontainerd.daemon import builtins
from pycontainerd.daemon.config import loads, render
from pycontainerd.durations import format_duration, parse_duration
from pycontainerd.gc.scheduler import Config, Scheduler
from pycontainerd.plugin import Type, load


@dataclass
class _Stats:
    seconds: float

    def elapsed(self) -> float:
        return self.seconds


class FakeCollector:
    """Counts collections; ``fail`` makes the next one raise."""

    def __init__(self, seconds: float = 0.001) -> None:
        self.callbacks: list[Callable[[bool], None]] = []
        self.runs = 0
        self.seconds = seconds
        self.fail = False
        self.ran = threading.Event()

    def register_mutation_callback(self, fn: Callable[[bool], None]) -> None:
        self.callbacks.append(fn)

    def mutate(self, dirty: bool = False) -> None:
        for fn in self.callbacks:
            fn(dirty)

    def garbage_collect(self) -> _Stats:
        self.runs += 1
        self.ran.set()
        if self.fail:
            self.fail = False
            raise errdefs.Unavailable("collector broke")
        time.sleep(self.seconds)
        return _Stats(self.seconds)


@pytest.fixture
def make() -> Iterator[Callable[..., tuple[Scheduler, FakeCollector]]]:
    made: list[Scheduler] = []

    def factory(**settings: object) -> tuple[Scheduler, FakeCollector]:
        collector = FakeCollector()
        s = Scheduler(collector, Config(**settings))  # type: ignore[arg-type]
        s.start()
        made.append(s)
        return s, collector

    yield factory
    for s in made:
        s.close()


def _wait_for(cond: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.005)
    return cond()


def test_collects_after_the_startup_delay(
    make: Callable[..., tuple[Scheduler, FakeCollector]],
) -> None:
    _, c = make(startup_delay="50ms")
    assert c.runs == 0
    assert _wait_for(lambda: c.runs == 1)
    time.sleep(0.2)
    assert c.runs == 1  # nothing changed since: nothing to collect for


def test_no_startup_collection_with_zero_delay(
    make: Callable[..., tuple[Scheduler, FakeCollector]],
) -> None:
    _, c = make(startup_delay="0s")
    time.sleep(0.2)
    assert c.runs == 0


def test_schedule_and_wait(make: Callable[..., tuple[Scheduler, FakeCollector]]) -> None:
    s, c = make(startup_delay="0s")
    stats = s.schedule_and_wait(5)
    assert stats.elapsed() == c.seconds
    assert c.runs == 1
    # waiters at once share one collection or get their own; each gets stats
    results: list[object] = []
    threads = [
        threading.Thread(target=lambda: results.append(s.schedule_and_wait(5))) for _ in range(5)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 5
    assert 2 <= c.runs <= 6


def test_a_waiter_during_a_collection_gets_a_later_one(
    make: Callable[..., tuple[Scheduler, FakeCollector]],
) -> None:
    s, c = make(startup_delay="0s")
    c.seconds = 0.3
    first = s.schedule()
    assert c.ran.wait(5)
    second = s.schedule()  # the running collection started before it asked
    first.result(5)
    assert not second.done() or c.runs == 2
    second.result(5)
    assert c.runs == 2


def test_deletion_threshold(make: Callable[..., tuple[Scheduler, FakeCollector]]) -> None:
    _, c = make(startup_delay="0s", deletion_threshold=2)
    c.mutate(dirty=True)
    time.sleep(0.1)
    assert c.runs == 0
    c.mutate(dirty=True)
    assert _wait_for(lambda: c.runs == 1)


def test_deletions_collect_at_the_next_scheduled_time(
    make: Callable[..., tuple[Scheduler, FakeCollector]],
) -> None:
    s, c = make(startup_delay="10ms", pause_threshold=0.5)
    assert _wait_for(lambda: s.collections == 1)  # done: changes from now on count
    # interval = avg / 0.5 - avg = avg: a deletion is collected promptly
    c.mutate(dirty=True)
    assert _wait_for(lambda: c.runs == 2)
    time.sleep(0.1)
    assert c.runs == 2


def test_mutation_threshold(make: Callable[..., tuple[Scheduler, FakeCollector]]) -> None:
    s, c = make(startup_delay="10ms", pause_threshold=0.5, mutation_threshold=5)
    assert _wait_for(lambda: s.collections == 1)
    for _ in range(4):
        c.mutate()
    time.sleep(0.1)
    assert c.runs == 1
    c.mutate()
    assert _wait_for(lambda: c.runs == 2)


def test_a_failed_collection_fails_its_waiters_and_retries(
    make: Callable[..., tuple[Scheduler, FakeCollector]],
) -> None:
    s, c = make(startup_delay="0s")
    c.fail = True
    with pytest.raises(errdefs.Unavailable, match="collector broke"):
        s.schedule_and_wait(5)
    assert s.schedule_and_wait(5).elapsed() == c.seconds


def test_close_fails_pending_waiters() -> None:
    c = FakeCollector(seconds=0.2)
    s = Scheduler(c, Config(startup_delay="0s"))
    # not started: nothing collects
    fut = s.schedule()
    s.close()
    with pytest.raises(errdefs.Unavailable):
        fut.result(1)
    with pytest.raises(errdefs.Unavailable):
        s.schedule_and_wait(1)


def test_schedule_and_wait_times_out() -> None:
    s = Scheduler(FakeCollector(), Config(startup_delay="0s"))
    with pytest.raises(errdefs.Unavailable, match="not done within"):
        s.schedule_and_wait(0.05)
    s.close()


def test_schedule_and_wait_async(make: Callable[..., tuple[Scheduler, FakeCollector]]) -> None:
    s, c = make(startup_delay="0s")
    stats = asyncio.run(s.schedule_and_wait_async())
    assert stats.elapsed() == c.seconds


def test_config_is_clamped() -> None:
    s = Scheduler(
        FakeCollector(),
        Config(pause_threshold=3.0, mutation_threshold=-1, schedule_delay="-1s"),
    )
    assert s.pause_threshold == 0.5
    assert s.mutation_threshold == 0
    assert s.schedule_delay == 0
    assert s.startup_delay == 0.1
    with pytest.raises(errdefs.InvalidArgument):
        Scheduler(FakeCollector(), Config(startup_delay="soon"))


# --- durations ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("0", 0),
        ("0s", 0),
        ("100ms", 100_000_000),
        ("1.5s", 1_500_000_000),
        ("1h30m", 5400 * 10**9),
        ("-2m", -120 * 10**9),
        ("24h", 86400 * 10**9),
        ("3us", 3000),
        ("3µs", 3000),
        (".5s", 500_000_000),
    ],
)
def test_parse_duration(text: str, ns: int) -> None:
    assert parse_duration(text) == ns


@pytest.mark.parametrize("bad", ["", "1", "s", "1x", "1.s.", "--1s", "9999999999h"])
def test_parse_duration_refuses(bad: str) -> None:
    with pytest.raises(errdefs.InvalidArgument):
        parse_duration(bad)


@pytest.mark.parametrize(
    ("ns", "text"),
    [(0, "0s"), (100_000_000, "100ms"), (5400 * 10**9, "1h30m0s"), (1500, "1.5µs"), (7, "7ns")],
)
def test_format_duration(ns: int, text: str) -> None:
    assert format_duration(ns) == text


# --- the plugin --------------------------------------------------------------------------


def test_config_default_and_load() -> None:
    text = render(loads("version = 2\n", builtins.REGISTRATIONS))
    assert '[plugins."io.containerd.gc.v1.scheduler"]' in text
    assert "pause_threshold = 0.02" in text
    assert 'startup_delay = "100ms"' in text
    cfg = loads(
        'version = 2\n[plugins."io.containerd.gc.v1.scheduler"]\n'
        'deletion_threshold = 5\nschedule_delay = "1s"\npause_threshold = 0\n',
        builtins.REGISTRATIONS,
    )
    gc_cfg = cfg.plugins["io.containerd.gc.v1.scheduler"]
    assert (gc_cfg.deletion_threshold, gc_cfg.schedule_delay, gc_cfg.pause_threshold) == (
        5,
        "1s",
        0,
    )


def test_plugins_wire_up(tmp_path: Path) -> None:
    plugins = load(
        builtins.REGISTRATIONS,
        root=tmp_path / "root",
        state=tmp_path / "state",
        address="",
        configs={},
    )
    try:
        failed = {p.registration.uri: p.error for p in plugins.all() if p.error is not None}
        assert failed == {}
        gc = plugins.get(Type.GC, "scheduler")
        assert isinstance(gc, Scheduler)
        gc_plugin = next(p for p in plugins.all() if p.registration.type == Type.GC)
        assert gc_plugin.meta.exports == {
            "PauseThreshold": "0.02",
            "DeletionThreshold": "0",
            "MutationThreshold": "100",
            "ScheduleDelay": "0s",
        }
        assert gc.schedule_and_wait(10).elapsed() >= 0
    finally:
        for p in reversed(plugins.all()):
            close = getattr(p.instance, "close", None)
            if callable(close):
                close()


def test_a_cancelled_waiter_does_not_stop_the_scheduler(
    make: Callable[..., tuple[Scheduler, FakeCollector]],
) -> None:
    s, c = make(startup_delay="0s")
    c.seconds = 0.2
    fut = s.schedule()
    assert c.ran.wait(5)
    assert fut.cancel() or fut.done()
    c.seconds = 0.001
    assert s.schedule_and_wait(5).elapsed() == 0.001


def test_a_cancelled_async_call_does_not_stop_the_scheduler(
    make: Callable[..., tuple[Scheduler, FakeCollector]],
) -> None:
    s, c = make(startup_delay="0s")
    c.seconds = 0.2

    async def impatient() -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(s.schedule_and_wait_async(), 0.05)

    asyncio.run(impatient())
    c.seconds = 0.001
    assert s.schedule_and_wait(5).elapsed() in (0.001, 0.2)
    assert s.schedule_and_wait(5).elapsed() == 0.001
