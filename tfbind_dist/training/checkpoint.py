"""orbax checkpoints of a run: `latest` (resume point) and `best` (by validation auROC).

Each checkpoint holds the TrainState (params, optimiser, BatchNorm stats, RNG, step),
the data iterator's position (one JSON file per JAX process, via grain's orbax
handler) and a small JSON record of the run's progress (best auROC so far).

Where they live: orbax writes local disk and gs:// (TensorStore) itself. orbax 0.12 does not
checkpoint to s3:// (its atomic rename of a finished step is a copy on S3, and its array paths
lose the URL's `//`), so for an s3:// run directory the checkpoints are written locally, into a
staging folder keyed by the URL, and every finished step is then published: its files uploaded
one object each, then a `_PUBLISHED` marker (`rundir.PUBLISHED`), then the previous step removed.
A reader (a resumed job on any node, a scoring actor) sees only published steps, fetches the
newest into its own staging folder and restores from there: a whole checkpoint or none.
"""
from __future__ import annotations

import hashlib
import logging
import shutil
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp

from tfbind_dist.errors import RunDirError
from tfbind_dist.rundir import BEST, LATEST, PUBLISHED
from tfbind_dist.storage import as_path, is_remote, storage_fault, write_bytes_atomic


class _StorageFaults(logging.Filter):
    """Drops orbax's thread-by-thread reports of a full disk or refused write (with their tracebacks), and
    asyncio's reports of its futures that held such an error: the training loop reports the fault once,
    naming the run directory (`storage.writes_to`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not ((error is not None and storage_fault(error)) or storage_fault(Exception(record.getMessage())))


logging.getLogger("absl").setLevel(logging.WARNING)
for _logger in ("absl", "asyncio"):  # orbax's threads, and its futures' errors logged when collected
    logging.getLogger(_logger).addFilter(_StorageFaults())


def _quiet_closed_loops(unraisable, previous=sys.unraisablehook) -> None:
    """TensorStore completes a failed write's future after orbax has closed the event loop awaiting it; the
    callback's `Event loop is closed` is noise then (the failure itself is raised in the training loop)."""
    error = unraisable.exc_value
    if not (isinstance(error, RuntimeError) and str(error) == "Event loop is closed"):
        previous(unraisable)


sys.unraisablehook = _quiet_closed_loops

STAGING = "tfbind-checkpoints"  # under the system temp folder: local copies of s3:// checkpoints


def abstract_like(tree):
    """Shape/dtype/sharding description of a pytree, used as a restore target."""
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


def _replace_step(manager: ocp.CheckpointManager, step: int) -> None:
    """Drop `step` if an earlier, interrupted attempt already saved it (a resumed run recomputes it exactly)."""
    if step in manager.all_steps():
        manager.delete(step)


def publishes(directory) -> bool:
    """Whether checkpoints under `directory` are staged locally and published (s3://), not written by orbax."""
    return str(directory).startswith("s3://")


class PublishedSteps:
    """The published checkpoint steps of one `latest` or `best` folder on object storage, and their local copies."""

    def __init__(self, remote, local: Path):
        self.remote, self.local = remote, local

    def steps(self) -> list[int]:
        if not self.remote.is_dir():
            return []
        return sorted(int(p.name) for p in self.remote.iterdir() if p.name.isdigit() and (p / PUBLISHED).exists())

    def pull(self) -> None:
        """Make the local folder hold exactly the newest published step (fetched if missing)."""
        steps = self.steps()
        newest = steps[-1] if steps else None
        if self.local.is_dir():
            for stale in (p for p in self.local.iterdir() if p.name != str(newest)):
                shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
        if newest is None or (self.local / str(newest)).is_dir():
            return
        source, target = self.remote / str(newest), self.local / str(newest)
        partial = self.local / f".{newest}.fetching"
        shutil.rmtree(partial, ignore_errors=True)
        for path in source.rglob("*"):
            if path.is_file() and path.name != PUBLISHED:
                destination = partial / path.relative_to(source)
                destination.parent.mkdir(parents=True, exist_ok=True)
                destination.write_bytes(path.read_bytes())
        partial.rename(target)

    def publish(self, step: int) -> None:
        """Upload a finished local step, mark it published, then remove every other step there."""
        source, target = self.local / str(step), self.remote / str(step)
        for path in sorted(source.rglob("*")):
            if path.is_file():
                write_bytes_atomic(target / path.relative_to(source).as_posix(), path.read_bytes())
        write_bytes_atomic(target / PUBLISHED, b"")
        for other in (p for p in self.remote.iterdir() if p.name.isdigit() and p.name != str(step)):
            if (other / PUBLISHED).exists():  # the marker first: a reader never sees a marked, partial step
                (other / PUBLISHED).unlink()
            other.rmtree()  # an older step, or one a killed upload left unmarked


