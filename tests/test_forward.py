"""The background queue on its own: order, bounds, failures, deadlines, fork — with real threads."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

import pytest

from ml_manager._forward import Forwarder, ForwarderStats

if TYPE_CHECKING:
    from collections.abc import Callable


class Sink:
    """A sink that records what it gets, and can stall until released or raise every time."""

    def __init__(self, *, stall: bool = False, fail: bool = False) -> None:
        self.got: list[Any] = []
        self.started = threading.Event()
        self.release = threading.Event()
        if not stall:
            self.release.set()
        self.fail = fail

    def __call__(self, item: Any) -> None:
        self.started.set()
        assert self.release.wait(60), "the test never released the sink"
        if self.fail:
            raise ConnectionError("backend unreachable")
        self.got.append(item)


def _forwarder(sink: Sink, maxsize: int = 100) -> Forwarder:
    return Forwarder(sink, maxsize=maxsize, exit_timeout=5, name="ml_manager-test")


def test_items_arrive_in_order_and_close_drains_and_ends_the_thread() -> None:
    sink = Sink()
    forwarder = _forwarder(sink, maxsize=1000)
    for i in range(1000):
        assert forwarder.submit(i)
    assert forwarder.close(timeout=60) is True
    assert sink.got == list(range(1000))
    assert forwarder.stats == ForwarderStats(sent=1000)
    assert not forwarder.thread_alive


def test_a_forwarder_that_never_got_anything_closes_at_once() -> None:
    forwarder = _forwarder(Sink())
    assert forwarder.close(timeout=0) is True
    assert not forwarder.thread_alive


def test_a_sink_that_raises_is_counted_and_reported_once(caplog: pytest.LogCaptureFixture) -> None:
    sink = Sink(fail=True)
    forwarder = _forwarder(sink)
    with caplog.at_level(logging.WARNING, logger="ml_manager"):
        for i in range(20):
            forwarder.submit(i)
        assert forwarder.close(timeout=60)
    assert forwarder.stats == ForwarderStats(failed=20)
    assert len([r for r in caplog.records if "delivery failed" in r.getMessage()]) == 1


def test_a_stalled_sink_never_blocks_submit_and_close_keeps_its_deadline() -> None:
    sink = Sink(stall=True)
    forwarder = _forwarder(sink, maxsize=50)
    for i in range(50):
        assert forwarder.submit(i)  # returns at once although nothing is delivered
    assert sink.started.wait(60)
    assert forwarder.stats.pending == 50
    assert forwarder.close(timeout=0.05) is False  # the deadline passed with the sink still stuck
    stats = forwarder.stats
    assert (stats.sent, stats.dropped, stats.pending) == (0, 49, 1)  # one still in the sink's hands
    sink.release.set()
    thread = forwarder._thread
    assert thread is not None
    thread.join(60)
    assert not forwarder.thread_alive
    assert forwarder.stats == ForwarderStats(sent=1, dropped=49)
    assert sink.got == [0]


def test_a_full_queue_drops_new_items_counts_them_and_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    sink = Sink(stall=True)
    forwarder = _forwarder(sink, maxsize=3)
    forwarder.submit("in flight")
    assert sink.started.wait(60)
    with caplog.at_level(logging.WARNING, logger="ml_manager"):
        accepted = [forwarder.submit(i) for i in range(6)]
    assert accepted == [True, True, True, False, False, False]
    assert forwarder.stats == ForwarderStats(dropped=3, pending=4)
    assert len([r for r in caplog.records if "queue full" in r.getMessage()]) == 1
    sink.release.set()
    assert forwarder.close(timeout=60)
    assert sink.got == ["in flight", 0, 1, 2]
    assert forwarder.stats == ForwarderStats(sent=4, dropped=3)


def test_items_submitted_after_close_are_dropped_and_counted() -> None:
    forwarder = _forwarder(Sink())
    assert forwarder.close(timeout=1)
    assert forwarder.submit("late") is False
    assert forwarder.stats.dropped == 1


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_neither_resends_nor_deadlocks(in_fork: Callable[[Callable[[], str]], str]) -> None:
    sink = Sink(stall=True)
    forwarder = _forwarder(sink)
    for i in range(5):
        forwarder.submit(i)
    assert sink.started.wait(60)  # the thread is inside the sink while we fork

    def child() -> str:  # its copy of the forwarder is inert, and nothing it does may block
        accepted = forwarder.submit("from the child")
        drained = forwarder.close(timeout=5)
        return f"{accepted} {drained} {len(sink.got)} {forwarder.stats.dropped}"

    report = in_fork(child)
    assert report == "False True 0 1"
    sink.release.set()
    assert forwarder.close(timeout=60)
    assert sink.got == [0, 1, 2, 3, 4]  # sent once, by the parent
