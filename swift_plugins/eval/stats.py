"""Confidence intervals and paired tests for per-question scores, with images as clusters.

Questions that share an image are not independent (VQA-RAD, SLAKE and WSI ask several per
image), so every interval and test here treats the image as the unit of replication:

- accuracies (0/1 scores): the Agresti-Coull interval (the Wilson centre with a Wald width) on
  the design-effect-adjusted n (Kish's effective sample size, estimated from the image clusters,
  never above n). Unlike the percentile bootstrap it stays honest near 0% and 100% (the
  bootstrap's interval is "100.0 [100.0, 100.0]" whenever no error is resampled); unlike the
  plain Wilson interval it keeps 95% coverage there (Wilson covers 99.5% with 200 images 92% of
  the time, Agresti-Coull 98%);
- other scores (token recall, F1): a percentile bootstrap that resamples images;
- two arms on the same questions: an exact cluster sign-flip test (the randomization form of
  Durkalski et al. 2003's clustered McNemar test: under the null the two arms' labels are
  exchangeable within each image, so each image's net discordance flips sign), which is McNemar's
  exact test when every image has one question; the difference's interval combines the two
  arms' intervals with the between-arm correlation (MOVER, Zou & Donner 2008).

Values are in the units given (0/1 or a fraction); callers scale to points.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Mapping, Optional, Sequence

import numpy as np
from scipy import stats as sps
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

# Elements per bootstrap batch (resamples x clusters): bounds memory at ~30k clusters.
_BATCH_ELEMENTS = 4_000_000
AGRESTI_COULL = 'agresti_coull_deff'
MIN_MINORITY_CLUSTERS = 5
BOOTSTRAP = 'bootstrap'
METHODS = {
    AGRESTI_COULL: "Agresti-Coull interval on the design-effect-adjusted n (Kish's effective sample size, "
                   'images as clusters)',
    BOOTSTRAP: 'percentile bootstrap over images (questions resampled with their image)',
}
SIGN_FLIP = 'cluster_sign_flip'
MCNEMAR = 'mcnemar_exact'
TESTS = {
    SIGN_FLIP: 'exact cluster sign-flip test (clustered McNemar; images as clusters)',
    MCNEMAR: "McNemar's exact test (one question per image)",
}


@dataclass(frozen=True)
class Estimate:
    """A mean with its interval (nan where undefined); `method` is a key of METHODS."""
    mean: float
    low: float
    high: float
    n: int
    n_clusters: int
    level: float
    method: str = BOOTSTRAP
    n_effective: Optional[float] = None   # Agresti-Coull: the design-effect-adjusted n

    def as_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}


def _codes(clusters: Optional[Sequence], n: int) -> np.ndarray:
    """Cluster index 0..K-1 of each value; None makes every value its own cluster."""
    if clusters is None:
        return np.arange(n)
    if len(clusters) != n:
        raise ValueError(f'{len(clusters)} cluster labels for {n} values')
    if n == 0:
        return np.zeros(0, dtype=int)
    _, codes = np.unique(np.asarray(clusters, dtype=object).astype(str), return_inverse=True)
    return codes.reshape(-1)


def _is_binary(x: np.ndarray) -> bool:
    return bool(np.all((x == 0) | (x == 1)))


# ---------------------------------------------------------------------------- one arm

def effective_n(sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Kish's effective sample size n / deff of a clustered proportion, capped at n.

    `sums` and `counts` are per-cluster (last axis = clusters; leading axes are batched). The
    design effect is the linearized (ratio-estimator) variance over the simple-random-sampling
    one. At 0% or 100% the data carry no information on it, and the number of clusters is used
    (the most correlated case).
    """
    sums, counts = np.asarray(sums, float), np.asarray(counts, float)
    k = sums.shape[-1]
    n = counts.sum(-1)
    p = sums.sum(-1) / n
    resid = sums - p[..., None] * counts
    v = k / (k - 1) * (resid ** 2).sum(-1) / n ** 2
    with np.errstate(divide='ignore', invalid='ignore'):
        n_eff = np.minimum(np.where(v > 0, p * (1 - p) / v, n), n)
    # Clusters holding the rarer outcome (the errors, at high accuracy): with fewer than
    # MIN_MINORITY_CLUSTERS the between-image variance cannot be estimated.
    minority = np.where(p[..., None] >= 0.5, sums < counts, sums > 0).sum(-1)
    return np.where(minority < MIN_MINORITY_CLUSTERS, np.minimum(float(k), n), n_eff)


