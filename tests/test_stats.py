"""Statistics: bootstrap coverage and clustering on simulated data, McNemar and Holm against the libraries."""
import math
import time

import numpy as np
import pytest
from scipy.stats import binomtest
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests

from swift_plugins.eval.stats import cluster_bootstrap_ci, compare_paired, holm, mcnemar_exact


def clustered_bernoulli(rng, n_images, per_image, p, rho):
    """Rows with marginal P(correct) = p and within-image correlation rho (beta-binomial)."""
    a, b = p * (1 - rho) / rho, (1 - p) * (1 - rho) / rho
    image_p = rng.beta(a, b, size=n_images)
    values = rng.random((n_images, per_image)) < image_p[:, None]
    return values.ravel().astype(float), np.repeat(np.arange(n_images), per_image)


def test_cluster_bootstrap_covers_known_proportion_at_nominal_rate():
    # 300 simulated test sets of 80 images x 4 questions, within-image correlation 0.5.
    rng = np.random.default_rng(2024)
    p, trials, clustered, naive = 0.7, 300, 0, 0
    for i in range(trials):
        values, clusters = clustered_bernoulli(rng, n_images=80, per_image=4, p=p, rho=0.5)
        est = cluster_bootstrap_ci(values, clusters, n_boot=400, seed=i)
        clustered += est.low <= p <= est.high
        est = cluster_bootstrap_ci(values, None, n_boot=400, seed=i)
        naive += est.low <= p <= est.high
    assert 0.90 <= clustered / trials <= 0.99, clustered / trials  # 0.94 with these seeds
    assert naive / trials < 0.87, naive / trials  # treating questions as independent: 0.82


def test_clustering_widens_the_ci_by_the_design_effect():
    rng = np.random.default_rng(7)
    values, clusters = clustered_bernoulli(rng, n_images=60, per_image=8, p=0.6, rho=0.6)
    clustered = cluster_bootstrap_ci(values, clusters, n_boot=1000)
    naive = cluster_bootstrap_ci(values, None, n_boot=1000)
    assert clustered.mean == naive.mean == pytest.approx(values.mean())
    assert (clustered.n, clustered.n_clusters, naive.n_clusters) == (480, 60, 480)
    # Design effect 1 + (8 - 1) * 0.6 = 5.2: the interval should be ~sqrt(5.2) = 2.3 times wider.
    ratio = (clustered.high - clustered.low) / (naive.high - naive.low)
    assert 1.7 < ratio < 3.0, ratio


def test_bootstrap_is_seeded_and_handles_degenerate_input():
    v, c = np.random.default_rng(0).random(40), np.arange(40) // 2
    assert cluster_bootstrap_ci(v, c, seed=3) == cluster_bootstrap_ci(v, c, seed=3)
    assert cluster_bootstrap_ci(v, c, seed=3).low != cluster_bootstrap_ci(v, c, seed=4).low
    empty = cluster_bootstrap_ci([], [])
    assert empty.n == 0 and math.isnan(empty.mean) and empty.as_dict()['mean'] is None
    one = cluster_bootstrap_ci([1, 0], ['x', 'x'])
    assert (one.mean, one.n_clusters) == (0.5, 1) and math.isnan(one.low)
    flat = cluster_bootstrap_ci([1.0] * 10, list('aabbccddee'), n_boot=100)
    assert (flat.low, flat.mean, flat.high) == (1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match='3 cluster labels for 2 values'):
        cluster_bootstrap_ci([1, 0], ['a', 'b', 'c'])


def test_bootstrap_is_fast_at_pathvqa_scale():
    rng = np.random.default_rng(0)
    values, clusters = clustered_bernoulli(rng, n_images=10_000, per_image=3, p=0.5, rho=0.2)
    start = time.perf_counter()
    est = cluster_bootstrap_ci(values, clusters, n_boot=2000)
    assert time.perf_counter() - start < 15
    assert est.n == 30_000 and est.low < 0.5 < est.high and est.high - est.low < 0.03


def test_mcnemar_matches_statsmodels_and_scipy_binomtest():
    # 30 questions both right, 12 only A right, 4 only B right, 9 both wrong.
    a = [1] * 30 + [1] * 12 + [0] * 4 + [0] * 9
    b = [1] * 30 + [0] * 12 + [1] * 4 + [0] * 9
    table, p = mcnemar_exact(np.array(a, bool), np.array(b, bool))
    assert table == [[30, 12], [4, 9]]
    assert p == pytest.approx(mcnemar(table, exact=True).pvalue)
    assert p == pytest.approx(binomtest(4, 16, 0.5).pvalue)
    assert p == pytest.approx(0.0768, abs=1e-4)


def test_compare_paired_difference_table_and_missing_ids():
    a = {f'q{i}': float(i < 40) for i in range(50)}   # 80%
    b = {f'q{i}': float(i < 25) for i in range(50)}   # 50%
    clusters = {f'q{i}': f'img{i // 2}' for i in range(50)}
    cmp = compare_paired(a, b, clusters, a_name='native/native', b_name='low/low', n_boot=500)
    assert (cmp.n, cmp.n_clusters, cmp.table) == (50, 25, [[25, 15], [0, 10]])
    assert cmp.diff == pytest.approx(-0.30) and cmp.low < -0.30 < cmp.high < 0
    assert cmp.p_value == pytest.approx(binomtest(0, 15, 0.5).pvalue)
    points = cmp.as_dict(scale=100)
    assert points['diff'] == pytest.approx(-30.0) and points['mean_a'] == pytest.approx(80.0)

    b_short = {k: v for k, v in b.items() if k not in ('q0', 'q1')} | {'extra': 1.0}
    with pytest.raises(ValueError, match=r"2 only in 'A' .* 1 only in 'B'"):
        compare_paired(a, b_short, None)
    partial = compare_paired(a, b_short, None, intersect=True, n_boot=200)
    assert (partial.n, partial.only_in_a, partial.only_in_b) == (48, 2, 1)

    recall = compare_paired({'x': 0.5, 'y': 1.0}, {'x': 0.25, 'y': 1.0}, n_boot=200)
    assert recall.p_value is None and recall.table is None and recall.diff == pytest.approx(-0.125)


def test_holm_matches_statsmodels():
    ps = [0.01, 0.04, 0.03, 0.5]
    reject, adjusted = holm(ps, alpha=0.05)
    assert adjusted == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert reject == [True, False, False, False]
    assert adjusted == pytest.approx(list(multipletests(ps, method='holm')[1]))
    assert holm([]) == ([], [])
