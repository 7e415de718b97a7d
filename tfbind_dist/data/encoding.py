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


def as_codes(sequences, *, length: int | None = None, n_policy: str = "uniform", names: Sequence[str] | None = None,
             trained_on: str = "the model") -> np.ndarray:
    """(N, L) uint8 codes of sequences given in any of the forms users hold them, checked.

    `sequences`: one string or a list of strings (any case; IUPAC ambiguity codes are N), an (N, L)
    integer array of codes (A=0, C=1, G=2, T=3, N=4), an (N, L, 4) one-hot array in A, C, G, T order
    (a row of four equal values, e.g. the uniform 0.25 or zeros, is N), numpy or JAX, or anything
    with `sequences` and `names` (what `read_sequences` returns). With `length`, every sequence must
    have it (`trained_on` names whose length it is in the message).

    Raises `SequenceError` naming the sequence (its name, else "sequence i") and the position: a bad
    character or code, a one-hot row that is neither a base nor N, a wrong length, no sequences at all.
    """
    if hasattr(sequences, "sequences") and hasattr(sequences, "names"):
        sequences, names = sequences.sequences, names or sequences.names
    if isinstance(sequences, str):
        sequences = [sequences]
    names = names if names is not None else _Numbered()
    where = names.__getitem__
    if isinstance(sequences, (list, tuple)) and (not sequences or isinstance(sequences[0], str)):
        if not sequences:
            raise SequenceError("no sequences given (an empty list)")
        codes = _string_codes(list(sequences), length, n_policy, names, where, trained_on)
    else:
        codes = _array_codes(np.asarray(sequences), n_policy, where)
        if not len(codes):
            raise SequenceError("no sequences given (an empty array)")
        if length is not None and codes.shape[1] != length:
            raise SequenceError(f"{where(0)}: length {codes.shape[1]}, but {trained_on} was trained on {length}-bp "
                                "sequences")
    return codes


class _Numbered:
    """Names for unnamed sequences in messages: "sequence 0", "sequence 1", ..."""

    def __getitem__(self, i) -> str:
        return f"sequence {int(i)}"


def _string_codes(sequences: list[str], length, n_policy, names, where, trained_on) -> np.ndarray:
    lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
    if not lengths.all():
        raise SequenceError(f"{where(int(np.argmin(lengths)))}: empty sequence")
    expected = lengths[0] if length is None else length
    if (lengths != expected).any():
        row = int(np.argmax(lengths != expected))
        if length is None:
            raise SequenceError(f"{where(row)}: length {lengths[row]} differs from the first sequence's {expected}")
        raise SequenceError(f"{where(row)}: length {lengths[row]}, but {trained_on} was trained on {length}-bp "
                            "sequences")
    return encode(sequences, n_policy=n_policy, names=names)


def _array_codes(array: np.ndarray, n_policy: str, where) -> np.ndarray:
    """Codes of an (N, L) code array or an (N, L, 4) one-hot array."""
    if array.ndim == 2 and np.issubdtype(array.dtype, np.integer):
        bad = (array < 0) | (array > N_CODE)
        if bad.any():
            row, pos = np.argwhere(bad)[0]
            raise SequenceError(f"{where(row)}: invalid base code {array[row, pos]} at position {pos} "
                                f"(codes are A=0, C=1, G=2, T=3, N=4)")
        codes = array.astype(np.uint8)
    elif array.ndim == 3 and array.shape[-1] == 4:
        values = array.astype(np.float64)
        base = (values == 1.0) & (values.sum(-1, keepdims=True) == 1.0)
        is_base = base.sum(-1) == 1
        is_n = (values == values[..., :1]).all(-1)
        if not (is_base | is_n).all():
            row, pos = np.argwhere(~(is_base | is_n))[0]
            raise SequenceError(f"{where(row)}: position {pos} is neither a base nor N in the one-hot input "
                                f"({values[row, pos].tolist()}; a base is one 1 and three 0s, N four equal values)")
        codes = np.where(is_base, base.argmax(-1), N_CODE).astype(np.uint8)
    else:
        raise SequenceError(f"sequences of shape {array.shape} and type {array.dtype}: give strings, (N, L) integer "
                            "base codes or an (N, L, 4) one-hot array")
    if n_policy == "error" and (codes == N_CODE).any():
        row, pos = np.argwhere(codes == N_CODE)[0]
        raise SequenceError(f"{where(row)}: N at position {pos} and n_policy is 'error'")
    return codes


def decode(codes: np.ndarray) -> list[str]:
    """Turn (N, L) uint8 codes back into strings."""
    codes = np.atleast_2d(codes)
    raw = _DECODE[codes]
    return [row.tobytes().decode("ascii") for row in raw]


def complement(codes):
    """Complement of base codes, numpy or JAX (on device, inside jit too); N stays N."""
    return _table(_COMPLEMENT, codes)[codes]


def reverse_complement(codes):
    """Reverse complement of (..., L) base codes, numpy or JAX (on device, inside jit too); N stays N."""
    return complement(codes)[..., ::-1]


def reverse_complement_one_hot(x):
    """Reverse complement of (..., L, 4) per-base values in A, C, G, T order (one-hot, attributions,
    probability matrices), numpy or JAX: reversed along the sequence, complemented along the bases."""
    return x[..., ::-1, ::-1]


def _table(table: np.ndarray, codes, dtype=None):
    """A lookup table on the side of `codes`: numpy for numpy codes, else a JAX array."""
    if isinstance(codes, np.ndarray):
        return table if dtype is None else table.astype(dtype)
    import jax.numpy as jnp

    return jnp.asarray(table, dtype=dtype)


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
    return _table(one_hot_table(n_policy), codes, dtype)[codes]
