"""`imgops local up`'s stop is bounded by one deadline, and its Ctrl-C handling (imgops/local.py) can always force it.

The e2e tests (tests/e2e/test_local_stack.py, test_ctrl_c_stress.py) stop real stacks; these check the arithmetic and
the watchdog's states without starting one: every service here takes all the time it is given, or hangs for good.
"""

from __future__ import annotations

import dis
import multiprocessing
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from imgops import local
from localaws.moto_process import MotoProcess
from localaws.runtime import join_all, left, stop_signals_blocked
from localaws.stack import STOP_SECONDS, LocalStack, LocalStackOptions

# Scheduling noise allowed on a loaded machine (two cores, a suite running beside).
SLACK_SECONDS = 0.5


class Takes:
    """A service whose stop/close takes every second it is given (none given: it returns at once)."""

    def __init__(self, name: str, calls: list[tuple[str, float]], *, result: bool = True) -> None:
        self._name = name
        self._calls = calls
        self._result = result

    def _take(self, timeout: float) -> bool:
        self._calls.append((self._name, timeout))
        assert timeout >= 0
        time.sleep(timeout)
        return self._result

    def stop(self, timeout: float = 10.0) -> bool:
        return self._take(timeout)

    def close(self, timeout: float = 10.0) -> None:
        self._take(timeout)

    def request_stop(self, timeout: float = 1.0) -> None:
        self._calls.append((f"{self._name}.request_stop", timeout))


class Hangs:
    """The local API when it never started serving: its shutdown waits for good."""

    def stop(self) -> None:
        threading.Event().wait()


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LocalStack:
    monkeypatch.setenv("IMGOPS_STATE_DIR", str(tmp_path))
    return LocalStack(LocalStackOptions(workers=1))


def test_stop_ends_by_its_deadline_whatever_each_service_takes(stack: LocalStack) -> None:
    calls: list[tuple[str, float]] = []
    stack._schedules = [Takes("schedule", calls)]  # type: ignore[list-item]
    stack._workers = Takes("workers", calls)  # type: ignore[assignment]
    stack._metrics = Takes("metrics", calls)  # type: ignore[assignment]
    stack._moto = Takes("moto", calls)  # type: ignore[assignment]
    stack._api = Hangs()  # type: ignore[assignment]
    started = time.monotonic()
    assert stack.stop(3.0)
    took = time.monotonic() - started
    assert took <= 3.0 + SLACK_SECONDS, calls
    names = [name for name, _ in calls]
    # Told at once (a schedule: no wait), then waited for; the embedded AWS last (the others' last datums go to it).
    assert names[:2] == ["schedule", "workers.request_stop"]
    assert names[-3:] == ["workers", "metrics", "moto"]
    assert dict(calls)["moto"] >= 0.3 * 3.0 - SLACK_SECONDS  # its share is left to it, whatever came before


def test_stop_says_when_a_process_outlived_it(stack: LocalStack) -> None:
    calls: list[tuple[str, float]] = []
    stack._workers = Takes("workers", calls, result=False)  # type: ignore[assignment]
    stack._moto = Takes("moto", calls)  # type: ignore[assignment]
    assert not stack.stop(0.2)


def test_no_scheduled_run_starts_once_stop_has_begun(stack: LocalStack) -> None:
    runs: list[str] = []
    guarded = stack._unless_stopping(lambda: runs.append("run"))
    guarded()
    stack.stop(0.1)
    guarded()
    assert runs == ["run"]


def test_the_stop_budget_leaves_margin_to_the_watchdog_and_the_tests() -> None:
    # The stop's own deadline, then the signal reaching the main thread and the interpreter's exit, then the
    # watchdog's kill, all within the tests' 10 s.
    assert STOP_SECONDS + 2.0 <= local.FORCED_STOP_SECONDS
    assert local.FORCED_STOP_SECONDS + local.FORCED_REAP_SECONDS * 2 + 0.5 <= 10.0


def test_moto_is_killed_and_reaped_by_the_deadline() -> None:
    moto = MotoProcess(metrics=False)
    # A process that ignores "stop" (and SIGTERM would not help: moto's ignores it).
    moto._process = multiprocessing.get_context("spawn").Process(target=time.sleep, args=(60,), daemon=True)
    moto._process.start()
    moto.endpoint_url = "http://127.0.0.1:9"  # serving, as far as the parent knows: it is asked first
    started = time.monotonic()
    assert moto.stop(1.0)
    assert time.monotonic() - started <= 1.0 + SLACK_SECONDS
    assert not moto._process.is_alive()


