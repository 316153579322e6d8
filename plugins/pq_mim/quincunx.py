"""Quincunx partition of a token grid into S stages (PQ-MIM Sec. 3.2, Fig. 4).

``S = 2L + 1``. Stage 1 is the lattice of step ``2**L``; then, for each level from coarse to
fine (step ``2**l``, half step ``2**(l-1)``), one stage adds the centres of the current
lattice's cells (a quincunx) and the next adds the remaining points of the half-step
lattice. Each stage after the second doubles the number of tokens: for S = 5 the fractions
are 1/16, 1/16, 1/8, 1/4, 1/2; S = 3 gives 1/4, 1/4, 1/2; S = 1 sends everything at once.
The partition depends only on the grid size, so it works for any (non-square) grid.
"""
from __future__ import annotations

import numpy as np


def stage_map(height: int, width: int, stages: int = 5) -> np.ndarray:
    """``(height, width)`` int array: the 0-based stage of every token."""
    if stages < 1 or stages % 2 == 0:
        raise ValueError(f"quincunx needs an odd number of stages, got {stages}")
    levels = (stages - 1) // 2
    i = np.arange(height)[:, None]
    j = np.arange(width)[None, :]
    out = np.full((height, width), -1, dtype=np.int64)
    out[(i % (1 << levels) == 0) & (j % (1 << levels) == 0)] = 0
    for n, level in enumerate(range(levels, 0, -1)):
        step, half = 1 << level, 1 << (level - 1)
        centre = (i % step == half) & (j % step == half)
        half_lattice = (i % half == 0) & (j % half == 0)
        out[centre & (out < 0)] = 1 + 2 * n
        out[half_lattice & (out < 0)] = 2 + 2 * n
    return out


def stage_positions(height: int, width: int, stages: int = 5) -> list[np.ndarray]:
    """Flat (row-major) token indices of each stage, in raster order."""
    flat = stage_map(height, width, stages).reshape(-1)
    return [np.flatnonzero(flat == s) for s in range(stages)]
