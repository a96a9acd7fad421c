"""Statistics on simulated data: interval coverage near 100% and in the middle, the clustered paired
test's type-I error with several questions per image, and the tests against the libraries."""
import itertools
import math
import time

import numpy as np
import pytest
from scipy.stats import binom, binomtest
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests

from swift_plugins.eval.stats import (
    cluster_bootstrap_ci,
    compare_paired,
    effective_n,
    holm,
    mcnemar_exact,
    mean_ci,
    mover_diff_ci,
    proportion_arrays,
    proportion_ci,
    sign_flip_p,
)
from swift_plugins.fixtures.clustered_outcomes import simulate


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
    # 15 discordant questions on 8 images (7 lost both, 1 lost one): only the 2 all-same-sign flips of
    # 2**8 are as extreme. McNemar, counting questions as independent, would say 2 / 2**15.
    assert cmp.test == 'cluster_sign_flip' and cmp.p_value == pytest.approx(2 / 2 ** 8)
    assert binomtest(0, 15, 0.5).pvalue == pytest.approx(2 / 2 ** 15)
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


# ---------------------------------------------------------------------------- simulations (vectorized)

@pytest.mark.parametrize('per_image, rho', [(1, 0.0), (4, 0.5)])
def test_accuracy_interval_covers_near_100_percent_and_in_the_middle(per_image, rho):
    """200 images (the Cervical test set has one question each): >= 93% coverage at 99.5% and 98%,
    ~95% in the middle, never zero-width. The image bootstrap's interval is [100, 100] whenever a
    test set has no error (37% of the time at 99.5%), and covers 62%."""
    rng = np.random.default_rng(per_image)
    for p, lo, hi in [(0.995, 0.93, 1.0), (0.98, 0.93, 1.0), (0.7, 0.93, 0.97)]:
        x = simulate(rng, 3000, 200, per_image, p, rho)
        sums = x.sum(-1).astype(float)
        _, low, high, _ = proportion_arrays(sums, np.full(sums.shape, float(per_image)))
        coverage = np.mean((low <= p) & (p <= high))
        assert lo <= coverage <= hi, (p, coverage)
        assert np.all(high - low > 0.005)
    perfect = np.ones(200)
    boot = cluster_bootstrap_ci(perfect, np.arange(200), n_boot=200)
    honest = proportion_ci(perfect, np.arange(200))
    assert boot.low == boot.high == 1.0 and honest.high == 1.0 and 0.975 < honest.low < 0.985


def test_effective_n_is_n_for_independent_questions_and_the_images_when_they_are_one():
    ones = np.array([1.0, 0.0] * 50)
    assert effective_n(ones, np.ones(100)) == pytest.approx(99.0)   # 1 question per image: n (K-1)/K
    all_or_nothing = np.array([4.0, 0.0] * 50)                      # each image all right or all wrong
    assert effective_n(all_or_nothing, np.full(100, 4.0)) == pytest.approx(99.0, rel=0.02)
    assert effective_n(np.full(50, 4.0), np.full(50, 4.0)) == 50.0  # 100%: no information, the images
    est = proportion_ci(np.repeat([1.0, 0.0], [350, 50]), np.arange(400) // 4)
    assert est.method == 'agresti_coull_deff' and est.n_effective <= 400
    assert mean_ci([0.5, 1.0, 0.25], n_boot=100).method == 'bootstrap'


def test_sign_flip_is_mcnemar_with_one_question_per_image_and_exact_otherwise():
    rng = np.random.default_rng(0)
    for _ in range(20):
        b, c = rng.integers(0, 15, size=2)
        d = np.r_[np.ones(c), -np.ones(b), np.zeros(7)]
        assert sign_flip_p(d) == pytest.approx(mcnemar([[7, b], [c, 7]], exact=True).pvalue)
    d = np.array([3, -1, 2, 2, -4, 1, 0, 1])          # brute force over all 2**7 sign flips
    flips = [abs(sum(s * x for s, x in zip(signs, d[d != 0]))) for signs in itertools.product([1, -1], repeat=7)]
    assert sign_flip_p(d) == pytest.approx(np.mean(np.array(flips) >= abs(d.sum())))
    assert sign_flip_p([0, 0]) == 1.0 and sign_flip_p([]) == 1.0
    with pytest.raises(ValueError, match='integer'):
        sign_flip_p([0.5])


@pytest.mark.parametrize('per_image', [4, 10])
def test_clustered_paired_test_keeps_type_one_error_with_several_questions_per_image(per_image):
    """Two arms equally accurate (70%), each with strong within-image correlation (0.5): the cluster
    sign-flip test rejects at 5% no more than 6% of the time; McNemar on the same data far more."""
    rng = np.random.default_rng(per_image)
    reps, images = 2000, 100
    a = simulate(rng, reps, images, per_image, 0.7, 0.5)
    b = simulate(rng, reps, images, per_image, 0.7, 0.5)
    d = (b & ~a).sum(-1) - (a & ~b).sum(-1)
    rejected = np.mean([sign_flip_p(row) < 0.05 for row in d])
    only_a, only_b = (a & ~b).sum((1, 2)), (b & ~a).sum((1, 2))
    naive = np.minimum(1, 2 * binom.cdf(np.minimum(only_a, only_b), only_a + only_b, 0.5))
    assert rejected <= 0.06, rejected
    assert np.mean(naive < 0.05) > 0.10, np.mean(naive < 0.05)


def test_difference_interval_covers_and_stays_open_near_100_percent():
    rng = np.random.default_rng(11)
    for images, per_image, rho, pa, pb in [(200, 1, 0.0, 0.995, 0.995), (100, 4, 0.5, 0.6, 0.8)]:
        covered, widths = 0, []
        for _ in range(600):
            a = simulate(rng, 1, images, per_image, pa, rho)[0]
            other = simulate(rng, 1, images, per_image, pb, rho)[0]
            b = np.where(rng.random(a.shape) < 0.6, a, other)      # paired: B copies A on 60% of questions
            truth = 0.4 * (pb - pa)
            low, high = mover_diff_ci(a.sum(1).astype(float), b.sum(1).astype(float), np.full(images, float(per_image)))
            covered += low <= truth <= high
            widths.append(high - low)
        assert covered / 600 >= 0.93 and min(widths) > 0
