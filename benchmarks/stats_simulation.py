"""Full-size simulations behind the statistics of `medres score` / `medres grid` (the suite runs small ones).

    python benchmarks/stats_simulation.py --out benchmarks/stats_simulation.json

1. Coverage of 95% intervals for one arm's accuracy, 200 images, at 99.5% ... 50%: the interval medres
   reports (Agresti-Coull on the design-effect-adjusted n), the plain Wilson interval on the same n,
   and the image-clustered percentile bootstrap medres used before (fewer replicates: it is slow).
2. Type-I error at alpha 0.05 of the paired tests, two equally accurate arms: the exact cluster
   sign-flip test medres reports and McNemar's exact test on the questions.
3. Coverage of the paired difference's interval: MOVER (medres) and the paired image bootstrap.

Outcomes per image follow a beta-binomial model: P(correct) drawn per image from a Beta with mean
p and intra-image correlation rho, then each question independently.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
from scipy.stats import binom
from statsmodels.stats.proportion import proportion_confint

from swift_plugins.eval.stats import effective_n, mover_diff_ci, proportion_arrays, sign_flip_p
from swift_plugins.fixtures.clustered_outcomes import simulate


def bootstrap_ci(rng, sums, counts, n_boot):
    """The image-clustered percentile bootstrap, vectorized over replicates: (reps,) low, high."""
    reps, k = sums.shape
    lows, highs = np.empty(reps), np.empty(reps)
    for r in range(reps):
        idx = rng.integers(0, k, size=(n_boot, k))
        means = sums[r][idx].sum(1) / counts[r][idx].sum(1)
        lows[r], highs[r] = np.percentile(means, [2.5, 97.5])
    return lows, highs


def coverage(rng, reps, boot_reps, n_boot):
    out = []
    for per_image, rho in [(1, 0.0), (4, 0.3), (4, 0.5), (10, 0.5)]:
        for p in [0.995, 0.98, 0.9, 0.7, 0.5]:
            x = simulate(rng, reps, 200, per_image, p, rho)
            sums = x.sum(-1).astype(float)
            counts = np.full(sums.shape, float(per_image))
            _, low, high, _ = proportion_arrays(sums, counts)
            mean = sums.sum(-1) / counts.sum(-1)
            n_eff = effective_n(sums, counts)
            wl, wh = proportion_confint(mean * n_eff, n_eff, alpha=0.05, method='wilson')
            bl, bh = bootstrap_ci(rng, sums[:boot_reps], counts[:boot_reps], n_boot)
            row = {'images': 200, 'per_image': per_image, 'rho': rho, 'p': p,
                   'agresti_coull_deff': float(np.mean((low <= p) & (p <= high))),
                   'wilson_deff': float(np.mean((wl <= p) & (p <= wh))),
                   'bootstrap': float(np.mean((bl <= p) & (p <= bh))),
                   'bootstrap_zero_width': float(np.mean(bh - bl < 1e-12)),
                   'agresti_coull_mean_width_points': float(100 * np.mean(high - low))}
            out.append(row)
            print(row, flush=True)
    return out


def type_one(rng, reps):
    out = []
    for images, per_image, rho, both_clustered in [(100, 1, 0.0, True), (100, 4, 0.2, True), (100, 4, 0.5, True),
                                                    (100, 10, 0.5, True), (30, 10, 0.5, True), (100, 4, 0.5, False)]:
        a = simulate(rng, reps, images, per_image, 0.7, rho)
        b = simulate(rng, reps, images, per_image, 0.7, rho if both_clustered else 0.0)
        d = (b & ~a).sum(-1) - (a & ~b).sum(-1)
        t0 = time.perf_counter()
        sign_flip = np.array([sign_flip_p(row) for row in d])
        per_test_ms = 1000 * (time.perf_counter() - t0) / reps
        only_a, only_b = (a & ~b).sum((1, 2)), (b & ~a).sum((1, 2))
        naive = np.minimum(1, 2 * binom.cdf(np.minimum(only_a, only_b), only_a + only_b, 0.5))
        row = {'images': images, 'per_image': per_image, 'rho': rho,
               'null': 'exchangeable' if both_clustered else 'B unclustered, same mean',
               'cluster_sign_flip': float(np.mean(sign_flip < 0.05)), 'mcnemar': float(np.mean(naive < 0.05)),
               'sign_flip_ms_per_test': round(per_test_ms, 3)}
        out.append(row)
        print(row, flush=True)
    return out


def difference(rng, reps, n_boot):
    out = []
    for images, per_image, rho, pa, pb in [(200, 1, 0.0, 0.995, 0.995), (200, 1, 0.0, 0.98, 0.995),
                                           (200, 1, 0.0, 0.7, 0.75), (100, 4, 0.5, 0.7, 0.7),
                                           (100, 4, 0.5, 0.6, 0.8), (100, 10, 0.5, 0.9, 0.95)]:
        mover = boot = 0
        zero = 0
        for r in range(reps):
            a = simulate(rng, 1, images, per_image, pa, rho)[0]
            other = simulate(rng, 1, images, per_image, pb, rho)[0]
            b = np.where(rng.random(a.shape) < 0.6, a, other)
            truth = 0.4 * (pb - pa)
            counts = np.full(images, float(per_image))
            low, high = mover_diff_ci(a.sum(1).astype(float), b.sum(1).astype(float), counts)
            mover += low <= truth <= high
            d = (b.astype(float) - a).sum(1)
            idx = rng.integers(0, images, size=(n_boot, images))
            diffs = d[idx].sum(1) / counts[idx].sum(1)
            bl, bh = np.percentile(diffs, [2.5, 97.5])
            boot += bl <= truth <= bh
            zero += bh - bl < 1e-12
        row = {'images': images, 'per_image': per_image, 'rho': rho, 'p_a': pa, 'p_b_model': pb,
               'true_diff_points': round(100 * 0.4 * (pb - pa), 2), 'mover': mover / reps, 'bootstrap': boot / reps,
               'bootstrap_zero_width': zero / reps}
        out.append(row)
        print(row, flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument('--reps', type=int, default=20000)
    ap.add_argument('--boot-reps', type=int, default=1000)
    ap.add_argument('--n-boot', type=int, default=1000)
    ap.add_argument('--test-reps', type=int, default=10000)
    ap.add_argument('--diff-reps', type=int, default=3000)
    ap.add_argument('--seed', type=int, default=2025)
    ap.add_argument('--out', type=Path)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    result = {'machine': f'{platform.processor() or platform.machine()}, {platform.python_version()}',
              'args': {k: v for k, v in vars(args).items() if k != 'out'},
              'coverage': coverage(rng, args.reps, args.boot_reps, args.n_boot),
              'type_one_error': type_one(rng, args.test_reps),
              'difference_coverage': difference(rng, args.diff_reps, args.n_boot)}
    result['seconds'] = round(time.perf_counter() - start, 1)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + '\n')


if __name__ == '__main__':
    main()
