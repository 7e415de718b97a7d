"""Stopping a training run cleanly when its machine is taken away (SIGTERM) or the user presses Ctrl-C.

Spot/preemptible VMs, TPU VMs and Kubernetes pods end work with SIGTERM and a grace period (about 30 s).
A run that is asked to stop finishes the dispatch in flight, writes a checkpoint of *that* step and
exits with `PREEMPTED_EXIT_CODE`; the same command resumes from that step exactly.

One process: a signal handler sets a flag the training loop reads after each dispatch. Several processes
(`jax.distributed`): JAX's preemption service catches SIGTERM in every process and agrees on one step at
which all of them stop (`multihost_utils.reached_preemption_sync_point`), so every process saves the same
step. A checkpoint that cannot be finished within the grace budget is given up with one line saying from
which step the run will resume (the incomplete step is never read: orbax publishes a step only whole).
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from typing import Iterator

from tfbind_dist.errors import PREEMPTED_EXIT_CODE  # noqa: F401 (re-exported: the status a stopped run exits with)


class StopRequest:
    """Whether the run `label` has been asked to stop; the training loop asks `requested(dispatch)` after
    each dispatch (numbered from 1 in this invocation, the same in every process)."""

    def __init__(self, grace_seconds: float, label: str):
        self.grace_seconds = grace_seconds
        self.label = label
        self.signal_name: str | None = None
        self._timer: threading.Timer | None = None
        self._multi = _several_processes()

    def notice(self, signum: int, _frame=None) -> None:
        """The signal handler (one process): note the request and start the grace clock; a second signal
        ends the process at once."""
        if self.signal_name is not None:
            self._exit(f"{signal.Signals(signum).name} again: stopped at once, without a checkpoint")
        self.signal_name = signal.Signals(signum).name
        self._start_clock()

    def requested(self, dispatch: int) -> bool:
        if not self._multi:
            return self.signal_name is not None
        from jax.experimental import multihost_utils

        if multihost_utils.reached_preemption_sync_point(dispatch):  # the same dispatch in every process
            if self.signal_name is None:
                self.signal_name = "SIGTERM"
                self._start_clock()
            return True
        return False

    def _start_clock(self) -> None:
        self._timer = threading.Timer(self.grace_seconds, self._exit, args=(
            f"its checkpoint did not finish within train.preempt_grace={self.grace_seconds:g} s and was given up",))
        self._timer.daemon = True
        self._timer.start()

    def _exit(self, why: str) -> None:
        print(f"tfbind: {self.label} stopped by {self.signal_name}: {why}; the same command resumes from the "
              "run's last complete checkpoint", file=sys.stderr, flush=True)
        os._exit(PREEMPTED_EXIT_CODE)

    def cancel_clock(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


@contextlib.contextmanager
def stop_on_signals(request: StopRequest | None) -> Iterator[StopRequest | None]:
    """While the block runs, SIGTERM and SIGINT set `request` instead of ending the process (main thread
    only). Several processes leave SIGTERM to JAX's preemption service and SIGINT as it is (a Ctrl-C on one
host cannot stop the others at an agreed step). None: signals keep their handlers."""
    if request is None or threading.current_thread() is not threading.main_thread():
        yield request
        return
    signums = [] if _several_processes() else [signal.SIGINT, signal.SIGTERM]
    previous = {s: signal.signal(s, request.notice) for s in signums}
    try:
        yield request
    finally:
        request.cancel_clock()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _several_processes() -> bool:
    import jax

    return jax.process_count() > 1
