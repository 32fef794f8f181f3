"""Dynamic time warping in numpy and the paper's DTW k-NN rank of the true user.

The dynamic programme runs over anti-diagonals: every cell of an anti-diagonal depends only
on the two before it, so one numpy step fills a whole anti-diagonal for every pair of series
at once (2W - 1 steps instead of W^2). A Sakoe-Chiba band of half-width ``band`` keeps only
the cells with |i - j| <= band, which is both the usual constraint for gait and a cut of the
cost from W^2 to about W (2 band + 1) cells a pair.
"""

from __future__ import annotations

import numpy as np


def dtw_pairs(a: np.ndarray, b: np.ndarray, band: int | None = None) -> np.ndarray:
    """DTW distance between a[p] and b[p] for every pair p: a, b [P, C, W] (or [P, W]).

    The local cost is the Euclidean distance between the C-channel samples; the distance is
    the smallest sum of local costs along a warping path from (0, 0) to (W-1, W-1) with steps
    (1, 0), (0, 1), (1, 1). ``band`` None is unconstrained.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim == 2:
        a, b = a[:, None, :], b[:, None, :]
    if a.shape != b.shape or a.ndim != 3:
        raise ValueError(f"expected two arrays [P, C, W] of the same shape, got {a.shape} and {b.shape}")
    p, _, n = a.shape
    if p == 0:
        return np.zeros(0)
    band = n if band is None else int(band)
    if band < 0:
        raise ValueError(f"band must be >= 0, got {band}")
    # Diagonal d holds the cells (i, d - i); diag[:, i + 1] is the cost of the best path to
    # cell i of it, and position 0 and every cell off the diagonal or the band stay inf.
    # Reversing b turns b[:, :, d - i] for a run of i into a plain slice.
    b_rev = np.ascontiguousarray(b[:, :, ::-1])
    # Three rotating diagonals; each remembers the cells it last wrote so that only those
    # are reset to inf (a fresh array per step costs more than the arithmetic).
    bufs = [np.full((p, n + 1), np.inf) for _ in range(3)]
    written = [(0, 0)] * 3
    for d in range(2 * n - 1):
        lo = max(0, d - n + 1, -((band - d) // 2))  # ceil((d - band) / 2)
        hi = min(d, n - 1, (d + band) // 2)
        cur, prev1, prev2 = bufs[d % 3], bufs[(d - 1) % 3], bufs[(d - 2) % 3]
        old_lo, old_hi = written[d % 3]
        cur[:, old_lo:old_hi] = np.inf
        if lo > hi:
            written[d % 3] = (0, 0)
            continue
        # j = d - i runs from d - lo down to d - hi: in b_rev that is n-1-d+lo .. n-1-d+hi.
        diff = a[:, :, lo:hi + 1] - b_rev[:, :, n - 1 - d + lo:n - d + hi]
        local = np.sqrt(np.einsum("pcw,pcw->pw", diff, diff))
        if d == 0:
            cur[:, 1] = local[:, 0]
        else:
            best = np.minimum(np.minimum(prev1[:, lo:hi + 1], prev1[:, lo + 1:hi + 2]), prev2[:, lo:hi + 1])
            cur[:, lo + 1:hi + 2] = local + best
        written[d % 3] = (lo + 1, hi + 2)
    return bufs[(2 * n - 2) % 3][:, n].copy()


def dtw_matrix(queries: np.ndarray, refs: np.ndarray, band: int | None = None,
               max_pairs: int = 512) -> np.ndarray:
    """DTW distances [Q, R] between every query [Q, C, W] and every reference [R, C, W],
    ``max_pairs`` pairs at a time to bound memory (a few rows of W+1 floats a pair)."""
    q, r = len(queries), len(refs)
    qi, ri = np.divmod(np.arange(q * r), r)
    out = np.empty(q * r)
    for s in range(0, q * r, max_pairs):
        sl = slice(s, s + max_pairs)
        out[sl] = dtw_pairs(queries[qi[sl]], refs[ri[sl]], band)
    return out.reshape(q, r)


def true_user_rank(distances: np.ndarray, query_users: np.ndarray, ref_users: np.ndarray) -> np.ndarray:
    """For each query row of ``distances`` [Q, R], the rank (1 = nearest) of its true user
    when the users are ordered by the DTW distance of their nearest reference window.

    1 means the nearest neighbour is the true user (identified); with U users a guess
    ranks (U + 1) / 2 on average. Ties count against the true user (the rank is the number
    of users at least as near, so equal distances never flatter the privacy).
    """
    users = np.unique(ref_users)
    missing = np.setdiff1d(np.unique(query_users), users)
    if missing.size:
        raise ValueError(f"users {missing.tolist()} have queries but no reference windows")
    per_user = np.stack([distances[:, ref_users == u].min(axis=1) for u in users], axis=1)  # [Q, U]
    own = per_user[np.arange(len(query_users)), np.searchsorted(users, query_users)]
    return np.sum(per_user <= own[:, None], axis=1)
