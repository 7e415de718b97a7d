"""Readable summaries of ISM maps: top mutations and the chapter's describe_change text."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

BASES = "ACGT"


class Mutation(NamedTuple):
    position: int
    ref: str
    alt: str
    delta: float


def top_mutations(delta: np.ndarray, sequence: str, k: int = 5, increasing: bool = True) -> list[Mutation]:
    """The k substitutions that raise (or lower) the output most, from one (L, 4) ISM map."""
    delta = np.asarray(delta)
    flat = delta.reshape(-1)
    order = np.argsort(-flat if increasing else flat, kind="stable")[:k]
    return [Mutation(int(i // 4), sequence[i // 4], BASES[i % 4], float(flat[i])) for i in order]


def describe_change(mutation: Mutation, reference: float) -> str:
    """'position 100 with G→A (-4.20% decrease)': the change relative to the unmutated prediction."""
    percent = 100.0 * mutation.delta / reference if reference else float("inf")
    direction = "increase" if mutation.delta > 0 else "decrease"
    return f"position {mutation.position} with {mutation.ref}→{mutation.alt} ({percent:+.2f}% {direction})"