def test_join_all_shares_one_deadline() -> None:
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=time.sleep, args=(60,), daemon=True) for _ in range(3)]
    for process in processes:
        process.start()
    try:
        started = time.monotonic()
        join_all(processes, started + 0.5)
        assert time.monotonic() - started <= 0.5 + SLACK_SECONDS  # not 0.5 s each
        assert left(started) == 0.0
    finally:
        for process in processes:
            process.kill()
        join_all(processes, time.monotonic() + 10)


class Watchdog:
    """A _Stopping whose watchdog records instead of killing this process."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, forced_after: float = 0.3) -> None:
        monkeypatch.setattr(local, "FORCED_STOP_SECONDS", forced_after)
        self.forced = threading.Event()
        self.stopping = local._Stopping()
        self._thread = threading.Thread(target=self.stopping._watchdog, args=(self.forced.set,), daemon=True)
        self._thread.start()

    def fires_within(self, seconds: float) -> bool:
        return self.forced.wait(seconds)


def test_a_signal_interrupts_once_then_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    watchdog = Watchdog(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        watchdog.stopping._handle(2, None)
    watchdog.stopping._handle(2, None)  # the stop under way goes on
    assert watchdog.fires_within(2.0)


def test_a_signal_during_a_stop_not_caused_by_one_starts_the_watchdog(monkeypatch: pytest.MonkeyPatch) -> None:
    watchdog = Watchdog(monkeypatch)
    watchdog.stopping.requested = True  # stopping after an error
    assert not watchdog.fires_within(0.6)  # no signal: no clock
    watchdog.stopping._handle(2, None)  # no KeyboardInterrupt in the middle of the stop...
    assert watchdog.fires_within(2.0)  # ...but a hung one is forced


def test_the_watchdog_is_disarmed_once_the_stop_has_returned(monkeypatch: pytest.MonkeyPatch) -> None:
    watchdog = Watchdog(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        watchdog.stopping._handle(15, None)
    watchdog.stopping.disarm()
    assert not watchdog.fires_within(1.0)  # a slow interpreter exit after a clean stop keeps exit 0


def test_the_forced_stop_imports_nothing_when_it_fires() -> None:
    """Its imports happen in install(): the main thread, interrupted, may hold an import lock."""
    force_stop = local._forced_stop()
    assert not [op for op in dis.get_instructions(force_stop) if op.opname.startswith("IMPORT")]
    assert {"kill_trees", "remove_cgroups", "descendants"} <= set(force_stop.__code__.co_freevars)


def test_a_ctrl_c_while_children_are_spawned_waits_until_they_have_what_they_run() -> None:
    """Ctrl-C lands on any thread of the stack's process that does not block it (the progress display's), and Python
    runs the handler in the main thread at its next chance. If that is between spawning a child and writing it what
    to run, the child reads an empty pipe and prints a traceback (the stress test's seed 678898754). Under
    stop_signals_blocked the handler runs once the block ends, not meanwhile."""
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda number, _frame: received.append(number))
    done = threading.Event()

    def ctrl_c() -> None:  # a thread started before the block: SIGINT is not blocked in it
        while not done.is_set():
            os.kill(os.getpid(), signal.SIGINT)
            busy = time.monotonic() + 0.002
            while time.monotonic() < busy:  # holding the GIL asks the main thread to look at what is pending
                pass

    context = multiprocessing.get_context("spawn")
    children = []
    sender = threading.Thread(target=ctrl_c)
    try:
        sender.start()
        with stop_signals_blocked():
            handled_before = len(received)
            for _ in range(3):
                child = context.Process(target=time.sleep, args=(0,))
                child.start()
                children.append(child)
            busy = time.monotonic() + 0.3
            while time.monotonic() < busy:
                pass
            handled_meanwhile = received[handled_before:]
            done.set()
            sender.join()
        handled_after = received[handled_before:]
    finally:
        done.set()
        sender.join()
        signal.signal(signal.SIGINT, previous)
    for child in children:
        child.join(30)
    assert handled_meanwhile == []
    assert handled_after == [signal.SIGINT]  # the ones that arrived meanwhile, raised again once
    assert [child.exitcode for child in children] == [0, 0, 0]
