"""File I/O for every part of tfbind_dist: local disk or object storage (gs://, s3://, ...), through etils.epath.

Every writer in the package goes through the `write_*_atomic` functions here: readers see the
old file or the whole new one, never a part, and a failed write leaves nothing behind.

orbax writes checkpoints to the same paths natively (gs:// through TensorStore). Small
files (config, summary, progress, metrics) are whole-object writes on object storage,
which readers see complete or not at all, and temp-file-plus-rename on local disk.
Object-store paths need the `cloud` extra (gcsfs / s3fs) and the usual credentials.
"""
from __future__ import annotations

import contextlib
import io
import os
import tempfile
from pathlib import Path
from typing import Union

# gs:// and s3:// through fsspec (gcsfs, s3fs): TensorFlow's gfile, which epath prefers when
# TF is installed, has no s3:// and ignores the storage emulators used in tests.
os.environ.setdefault("EPATH_USE_TF", "false")

from etils import epath  # noqa: E402

REMOTE_SCHEMES = ("gs://", "s3://", "az://", "hf://")
AnyPath = Union[Path, epath.Path]


def is_remote(path: str | os.PathLike) -> bool:
    return str(path).startswith(REMOTE_SCHEMES)


def as_path(path: str | os.PathLike) -> AnyPath:
    """A local absolute `pathlib.Path`, or an `epath.Path` for an object-store URL."""
    return epath.Path(str(path)) if is_remote(path) else Path(path).absolute()


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Readers see the old file or the whole new one, never a part."""
    path = as_path(path)
    if is_remote(path):
        path.write_bytes(data)  # one object upload: visible only once complete
        return
    with local_atomic_target(path) as tmp:
        tmp.write_bytes(data)


@contextlib.contextmanager
def local_atomic_target(path: str | os.PathLike):
    """A temp file beside local `path`, renamed onto it when the block succeeds and removed if it fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode())


def append_line(path: str | os.PathLike, line: str) -> None:
    """Append one line to a local log file in a single write (O_APPEND: lines from concurrent writers never interleave)."""
    if is_remote(path):
        raise ValueError(f"{path}: object storage has no append; write one object per record instead")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line.rstrip("\n") + "\n").encode())
    finally:
        os.close(fd)


def write_table_atomic(table, path: str | os.PathLike) -> None:
    """Write a pyarrow Table as Parquet (zstd): streamed to a temp file and renamed locally, one upload remotely."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if is_remote(path):
        buffer = pa.BufferOutputStream()
        pq.write_table(table, buffer, compression="zstd")
        write_bytes_atomic(path, buffer.getvalue().to_pybytes())
        return
    with local_atomic_target(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


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

    if not is_remote(path):
        return pq.read_table(path).to_pandas()
    with as_path(path).open("rb") as handle:
        return pq.read_table(handle).to_pandas()


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
