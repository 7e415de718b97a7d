"""Keeping the host close behind the devices, and exiting when a run stops making progress.

`DispatchWindow`: JAX dispatches asynchronously, so a loop without host syncs can queue
hundreds of computations ahead of the devices. XLA's CPU client (jaxlib 0.10) limits each
device to 32 in-flight computations with a semaphore that it acquires on the pool whose
threads also run multi-device (collective) programs, a pool sized for one collective at a
time. Once the host is 32 computations ahead, launch tasks block on that semaphore while
holding pool threads, the all-reduce of an earlier step never gathers its 8 participants,
and the job deadlocks (one process: XLA aborts after its rendezvous timeout; several
processes over gloo: it hangs for good). Bounding the queue to a few steps removes the
deadlock and costs nothing measurable, since the devices stay busy with the steps queued.

`StallWatchdog`: whatever the cause (a lost peer, a storage outage), a multi-device or
multi-host job that cannot make progress must not hold its reservation forever. The
watchdog exits the process with a one-line reason naming the step and phase, so that Ray's
retry and the checkpoint resume path take over.
"""
from __future__ import annotations

import collections
import contextlib
import faulthandler
import os
import sys
import threading
import time
from typing import Any, Iterator

import jax

STALL_EXIT_CODE = 75  # EX_TEMPFAIL: a retry may succeed (and resumes from the latest checkpoint)


class DispatchWindow:
    """Allow at most `depth` dispatched results to be outstanding; `push` waits for the oldest beyond that."""

    def __init__(self, depth: int = 4):
        if depth < 1:
            raise ValueError(f"dispatch depth must be at least 1, got {depth}")
        self.depth = depth
        self._outstanding: collections.deque[Any] = collections.deque()

    def push(self, result: Any) -> None:
        self._outstanding.append(result)
        while len(self._outstanding) > self.depth:
            jax.block_until_ready(self._outstanding.popleft())

    def drain(self) -> None:
        while self._outstanding:
            jax.block_until_ready(self._outstanding.popleft())


class StallWatchdog:
    """Exit the process when the current phase has made no progress for `timeout` seconds.

    The training loop calls `progress(step)` with the oldest step still in flight and wraps
    evaluation and checkpoint waits in `phase(name, step)`. A stuck collective blocks the
    main thread inside XLA, where neither exceptions nor signal handlers reach it, so the
    check runs on a daemon thread and ends the process with `os._exit`.
    """

    def __init__(self, timeout: float, *, label: str = "training", exit_code: int = STALL_EXIT_CODE,
                 poll_seconds: float | None = None):
        self.timeout = float(timeout)
        self.label = label
        self.exit_code = exit_code
        self._poll = poll_seconds or max(0.05, min(5.0, self.timeout / 10))
        self._lock = threading.Lock()
        self._phase, self._step = "training", 0
        self._last_progress = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def enabled(self) -> bool:
        return self.timeout > 0

    def __enter__(self) -> "StallWatchdog":
        if self.enabled:
            self._thread = threading.Thread(target=self._watch, name="tfbind-stall-watchdog", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def progress(self, step: int) -> None:
        with self._lock:
            self._step, self._last_progress = int(step), time.monotonic()

    @contextlib.contextmanager
    def phase(self, name: str, step: int) -> Iterator[None]:
        with self._lock:
            previous = self._phase
            self._phase, self._step, self._last_progress = name, int(step), time.monotonic()
        try:
            yield
        finally:
            with self._lock:
                self._phase, self._last_progress = previous, time.monotonic()

    def message(self, waited: float) -> str:
        return (f"tfbind: {self.label} stalled: no progress for {waited:.0f} s at step {self._step} during "
                f"{self._phase} (limit train.stall_timeout={self.timeout:g} s); exiting with status "
                f"{self.exit_code} so that a retry resumes from the latest checkpoint")

    def _watch(self) -> None:
        while not self._stop.wait(self._poll):
            with self._lock:
                waited = time.monotonic() - self._last_progress
                if waited < self.timeout:
                    continue
                message = self.message(waited)
            sys.stderr.write("tfbind: Python stacks of the stalled process follow\n")
            faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
            sys.stderr.write(message + "\n")
            sys.stderr.flush()
            os._exit(self.exit_code)
