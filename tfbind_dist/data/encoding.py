"""DNA sequences as uint8 base codes and one-hot arrays.

Sequences travel as uint8 codes (A=0, C=1, G=2, T=3, N=4; IUPAC ambiguity codes are N): four times smaller than
float one-hot and cheap to ship to devices, where `one_hot` expands them.
Whole buffers are encoded at once through a 256-entry byte lookup table, so
encoding costs one numpy gather per batch instead of a Python call per base.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from tfbind_dist.errors import SequenceError
from tfbind_dist.registry import N_POLICIES

ALPHABET = "ACGT"
N_CODE = 4
INVALID = 255

IUPAC_AMBIGUITY = "RYKMSWBDHV"  # read as N at every entry point (FASTA genomes carry them)

_LUT = np.full(256, INVALID, dtype=np.uint8)
for _code, _base in enumerate("ACGTN"):
    _LUT[ord(_base)] = _code
    _LUT[ord(_base.lower())] = _code
for _base in IUPAC_AMBIGUITY:
    _LUT[ord(_base)] = _LUT[ord(_base.lower())] = N_CODE
ALLOWED = "ACGTN and IUPAC ambiguity codes (read as N), any case"
_DECODE = np.frombuffer(b"ACGTN", dtype=np.uint8)
_COMPLEMENT = np.array([3, 2, 1, 0, 4], dtype=np.uint8)


def _raise_invalid(codes: np.ndarray, raw: np.ndarray, names: Sequence[str] | None) -> None:
    row, pos = np.argwhere(codes == INVALID)[0]
    char = chr(raw[row, pos])
    where = names[row] if names is not None else f"row {row}"
    raise SequenceError(f"{where}: invalid base {char!r} at position {pos} (allowed: {ALLOWED})")


def encode(
    sequences: Sequence[str],
    *,
    n_policy: str = "uniform",
    names: Sequence[str] | None = None,
) -> np.ndarray:
    """Encode equal-length DNA strings into a (N, L) uint8 code array.

    Parameters
    ----------
    sequences : sequence of str
        DNA strings, all of one length; lowercase is accepted.
    n_policy : str
        What N means downstream (see `one_hot_table`); with "error", an N raises.
    names : sequence of str, optional
        Record names used in error messages (e.g. "file.csv row 12").
    """
    if len(sequences) == 0:
        return np.zeros((0, 0), dtype=np.uint8)
    length = len(sequences[0])
    lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
    if (lengths != length).any():
        row = int(np.argmax(lengths != length))
        where = names[row] if names is not None else f"row {row}"
        raise SequenceError(f"{where}: length {lengths[row]} differs from the first sequence's {length}")
    try:
        buffer = "".join(sequences).encode("ascii")
    except UnicodeEncodeError as err:
        flat = err.start
        where = names[flat // length] if names is not None else f"row {flat // length}"
        raise SequenceError(f"{where}: invalid character at position {flat % length}") from None
    raw = np.frombuffer(buffer, dtype=np.uint8).reshape(len(sequences), length)
    return encode_bytes(raw, n_policy=n_policy, names=names)


def encode_bytes(raw: np.ndarray, *, n_policy: str = "uniform", names: Sequence[str] | None = None) -> np.ndarray:
    """Encode an (N, L) uint8 array of ASCII bytes into base codes."""
    codes = _LUT[raw]
    if (codes == INVALID).any():
        _raise_invalid(codes, raw, names)
    if n_policy == "error" and (codes == N_CODE).any():
        row, pos = np.argwhere(codes == N_CODE)[0]
        where = names[row] if names is not None else f"row {row}"
        raise SequenceError(f"{where}: N at position {pos} and n_policy is 'error'")
    return codes


def decode(codes: np.ndarray) -> list[str]:
    """Turn (N, L) uint8 codes back into strings."""
    codes = np.atleast_2d(codes)
    raw = _DECODE[codes]
    return [row.tobytes().decode("ascii") for row in raw]


def reverse_complement(codes: np.ndarray) -> np.ndarray:
    """Reverse complement of (..., L) codes; N stays N."""
    return _COMPLEMENT[codes][..., ::-1]


def one_hot_table(n_policy: str = "uniform") -> np.ndarray:
    """(5, 4) float32 rows for codes A, C, G, T, N.

    N policies: "uniform" (0.25 each, the expectation of an unknown base; default),
    "zeros" (no evidence), "ones" (the tutorial's (1, 1, 1, 1)), "error" (N is rejected
    at encoding time; its row is zeros).
    """
    if n_policy not in N_POLICIES:
        raise ValueError(f"n_policy must be one of {N_POLICIES}, got {n_policy!r}")
    n_row = {"uniform": 0.25, "zeros": 0.0, "ones": 1.0, "error": 0.0}[n_policy]
    table = np.zeros((5, 4), dtype=np.float32)
    table[np.arange(4), np.arange(4)] = 1.0
    table[4] = n_row
    return table


def one_hot(codes, n_policy: str = "uniform", dtype=None):
    """One-hot of codes, (..., L) -> (..., L, 4); works on numpy and jax arrays."""
    table = one_hot_table(n_policy)
    if isinstance(codes, np.ndarray):
        out = table[codes]
        return out if dtype is None else out.astype(dtype)
    import jax.numpy as jnp

    return jnp.asarray(table, dtype=dtype or jnp.float32)[codes]
