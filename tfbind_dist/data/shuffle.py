"""Dinucleotide-preserving shuffles of base codes: DeepLIFT/SHAP references and shuffled negatives."""
from __future__ import annotations

import numpy as np


def dinucleotide_shuffle(codes: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` shuffles of one sequence of codes (L,) that keep every dinucleotide count (Altschul & Erickson).

    A random Eulerian path through the sequence's dinucleotide graph: each letter's outgoing edges
    are shuffled, except that every letter's last exit is drawn from a random spanning arborescence
    towards the sequence's last letter, which makes every such walk use all edges.
    """
    codes = np.asarray(codes)
    length = len(codes)
    out = np.empty((n, length), codes.dtype)
    if length < 3:
        out[:] = codes
        return out
    letters = np.unique(codes)
    edges = {a: codes[1:][codes[:-1] == a].tolist() for a in letters}
    last = codes[-1]
    for k in range(n):
        while True:  # last exits: a random choice per letter, kept if they all lead to `last`
            last_exit = {a: rng.integers(len(edges[a])) for a in letters if a != last and edges[a]}
            if all(_reaches(a, last, {b: edges[b][i] for b, i in last_exit.items()}) for a in last_exit):
                break
        order = {}
        for a in letters:
            succ = list(edges[a])
            tail = [succ.pop(last_exit[a])] if a in last_exit else []
            rng.shuffle(succ)
            order[a] = succ + tail
        position = {a: 0 for a in letters}
        walk = [codes[0]]
        for _ in range(length - 1):
            a = walk[-1]
            walk.append(order[a][position[a]])
            position[a] += 1
        out[k] = walk
    return out


def _reaches(start, target, step) -> bool:
    seen, node = set(), start
    while node != target:
        if node in seen or node not in step:
            return False
        seen.add(node)
        node = step[node]
    return True


__all__ = ["dinucleotide_shuffle"]
