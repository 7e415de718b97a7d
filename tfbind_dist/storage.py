"""File I/O for every part of tfbind_dist: local disk or object storage (gs://, s3://, ...), through etils.epath.

Every writer in the package goes through the `write_*_atomic` functions here, or through
`atomic_output` for files streamed batch by batch: readers see the old file or the whole new
one, never a part, and a failed write leaves nothing behind.

orbax writes checkpoints to the same paths natively (gs:// through TensorStore). Small
files (config, summary, progress, metrics) are whole-object writes on object storage,
which readers see complete or not at all, and temp-file-plus-rename on local disk.
Object-store paths need the `cloud` extra (gcsfs / s3fs) and the usual credentials.
"""
from __future__ import annotations

import contextlib
import functools
import io
import os
import socket
import tempfile
from pathlib import Path
from typing import Union

# gs:// and s3:// through fsspec (gcsfs, s3fs): TensorFlow's gfile, which epath prefers when
# TF is installed, has no s3:// and ignores the storage emulators used in tests.
os.environ.setdefault("EPATH_USE_TF", "false")

import fsspec  # noqa: E402
import fsspec.config  # noqa: E402
from etils import epath  # noqa: E402

from tfbind_dist.errors import MissingExtra  # noqa: E402

# Objects appear from other processes (actors, other nodes, a killed run's workers): a listing or
# an existence check must ask the store, never a cached listing (gcsfs caches them by default).
for _protocol in ("gs", "gcs", "s3", "s3a"):
    fsspec.config.conf.setdefault(_protocol, {}).setdefault("use_listings_cache", False)

REMOTE_SCHEMES = ("gs://", "s3://", "az://", "hf://")
AnyPath = Union[Path, epath.Path]


def is_remote(path: str | os.PathLike) -> bool:
    return str(path).startswith(REMOTE_SCHEMES)


def as_path(path: str | os.PathLike) -> AnyPath:
    """A local absolute `pathlib.Path`, or an `epath.Path` for an object-store URL (its client library installed)."""
    if not is_remote(path):
        return Path(path).absolute()
    _check_client(str(path).split("://", 1)[0])
    return epath.Path(str(path))


