"""The chapter's sanity check of a trained model: its TF's motif tiled along a window (expect a high
prediction) against homopolymers and simple repeats (expect low)."""
from __future__ import annotations

CHAPTER_CTCF_MOTIF = "CCACCAGGGGGCGC"
LOW_COMPLEXITY = ("A", "C", "G", "T", "ACGTACGT", "TCGATCGT", "TATACGCG", "CAGGCAGG")


def _tile(unit: str, length: int) -> str:
    return (unit * (length // len(unit) + 1))[:length]


def sanity_sequences(tf: str, length: int) -> list[tuple[str, str, str]]:
    """(name, expectation, sequence) rows of the check for a model of `tf` on `length`-bp windows.

    CTCF uses the chapter's `"CCACCAGGGGGCGC" * 14 + "AAAA"`; other TFs the consensus of their
    JASPAR matrix, tiled with a 4-bp spacer.
    """
    if tf == "CTCF":
        motif = CHAPTER_CTCF_MOTIF
        filled = CHAPTER_CTCF_MOTIF * (length // len(motif)) + "A" * (length % len(motif))
    else:
        from tfbind_dist.data.jaspar import tf_probabilities

        motif = "".join("ACGT"[i] for i in tf_probabilities(tf).argmax(axis=1))
        filled = _tile(motif + "AAAA", length)
    rows = [(f"{tf} motif {motif} tiled", "high", filled)]
    rows += [(f"{unit} repeat" if len(unit) > 1 else f"poly-{unit}", "low", _tile(unit, length))
             for unit in LOW_COMPLEXITY]
    return rows
