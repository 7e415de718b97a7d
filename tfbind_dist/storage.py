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
import errno
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
# gcsfs >= 2026.10 defaults to its experimental client, which asks the storage-control gRPC API for the bucket's
# layout before operations and does not cache a failed answer: where that API is not reachable or not permitted
# (emulators, most service accounts) every operation pays a failed, retried call and logs a warning. The JSON
# API client serves every bucket kind tfbind_dist writes to.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

import fsspec  # noqa: E402
import fsspec.config  # noqa: E402
from etils import epath  # noqa: E402

from tfbind_dist.errors import MissingExtra, StorageError  # noqa: E402

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


_REPLACED_READS = 5


def read_bytes(path: str | os.PathLike) -> bytes:
    """The whole file. On object storage a file replaced while it is read (s3fs: FileExpired, its ETag changed
    between the size and the data requests) is read again: the caller gets the old or the new one whole."""
    if not is_remote(path):
        return Path(path).read_bytes()
    for _ in range(_REPLACED_READS - 1):
        try:
            return as_path(path).read_bytes()
        except OSError as err:
            if err.errno != errno.EBUSY:
                raise
    return as_path(path).read_bytes()


def read_text(path: str | os.PathLike) -> str:
    """`read_bytes`, decoded as UTF-8."""
    return read_bytes(path).decode()


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
    import pyarrow.parquet as pq

    if is_remote(path):  # small files that a writer may be replacing (metrics, leaderboards): read whole
        return pq.read_table(io.BytesIO(read_bytes(path))).to_pandas()
    with open_parquet(path) as source:  # closes the file handle
        return source.read().to_pandas()


def save_figure(fig, path: str | os.PathLike, **kwargs) -> None:
    """matplotlib savefig to any path (PNG)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", **kwargs)
    write_bytes_atomic(path, buffer.getvalue())


# Variables a sweep or scoring run forwards to its Ray jobs and actors so they reach the same storage as
# the driver: endpoints (emulators, S3-compatible stores), project and region, and AWS credentials given
# in the driver's environment (a profile, keys); a node's own instance role or service account needs none.
STORAGE_ENV_VARS = ("STORAGE_EMULATOR_HOST", "TENSORSTORE_GCS_HTTP_URL", "GOOGLE_CLOUD_PROJECT",
                    "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE",
                    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SHARED_CREDENTIALS_FILE",
                    "AWS_CONFIG_FILE")


def storage_env() -> dict[str, str]:
    return {k: os.environ[k] for k in STORAGE_ENV_VARS if k in os.environ}


# --------------------------------------------------------------------------------------- storage faults

FULL_ERRNOS = (28, 122)  # ENOSPC, EDQUOT
_FULL_TEXT = ("no space left on device", "disk quota exceeded", "resource_exhausted", "quotaexceeded",
              "quota exceeded", "insufficient storage")
_REFUSED_TEXT = ("accessdenied", "access denied", "forbidden", "403", "permission denied", "not authorized")
_CREDENTIAL_TEXT = ("invalidaccesskeyid", "signaturedoesnotmatch", "invalidclienttokenid", "expiredtoken",
                    "access key id", "signature we calculated", "invalid_grant", "unauthorized", "401",
                    "the security token", "credentials")


def _chain(err: BaseException):
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def storage_fault(err: BaseException) -> str | None:
    """'full' (no space, a quota), 'refused' (a write the store does not allow) or None, for an exception and
    the errors it was raised from."""
    for cause in _chain(err):
        text = f"{type(cause).__name__} {cause}".lower()
        if (isinstance(cause, OSError) and cause.errno in FULL_ERRNOS) or any(t in text for t in _FULL_TEXT):
            return "full"
        if isinstance(cause, PermissionError) or any(t in text for t in _REFUSED_TEXT):
            return "refused"
    return None


def _failed_path(err: BaseException) -> str | None:
    return next((c.filename for c in _chain(err) if isinstance(c, OSError) and c.filename), None)


@contextlib.contextmanager
def writes_to(path, *, resumes: str = "it resumes where it stopped"):
    """Turn a full disk, a quota or a refused write under the block into one `StorageError` naming the path.

    `path` is the output the command writes (the error names the file that failed when it knows it).
    """
    try:
        yield
    except StorageError:
        raise
    except BaseException as err:
        fault = storage_fault(err)
        if fault is None:
            raise
        failed = _failed_path(err)
        where = f"{path}" + (f" ({failed})" if failed and failed != str(path) else "")
        if fault == "full":
            raise StorageError(f"{where}: no space left on the device holding it (or its quota is reached); free "
                               f"space and re-run the same command: {resumes}") from None
        reason = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
        raise StorageError(f"{where}: the storage refused a write ({reason}); fix its permissions or quota and re-run "
                           f"the same command: {resumes}") from None


@functools.cache
def check_access(url: str, write: bool = False) -> None:
    """Reach an object-store URL's bucket with the credentials in use (and write a probe object there when
    `write`) before a command starts; a missing bucket or refused credentials is one StorageError naming the
    bucket. Local paths and each (bucket, write) pair once per process are not checked again."""
    if not is_remote(url):
        return
    import fsspec

    protocol = str(url).split("://", 1)[0]
    _check_client(protocol)
    filesystem, target = fsspec.core.url_to_fs(str(url))
    bucket = target.split("/", 1)[0]
    name = f"{protocol}://{bucket}"
    try:
        filesystem.ls(bucket, detail=False, refresh=True)
        if write:
            probe = f"{target.rstrip('/')}/.tfbind-write-probe-{_writer_id()}"
            filesystem.pipe_file(probe, b"")
            filesystem.rm_file(probe)
    except FileNotFoundError:
        raise StorageError(f"{url}: the bucket {name} does not exist (or these credentials cannot see it)") from None
    except Exception as err:  # the clients raise their own error types; what matters is their message
        text = f"{type(err).__name__} {err}".lower()
        reason = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
        if any(t in text for t in _CREDENTIAL_TEXT):
            raise StorageError(f"{url}: {name} refused the credentials ({reason}); for s3:// set AWS_PROFILE or "
                               "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or use the node's instance role), for "
                               "gs:// GOOGLE_APPLICATION_CREDENTIALS") from None
        if any(t in text for t in _REFUSED_TEXT):
            raise StorageError(f"{url}: {name} refused access ({reason})") from None
        raise StorageError(f"{url}: cannot reach {name} ({reason})") from None