@functools.cache
def _check_client(protocol: str) -> None:
    """The fsspec client of `protocol` (gcsfs for gs://, s3fs for s3://) can be imported, else one clear error."""
    try:
        fsspec.get_filesystem_class(protocol)
    except ImportError as err:
        raise MissingExtra(f"{protocol}:// paths need their fsspec client (gs:// and s3:// come with the cloud extra: "
                           f"pip install 'tfbind-dist[cloud]'; {str(err).splitlines()[0]})") from None


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Readers see the old file or the whole new one, never a part."""
    if is_remote(path):
        as_path(path).write_bytes(data)  # one object upload: visible only once complete
        return
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode())


TEMP_SUFFIX = ".tmp"
UPLOAD_DIR = "tfbind-uploads"  # under the system temp folder: local staging of object-store writes


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike):
    """A local temp file that becomes `path` when the block succeeds and is removed if it fails.

    Local `path`: the temp file lies beside it (`.NAME.<pid>.<random>.tmp`) and is renamed onto
    it. Object storage: the temp file is staged on local disk and uploaded as one object, which
    readers see whole or not at all. Either way, memory does not grow with the file, so a writer
    can stream into it (e.g. a pyarrow ParquetWriter). Temp files of processes that died
    mid-write are removed by `remove_stale_temps`.
    """
    remote = is_remote(path)
    if remote:
        folder = Path(tempfile.gettempdir()) / UPLOAD_DIR
        remove_stale_temps(folder)
        name = Path(str(path).rstrip("/")).name
    else:
        path = Path(path).absolute()
        folder, name = path.parent, path.name
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.{_writer_id()}.", suffix=TEMP_SUFFIX, dir=folder)
    os.close(fd)
    try:
        yield Path(tmp)
        if remote:
            import fsspec

            filesystem, target = fsspec.core.url_to_fs(str(path))
            filesystem.put_file(tmp, target)
        else:
            os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def remove_stale_temps(folder: str | os.PathLike) -> int:
    """Delete `atomic_output` temp files in local `folder` whose writing process is gone; how many.

    A process killed mid-write (SIGKILL, a lost node) leaves its temp file; the writer's host
    and pid are in the name, so only this host's files are judged, and those of live writers
    are never touched (on a disk shared by several hosts, each host cleans its own).
    """
    if is_remote(folder) or not Path(folder).is_dir():
        return 0
    removed, folder = 0, Path(folder)
    host = _writer_id().rpartition("-")[0]
    for tmp in folder.glob(f".*{TEMP_SUFFIX}"):
        writer_host, _, pid = tmp.name.split(".")[-3].rpartition("-")  # .NAME.<host>-<pid>.<random>.tmp
        if writer_host != host or not pid.isdigit() or int(pid) == os.getpid() or _process_alive(int(pid)):
            continue
        tmp.unlink(missing_ok=True)
        removed += 1
    return removed


def _writer_id() -> str:
    """`<host>-<pid>` of this process, without dots (they separate the fields of a temp file's name)."""
    return f"{socket.gethostname().split('.')[0].replace('-', '_')}-{os.getpid()}"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def expand(pattern: str) -> list[str]:
    """The paths or URLs a glob pattern matches, sorted (a pattern without *, ? or [ is returned as is).

    For object-store URLs, which no shell expands (`'gs://bucket/runs/*'`).
    """
    if not any(c in pattern for c in "*?["):
        return [pattern]
    if is_remote(pattern):
        import fsspec

        filesystem, _ = fsspec.core.url_to_fs(pattern)
        protocol = pattern.split("://", 1)[0]
        return sorted(f"{protocol}://{p}" for p in filesystem.glob(pattern))
    import glob

    return sorted(glob.glob(pattern))


def write_table_atomic(table, path: str | os.PathLike) -> None:
    """Write a pyarrow Table as Parquet (zstd): streamed to a temp file, then renamed (local) or uploaded whole."""
    import pyarrow.parquet as pq

    with atomic_output(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


@contextlib.contextmanager
def open_parquet(path: str | os.PathLike):
    """A `pyarrow.parquet.ParquetFile` on local disk or object storage (through fsspec, so emulators apply),
    closed with its file handle when the block ends."""
    import pyarrow.parquet as pq

    with (as_path(path).open("rb") if is_remote(path) else open(path, "rb")) as handle:
        yield pq.ParquetFile(handle)


def write_npz_atomic(path: str | os.PathLike, **arrays) -> None:
    """numpy.savez_compressed, written atomically."""
    import numpy as np

    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    write_bytes_atomic(path, buffer.getvalue())


def write_csv_atomic(frame, path: str | os.PathLike) -> None:
    """A pandas DataFrame as CSV (no index), written atomically."""
    write_text_atomic(path, frame.to_csv(index=False))


def read_parquet(path: str | os.PathLike):
    """A Parquet file as a pandas DataFrame, read through epath on object storage.

    (Passing a gs:// URL to pandas would pick pyarrow's own GCS client, which
    ignores the fsspec configuration and emulators.)
    """
    with open_parquet(path) as source:
        return source.read().to_pandas()


def save_figure(fig, path: str | os.PathLike, **kwargs) -> None:
    """matplotlib savefig to any path (PNG)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", **kwargs)
    write_bytes_atomic(path, buffer.getvalue())


# Variables a sweep forwards to its Ray jobs so they reach the same storage as the driver
# (emulator endpoints and project ids; credentials come from each node's own environment).
STORAGE_ENV_VARS = ("STORAGE_EMULATOR_HOST", "TENSORSTORE_GCS_HTTP_URL", "GOOGLE_CLOUD_PROJECT",
                    "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION")


def storage_env() -> dict[str, str]:
    return {k: os.environ[k] for k in STORAGE_ENV_VARS if k in os.environ}