def proportion_arrays(sums: np.ndarray, counts: np.ndarray, level: float = 0.95):
    """(mean, low, high, n_eff) of per-cluster sums/counts; batched over leading axes."""
    sums, counts = np.asarray(sums, float), np.asarray(counts, float)
    n = counts.sum(-1)
    p = sums.sum(-1) / n
    n_eff = effective_n(sums, counts)
    low, high = proportion_confint(p * n_eff, n_eff, alpha=1 - level, method='agresti_coull')
    return p, np.asarray(low, float), np.asarray(high, float), n_eff


def proportion_ci(values: Sequence[float], clusters: Optional[Sequence] = None, *, level: float = 0.95) -> Estimate:
    """A proportion (0/1 values) with the Agresti-Coull interval on its design-effect-adjusted n."""
    v = np.asarray(values, dtype=float)
    n = int(v.size)
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0, 0, level, AGRESTI_COULL)
    if not _is_binary(v):
        raise ValueError('proportion_ci needs 0/1 values')
    codes = _codes(clusters, n)
    k = int(codes.max()) + 1
    if k < 2:
        return Estimate(float(v.mean()), math.nan, math.nan, n, k, level, AGRESTI_COULL)
    sums = np.bincount(codes, weights=v, minlength=k)
    counts = np.bincount(codes, minlength=k).astype(float)
    p, low, high, n_eff = proportion_arrays(sums, counts, level)
    return Estimate(float(p), float(low), float(high), n, k, level, AGRESTI_COULL, float(n_eff))


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
    codes = _codes(clusters, n)
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0, 0, level)
    n_clusters = int(codes.max()) + 1
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


