"""Published validation auROCs that runs are compared against (SPEC.md: chapter 3 and Tang et al. 2024)."""
from __future__ import annotations

# Best validation auROC of the chapter's conv_v2, 1,000 steps (None: not printed in the chapter).
CHAPTER_CONV_V2 = {"ATF2": 0.985, "CTCF": 0.980, "SRF": 0.850, "ARID3": 0.769, "BACH1": 0.767, "ZNF24": 0.762}

# One-hot CNN auROC range reported by Tang et al. 2024 (figure 3), as (low, high).
PAPER_RANGE = {
    "ATF2": (0.95, 1.0), "CTCF": (0.95, 1.0),
    "REST": (0.83, 0.85), "MAX": (0.83, 0.85), "ELK1": (0.83, 0.85),
    "ARID3": (0.75, 0.80), "BACH1": (0.75, 0.80), "ZNF24": (0.75, 0.80), "GABPA": (0.75, 0.80),
}

# ZNF24 ablations, best validation auROC (chapter figure 3-20).
CHAPTER_ZNF24_ABLATIONS = {
    "add_two_transformer_block": 0.770, "add_one_transformer_block": 0.769, "baseline": 0.756,
    "remove_MLP": 0.752, "single_conv_only": 0.720, "fewer_conv_channels": 0.698,
}


def reference_text(tf: str, model: str) -> str:
    """Short human-readable reference for a (TF, model) pair, e.g. 'chapter 0.980; paper 0.95-1.00'."""
    parts = []
    if tf == "ZNF24" and model in CHAPTER_ZNF24_ABLATIONS:
        parts.append(f"chapter {CHAPTER_ZNF24_ABLATIONS[model]:.3f}")
    elif tf in CHAPTER_CONV_V2:
        parts.append(f"chapter {CHAPTER_CONV_V2[tf]:.3f}")
    if tf in PAPER_RANGE:
        low, high = PAPER_RANGE[tf]
        parts.append(f"paper {low:.2f}-{high:.2f}")
    return "; ".join(parts) or "-"
