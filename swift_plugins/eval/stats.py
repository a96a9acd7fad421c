"""Confidence intervals and paired tests for per-question scores.

Questions that share an image are not independent (VQA-RAD and SLAKE ask several per image), so
intervals come from a bootstrap that resamples images, not questions. Values are in the units
given (0/1 or a fraction); callers scale to points.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Mapping, Optional, Sequence

import numpy as np
from scipy import stats as sps
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests

# Elements per bootstrap batch (resamples x clusters): bounds memory at ~30k clusters.
_BATCH_ELEMENTS = 4_000_000


@dataclass(frozen=True)
class Estimate:
    """A mean with its cluster-bootstrap percentile interval (nan where undefined)."""
    mean: float
    low: float
    high: float
    n: int
    n_clusters: int
    level: float

    def as_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}


def _ratio(sums, counts, axis=-1):
    return sums.sum(axis=axis) / counts.sum(axis=axis)


def cluster_bootstrap_ci(values: Sequence[float], clusters: Optional[Sequence] = None, *, n_boot: int = 2000,
                         level: float = 0.95, seed: int = 0) -> Estimate:
    """Mean of `values` with a percentile CI from resampling whole clusters with replacement.

    `clusters` labels each value's cluster (e.g. its image key); None makes every value its own
    cluster (the ordinary bootstrap). The statistic is the mean over the resampled rows, so
    large clusters weigh as much as their rows, as in the point estimate.
    """
    v = np.asarray(values, dtype=float)
    n = int(v.size)
    if clusters is None:
        codes = np.arange(n)
    else:
        if len(clusters) != n:
            raise ValueError(f'{len(clusters)} cluster labels for {n} values')
        _, codes = np.unique(np.asarray(clusters, dtype=object).astype(str), return_inverse=True)
    n_clusters = int(codes.max()) + 1 if n else 0
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0, 0, level)
    mean = float(v.mean())
    if n_clusters < 2:
        return Estimate(mean, math.nan, math.nan, n, n_clusters, level)
    # Reduce to per-cluster (sum, count): resampling clusters is then scipy's paired bootstrap.
    sums = np.bincount(codes, weights=v, minlength=n_clusters)
    counts = np.bincount(codes, minlength=n_clusters).astype(float)
    res = sps.bootstrap((sums, counts), _ratio, paired=True, vectorized=True, n_resamples=n_boot,
                        confidence_level=level, method='percentile', rng=np.random.default_rng(seed),
                        batch=max(1, _BATCH_ELEMENTS // n_clusters))
    ci = res.confidence_interval
    return Estimate(mean, float(ci.low), float(ci.high), n, n_clusters, level)


@dataclass(frozen=True)
class PairedComparison:
    """Arm B against arm A on the same questions. `diff` = mean(B) - mean(A), CI paired by cluster.

    `table` is [[both right, A right only], [B right only, both wrong]] and `p_value` McNemar's
    exact test on it; both are None for non-binary scores (e.g. token recall).
    """
    a_name: str
    b_name: str
    n: int
    n_clusters: int
    mean_a: float
    mean_b: float
    diff: float
    low: float
    high: float
    level: float
    table: Optional[list[list[int]]]
    p_value: Optional[float]
    # Ids present in one arm only (0 unless `intersect=True`, which drops them).
    only_in_a: int
    only_in_b: int

    def as_dict(self, scale: float = 1.0) -> dict:
        """JSON-ready; `scale=100` reports means, difference and CI in points."""
        d = asdict(self)
        for k in ('mean_a', 'mean_b', 'diff', 'low', 'high'):
            d[k] = None if math.isnan(d[k]) else d[k] * scale
        return d


def mcnemar_exact(a: Sequence[bool], b: Sequence[bool]) -> tuple[list[list[int]], float]:
    """The paired 2x2 table of two arms' right/wrong outcomes and McNemar's exact two-sided p."""
    a = np.asarray(a, dtype=bool)
    b = np.asarray(b, dtype=bool)
    table = [[int(np.sum(a & b)), int(np.sum(a & ~b))], [int(np.sum(~a & b)), int(np.sum(~a & ~b))]]
    return table, float(mcnemar(table, exact=True).pvalue)


def _is_binary(x: np.ndarray) -> bool:
    return bool(np.all((x == 0) | (x == 1)))


def compare_paired(a: Mapping[str, float], b: Mapping[str, float], clusters: Optional[Mapping[str, str]] = None,
                   *, intersect: bool = False, a_name: str = 'A', b_name: str = 'B', n_boot: int = 2000,
                   level: float = 0.95, seed: int = 0) -> PairedComparison:
    """Compare two arms' per-question scores keyed by question id.

    The arms must cover the same ids (a ValueError says how many are missing on each side)
    unless `intersect`, which compares the shared ids and reports how many were dropped.
    `clusters` maps id -> cluster (image key) for the paired bootstrap of the difference.
    McNemar's test takes questions as independent; with many questions per image its p value is
    optimistic, and the clustered CI of the difference is the robust evidence.
    """
    only_a = sorted(set(a) - set(b))
    only_b = sorted(set(b) - set(a))
    if (only_a or only_b) and not intersect:
        raise ValueError(f'arms {a_name!r} and {b_name!r} cover different questions: {len(only_a)} only in '
                         f'{a_name!r} (e.g. {only_a[:3]}), {len(only_b)} only in {b_name!r} (e.g. {only_b[:3]}); '
                         'pass intersect=True to compare the shared ones')
    ids = sorted(set(a) & set(b))
    if clusters is not None:
        missing = [i for i in ids if i not in clusters]
        if missing:
            raise ValueError(f'{len(missing)} compared ids have no cluster (e.g. {missing[:3]})')
    va = np.array([float(a[i]) for i in ids])
    vb = np.array([float(b[i]) for i in ids])
    table = p = None
    if ids and _is_binary(va) and _is_binary(vb):
        table, p = mcnemar_exact(va.astype(bool), vb.astype(bool))
    est = cluster_bootstrap_ci(vb - va, [clusters[i] for i in ids] if clusters is not None else None,
                               n_boot=n_boot, level=level, seed=seed)
    return PairedComparison(
        a_name=a_name, b_name=b_name, n=len(ids), n_clusters=est.n_clusters,
        mean_a=float(va.mean()) if ids else math.nan, mean_b=float(vb.mean()) if ids else math.nan,
        diff=est.mean, low=est.low, high=est.high, level=level, table=table, p_value=p,
        only_in_a=len(only_a), only_in_b=len(only_b))


def holm(p_values: Sequence[float], alpha: float = 0.05) -> tuple[list[bool], list[float]]:
    """Holm's step-down correction for a family of tests: (reject at `alpha`, adjusted p values)."""
    if len(p_values) == 0:
        return [], []
    reject, adjusted, _, _ = multipletests(list(p_values), alpha=alpha, method='holm')
    return [bool(r) for r in reject], [float(p) for p in adjusted]