def mean_ci(values: Sequence[float], clusters: Optional[Sequence] = None, *, binary: Optional[bool] = None,
            n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> Estimate:
    """Agresti-Coull (design-effect-adjusted) for 0/1 scores, the cluster bootstrap for the rest."""
    v = np.asarray(values, dtype=float)
    if binary is None:
        binary = _is_binary(v)
    if binary:
        return proportion_ci(v, clusters, level=level)
    return cluster_bootstrap_ci(v, clusters, n_boot=n_boot, level=level, seed=seed)


# ---------------------------------------------------------------------------- two arms

@lru_cache(maxsize=2048)
def _sign_flip_null(magnitudes: tuple[tuple[int, int], ...]) -> np.ndarray:
    """Null distribution of sum(s_k * d_k), s_k = +-1 fair coins, for |d_k| given as
    (magnitude, how many clusters) pairs; index i is the value i - sum(|d_k|)."""
    pmf = np.ones(1)
    for j, c in magnitudes:
        # c clusters of magnitude j contribute j * (2 * Binomial(c, 1/2) - c): support step 2j.
        part = np.zeros(2 * j * c + 1)
        part[::2 * j] = sps.binom.pmf(np.arange(c + 1), c, 0.5)
        pmf = np.convolve(pmf, part)
    return pmf


def sign_flip_p(d: Sequence[float]) -> float:
    """Exact two-sided p of the cluster sign-flip test on integer per-cluster net discordances.

    `d[k]` = (questions of cluster k only arm B got right) - (those only arm A got right). Under
    the null each d[k] is as likely negated; p = P(|sum of flipped d| >= |sum d|), computed by
    convolution. With one question per cluster this is McNemar's exact test.
    """
    d = np.asarray(d)
    if d.size and not np.all(d == np.round(d)):
        raise ValueError('sign_flip_p needs integer discordances')
    d = d.astype(np.int64)
    t = abs(int(d.sum()))
    mags, counts = np.unique(np.abs(d[d != 0]), return_counts=True)
    if t == 0 or mags.size == 0:
        return 1.0
    pmf = _sign_flip_null(tuple(zip(mags.tolist(), counts.tolist())))
    total = (len(pmf) - 1) // 2
    values = np.abs(np.arange(len(pmf)) - total)
    return float(min(1.0, pmf[values >= t].sum()))


def mover_diff_ci(sums_a: np.ndarray, sums_b: np.ndarray, counts: np.ndarray, level: float = 0.95
                  ) -> tuple[float, float]:
    """Interval for p_B - p_A on paired clustered 0/1 data: each arm's Agresti-Coull (deff) limits
    combined with the correlation of the two estimates (the method of variance estimates recovery)."""
    pa, la, ua, _ = proportion_arrays(sums_a, counts, level)
    pb, lb, ub, _ = proportion_arrays(sums_b, counts, level)
    ea, eb = sums_a - pa * counts, sums_b - pb * counts
    den = math.sqrt(float((ea ** 2).sum() * (eb ** 2).sum()))
    r = float((ea * eb).sum()) / den if den > 0 else 0.0
    diff = pb - pa
    low = diff - math.sqrt(max(0.0, (pb - lb) ** 2 - 2 * r * (pb - lb) * (ua - pa) + (ua - pa) ** 2))
    high = diff + math.sqrt(max(0.0, (ub - pb) ** 2 - 2 * r * (ub - pb) * (pa - la) + (pa - la) ** 2))
    return max(-1.0, float(low)), min(1.0, float(high))


@dataclass(frozen=True)
class PairedComparison:
    """Arm B against arm A on the same questions. `diff` = mean(B) - mean(A).

    For 0/1 scores: `table` is [[both right, A right only], [B right only, both wrong]], `p_value`
    the test named by `test` (a key of TESTS) and the interval MOVER's; for other scores the
    interval is the paired image bootstrap's and there is no test.
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
    test: Optional[str] = None
    ci_method: str = BOOTSTRAP

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


def clustered_paired_test(a: Sequence[bool], b: Sequence[bool], clusters: Optional[Sequence] = None
                          ) -> tuple[list[list[int]], float, str]:
    """(2x2 table, p, test key): the cluster sign-flip test, or McNemar's where clusters are single questions."""
    a = np.asarray(a, dtype=bool)
    b = np.asarray(b, dtype=bool)
    codes = _codes(clusters, a.size)
    if a.size == 0 or np.bincount(codes).max() == 1:
        table, p = mcnemar_exact(a, b)
        return table, p, MCNEMAR
    table, _ = mcnemar_exact(a, b)
    d = np.bincount(codes, weights=(b & ~a).astype(float) - (a & ~b).astype(float))
    return table, sign_flip_p(np.round(d)), SIGN_FLIP


def compare_paired(a: Mapping[str, float], b: Mapping[str, float], clusters: Optional[Mapping[str, str]] = None,
                   *, intersect: bool = False, a_name: str = 'A', b_name: str = 'B', n_boot: int = 2000,
                   level: float = 0.95, seed: int = 0) -> PairedComparison:
    """Compare two arms' per-question scores keyed by question id.

    The arms must cover the same ids (a ValueError says how many are missing on each side)
    unless `intersect`, which compares the shared ids and reports how many were dropped.
    `clusters` maps id -> cluster (image key); without it every question is its own cluster.
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
    labels = [clusters[i] for i in ids] if clusters is not None else None
    codes = _codes(labels, len(ids))
    k = int(codes.max()) + 1 if ids else 0
    common = dict(a_name=a_name, b_name=b_name, n=len(ids), n_clusters=k, level=level,
                  mean_a=float(va.mean()) if ids else math.nan, mean_b=float(vb.mean()) if ids else math.nan,
                  only_in_a=len(only_a), only_in_b=len(only_b))
    if ids and _is_binary(va) and _is_binary(vb):
        table, p, test = clustered_paired_test(va.astype(bool), vb.astype(bool), labels)
        low = high = math.nan
        if k >= 2:
            counts = np.bincount(codes, minlength=k).astype(float)
            low, high = mover_diff_ci(np.bincount(codes, weights=va, minlength=k),
                                      np.bincount(codes, weights=vb, minlength=k), counts, level)
        return PairedComparison(**common, diff=float(vb.mean() - va.mean()), low=low, high=high, table=table,
                                p_value=p, test=test, ci_method='mover_agresti_coull_deff')
    est = cluster_bootstrap_ci(vb - va, labels, n_boot=n_boot, level=level, seed=seed)
    return PairedComparison(**common, diff=est.mean, low=est.low, high=est.high, table=None, p_value=None)


def holm(p_values: Sequence[float], alpha: float = 0.05) -> tuple[list[bool], list[float]]:
    """Holm's step-down correction for a family of tests: (reject at `alpha`, adjusted p values)."""
    if len(p_values) == 0:
        return [], []
    reject, adjusted, _, _ = multipletests(list(p_values), alpha=alpha, method='holm')
    return [bool(r) for r in reject], [float(p) for p in adjusted]
