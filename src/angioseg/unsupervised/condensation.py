"""Diffusion condensation (Brugnone et al. 2019; Kuchroo et al. 2022 "CATCH"), written from the formulas.

Points are pulled together by diffusion on a kernel whose bandwidth grows every round; points that
come closer than a small threshold merge. Recording who belongs to whom after every round gives a
hierarchy of clusterings from ``n`` clusters down to one. Steps, with the defaults of CATCH as
CUTS-2022 used it (``knn = 30`` on pixels; see the notes on landmarks below):

0. rows are L2-normalised (done by the caller, :mod:`angioseg.unsupervised.landmarks`);
1. one diffusion on the α-decaying kNN kernel (α = 40) for ``t`` = the knee of the von Neumann
   entropy (``t_max = 50``);
2. ``merge_threshold`` = the 1e-4-th percentile of all pairwise distances of the condensed points,
   plus 1e-7; connected groups of points closer than it merge into their mass-weighted mean;
3. ``ε₀ = granularity · 0.1 · std(X) / n^(−1/5)`` (as CATCH writes it: divided by ``n^(−1/5)``);
4. every round: ``ε ← 1.025 ε``; fixed-bandwidth kernel (α = 40) weighted by cluster mass;
   ``t`` by the entropy knee; ``X ← Pᵗ X``; merge; record the labels;
5. levels: one representative round per *stable plateau* of the cluster count (a run of at least
   ``min_plateau`` rounds without a merge), finest first; the trivial all-singletons plateau before
   the first merge and the final single cluster are not levels.

Points carry masses (the number of pixels a landmark stands for); the kernel is weighted by mass
from the first step, so a landmark of mass ``w`` diffuses like ``w`` coincident pixels. A merged
cluster keeps the label of its heaviest member, so a label names "the same region" across rounds
(what the persistent-structure map needs).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components
from scipy.spatial.distance import pdist

from angioseg.unsupervised.diffusion import (
    alpha_decay_kernel,
    diffuse,
    diffusion_operator,
    distances,
    fixed_kernel,
    vne_time,
)


@dataclass
class CondensationConfig:
    knn: int = 5
    decay: float = 40.0
    t_max: int = 50
    merge_percentile: float = 1e-4
    eps_growth: float = 1.025
    granularity: float = 1.0
    min_plateau: int = 2
    max_rounds: int = 3000


@dataclass
class Condensation:
    """The hierarchy: ``labels[r]`` (N ints) are the cluster labels after round ``r`` (round 0 = input).

    ``levels`` are the selected rounds (finest first), ``plateau_lengths`` how many rounds each
    level's cluster count lasted, ``counts[r]`` the number of clusters after round ``r``.
    """

    labels: np.ndarray
    counts: np.ndarray
    levels: list[int]
    plateau_lengths: list[int]

    def level_labels(self) -> np.ndarray:
        """``L x N`` labels of the selected levels (finest first)."""
        return self.labels[self.levels] if self.levels else self.labels[-1:]


def merge_close(
    x: np.ndarray, mass: np.ndarray, ids: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Merge connected groups of points closer than ``threshold``.

    Returns ``(x', mass', ids', group)``: mass-weighted means, summed masses, the id of each group's
    heaviest member (ties: smallest id), and the group index of every input point.
    """
    n = len(x)
    if n < 2:
        return x, mass, ids, np.zeros(n, np.int64)
    d = distances(x)
    adj = sparse.csr_matrix(d < threshold)
    ngroups, group = connected_components(adj, directed=False)
    if ngroups == n:
        return x, mass, ids, np.arange(n)
    new_mass = np.bincount(group, weights=mass, minlength=ngroups)
    new_x = np.zeros((ngroups, x.shape[1]))
    np.add.at(new_x, group, x * mass[:, None])
    new_x /= new_mass[:, None]
    # Heaviest member first, then smallest id: lexsort sorts by the last key first.
    order = np.lexsort((ids, -mass, group))
    first = np.ones(n, bool)
    first[1:] = group[order][1:] != group[order][:-1]
    new_ids = np.empty(ngroups, ids.dtype)
    new_ids[group[order][first]] = ids[order][first]
    return new_x, new_mass, new_ids, group


def select_levels(counts: np.ndarray, n_points: int, min_plateau: int = 2) -> tuple[list[int], list[int]]:
    """One round per stable plateau of ``counts`` (at least ``min_plateau`` equal counts in a row).

    The representative is the plateau's last round. Plateaus at ``n_points`` (nothing merged yet)
    and at one cluster are skipped.
    """
    levels, lengths = [], []
    start = 0
    for r in range(1, len(counts) + 1):
        if r == len(counts) or counts[r] != counts[start]:
            length = r - start
            c = int(counts[start])
            if length >= min_plateau and 1 < c < n_points:
                levels.append(r - 1)
                lengths.append(length)
            start = r
    return levels, lengths


def condense(
    x: np.ndarray, mass: np.ndarray | None = None, cfg: CondensationConfig | None = None
) -> Condensation:
    """Run diffusion condensation on ``x`` (``n x d``) with optional point masses (``n``)."""
    cfg = cfg or CondensationConfig()
    x = np.asarray(x, np.float64)
    n = len(x)
    w = np.ones(n) if mass is None else np.asarray(mass, np.float64)
    if n == 0:
        raise ValueError("condensation needs at least one point")
    ids = np.arange(n)
    owner = np.arange(n)  # current point index of every input point
    history = [ids[owner].copy()]

    def record(group: np.ndarray) -> None:
        nonlocal owner
        owner = group[owner]
        history.append(ids[owner].copy())

    if n > 1:
        kern = alpha_decay_kernel(distances(x), cfg.knn, cfg.decay)
        x = diffuse(x, diffusion_operator(kern, w), vne_time(kern, w, cfg.t_max))
        threshold = float(np.percentile(pdist(x), cfg.merge_percentile)) + 1e-7
        x, w, ids, group = merge_close(x, w, ids, threshold)
        record(group)
        eps = cfg.granularity * 0.1 * float(np.std(x)) / len(x) ** (-1 / 5)
        eps = max(eps, 1e-12)
        rounds = 0
        while len(x) > 1 and rounds < cfg.max_rounds:
            rounds += 1
            eps *= cfg.eps_growth
            kern = fixed_kernel(distances(x), eps, cfg.decay)
            if np.count_nonzero(kern) > len(x):  # some point has a neighbour: diffuse
                x = diffuse(x, diffusion_operator(kern, w), vne_time(kern, w, cfg.t_max))
                x, w, ids, group = merge_close(x, w, ids, threshold)
            else:
                group = np.arange(len(x))
            record(group)
    labels = np.stack(history)
    counts = np.array([len(np.unique(r)) for r in labels])
    levels, lengths = select_levels(counts, n, cfg.min_plateau)
    return Condensation(labels, counts, levels, lengths)