class RunCheckpoints:
    """The two checkpoint managers of one run directory."""

    def __init__(self, directory: str | Path):
        directory = as_path(directory)
        self.published: dict[str, PublishedSteps] = {}
        if publishes(directory):
            key = hashlib.sha1(str(directory).encode()).hexdigest()[:16]
            staging = Path(tempfile.gettempdir()) / STAGING / key
            for which in (LATEST, BEST):
                self.published[which] = PublishedSteps(directory / which, staging / which)
                self.published[which].pull()
            directory = staging
        # a step a killed or failed save left half-written is removed when the run is opened again
        options = ocp.CheckpointManagerOptions(max_to_keep=1, create=True, cleanup_tmp_directories=True)
        handlers = None
        if is_remote(directory):  # one object per array, each written once: no shared OCDBT manifest to rewrite
            handlers = {"state": ocp.StandardCheckpointHandler(use_ocdbt=False), "progress": ocp.JsonCheckpointHandler(),
                        "data_iter": grain.checkpoint.CheckpointHandler()}
        self.latest = ocp.CheckpointManager(directory / LATEST, options=options, item_handlers=handlers)
        self.best = ocp.CheckpointManager(directory / BEST, options=options,
                                          item_handlers=handlers and {k: v for k, v in handlers.items() if k != "data_iter"})

    def _publish(self, which: str, manager: ocp.CheckpointManager, step: int) -> None:
        if which in self.published:
            manager.wait_until_finished()
            self.published[which].publish(step)

    def save_latest(self, step: int, state, data_iterator, progress: dict[str, Any]) -> None:
        self.best.wait_until_finished()  # both managers use per-step barriers across processes: never overlap
        _replace_step(self.latest, step)
        args = {"state": ocp.args.StandardSave(state), "progress": ocp.args.JsonSave(progress)}
        if data_iterator is not None:
            args["data_iter"] = grain.checkpoint.CheckpointSave(data_iterator)
        self.latest.save(step, args=ocp.args.Composite(**args), force=True)
        self._publish(LATEST, self.latest, step)

    def save_best(self, step: int, state, progress: dict[str, Any]) -> None:
        self.latest.wait_until_finished()
        _replace_step(self.best, step)
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), progress=ocp.args.JsonSave(progress))
        self.best.save(step, args=args, force=True)
        self._publish(BEST, self.best, step)

    def restore_latest(self, target_state, data_iterator) -> tuple[int, Any, dict[str, Any]] | None:
        """Restore (step, state, progress) from the latest checkpoint into the iterator; None if none."""
        step = self.latest.latest_step()
        if step is None:
            return None
        args = {"state": ocp.args.StandardRestore(abstract_like(target_state)), "progress": ocp.args.JsonRestore()}
        if data_iterator is not None:
            args["data_iter"] = grain.checkpoint.CheckpointRestore(data_iterator)
        restored = self.latest.restore(step, args=ocp.args.Composite(**args))
        return step, restored["state"], dict(restored["progress"])

    def restore_best(self, target_state) -> tuple[int, Any]:
        step = self.best.latest_step()
        if step is None:
            raise RunDirError(f"no best checkpoint under {self.best.directory}")
        restored = self.best.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_like(target_state))))
        return step, restored["state"]

    def wait(self) -> None:
        self.latest.wait_until_finished()
        self.best.wait_until_finished()

    def close(self) -> None:
        self.latest.close()
        self.best.close()

    def abandon(self) -> None:
        """Stop the managers after a failed save: wait for their threads, discard the errors they hold (the
        caller reports the failure), so none prints as the process exits."""
        for manager in (self.latest, self.best):
            try:
                manager.close()
            except Exception:  # noqa: BLE001 - the failure is already being raised
                pass
        _stop_save_threads()


def _stop_save_threads(timeout: float = 30.0) -> None:
    """Cancel and join orbax's save threads still running after a failed save. `close()` stops at the first
    error it re-raises, and a thread left behind fails again as the interpreter shuts down (its executor is
    gone), printing a traceback after the one-line report."""
    from orbax.checkpoint._src.futures.future import _SignalingThread

    threads = [t for t in threading.enumerate() if isinstance(t, _SignalingThread) and t.is_alive()]
    for thread in threads:
        thread.cancel()
    for thread in threads:
        threading.Thread.join(thread, timeout)
