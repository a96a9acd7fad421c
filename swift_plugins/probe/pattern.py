"""The paper's resolution pattern, stated as paired tests on the probe's grid cells.

1. the native-trained model uses the fine cue: native/native above the coarse cue's ceiling;
2. aligned native beats aligned low (native/native > low/low);
3. the mismatch collapse: native-trained at low inference falls below aligned low
   (native/low < low/low);
4. mixed training at native inference is within `tolerance` points of aligned native
   (mixed/native vs native/native) and above both mismatched cells (native/low, low/native).

A cell is `(training, inference)`, e.g. `('native', 'low')`. A "greater than" claim holds when the
paired difference is positive and its paired test's p (McNemar's exact test: each probe image
carries one question; the cluster sign-flip test where images carry several), Holm-corrected over
the claims of this family, is below `alpha`; "within tolerance" holds when the paired 95% CI of the difference lies above
-tolerance; "above the ceiling" when the cell's own 95% CI lies above it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

from ..data.registry import Entry
from ..eval.scoring import RowScore, compare_rows, summarize
from ..eval.stats import holm

Cell = tuple[str, str]
_TEST_NAMES = {'mcnemar_exact': 'McNemar', 'cluster_sign_flip': 'cluster sign-flip'}
DEFAULT_TOLERANCE = 5.0   # points: "within a few points"
GREATER = [  # name, claim, higher cell, lower cell
    ('native_beats_low', 'aligned native > aligned low', ('native', 'native'), ('low', 'low')),
    ('mismatch_collapse', 'native-trained at low inference < aligned low', ('low', 'low'), ('native', 'low')),
    ('mixed_above_native_low', 'mixed/native > native/low', ('mixed', 'native'), ('native', 'low')),
    ('mixed_above_low_native', 'mixed/native > low/native', ('mixed', 'native'), ('low', 'native')),
]
REQUIRED: tuple[Cell, ...] = (('native', 'native'), ('low', 'low'), ('native', 'low'), ('low', 'native'),
                              ('mixed', 'native'))


@dataclass
class PatternCheck:
    name: str
    claim: str
    holds: bool
    detail: str
    diff: Optional[float] = None                  # B - A in points
    ci: Optional[tuple[float, float]] = None      # its paired 95% CI
    p_value: Optional[float] = None               # the paired test's, Holm-corrected within the family


def _name(cell: Cell) -> str:
    return '/'.join(cell)


def pattern_checks(entry: Entry, rows: Mapping[Cell, Sequence[RowScore]], *, coarse_ceiling: float,
                   tolerance: float = DEFAULT_TOLERANCE, n_boot: int = 2000, alpha: float = 0.05,
                   seed: int = 0) -> list[PatternCheck]:
    """Each claim of the pattern with the test that decides it; `coarse_ceiling` is a fraction (0.75)."""
    missing = [_name(c) for c in REQUIRED if c not in rows]
    if missing:
        raise ValueError(f'the pattern needs the cells {", ".join(missing)}')
    checks = []
    nn = summarize(entry, rows[('native', 'native')], n_boot=n_boot, seed=seed).metrics['accuracy']
    ceiling = 100 * coarse_ceiling
    checks.append(PatternCheck('fine_cue_used', f'native/native above the coarse cue ceiling ({ceiling:.0f})',
                               nn.ci_low > ceiling, f'native/native {nn.value:.1f} [{nn.ci_low:.1f}, {nn.ci_high:.1f}]'))

    tests = [compare_rows(rows[lo], rows[hi], 'accuracy', a_name=_name(lo), b_name=_name(hi), n_boot=n_boot, seed=seed)
             for _, _, hi, lo in GREATER]
    _, adjusted = holm([t.p_value for t in tests])
    for (name, claim, hi, lo), t, p in zip(GREATER, tests, adjusted):
        d = 100 * t.diff
        checks.append(PatternCheck(name, claim, d > 0 and p < alpha,
                                   f'{_name(hi)} - {_name(lo)} = {d:+.1f} points [{100 * t.low:+.1f}, {100 * t.high:+.1f}], '
                                   f'{_TEST_NAMES.get(t.test, "paired")} p (Holm) = {p:.2g}', d,
                                   (100 * t.low, 100 * t.high), p))

    c = compare_rows(rows[('native', 'native')], rows[('mixed', 'native')], 'accuracy', a_name='native/native',
                     b_name='mixed/native', n_boot=n_boot, seed=seed)
    d = 100 * c.diff
    checks.insert(3, PatternCheck('mixed_near_native', f'mixed/native within {tolerance:g} points of native/native',
                                  100 * c.low > -tolerance,
                                  f'mixed/native - native/native = {d:+.1f} points [{100 * c.low:+.1f}, {100 * c.high:+.1f}]',
                                  d, (100 * c.low, 100 * c.high), c.p_value))
    return checks


def cue_breakdown(rows: Mapping[Cell, Sequence[RowScore]], hue_agrees: Mapping[str, bool]) -> dict[str, dict]:
    """Accuracy (points) of each cell on the test images whose stain hue names their class and on
    those whose hue names another: a model that reads the fine cue is right on both, one that reads
    the hue is right on the first and wrong on the second, one that reads neither is near chance."""
    out = {}
    for cell, scored in rows.items():
        split = {True: [], False: []}
        for r in scored:
            split[hue_agrees[r.id]].append(r.correct)
        out[_name(cell)] = {key: {'accuracy': 100 * sum(v) / len(v) if v else None, 'n': len(v)}
                            for key, v in (('hue_right', split[True]), ('hue_wrong', split[False]))}
    return out


def breakdown_markdown(breakdown: Mapping[str, dict]) -> str:
    def fmt(d):
        return '-' if d['accuracy'] is None else f'{d["accuracy"]:.1f} (n={d["n"]})'
    lines = ['| training/inference | hue names the class | hue names another class |', '| --- | --- | --- |']
    lines += [f'| {cell} | {fmt(b["hue_right"])} | {fmt(b["hue_wrong"])} |' for cell, b in breakdown.items()]
    return '\n'.join(lines) + '\n'


def checks_markdown(checks: Sequence[PatternCheck]) -> str:
    lines = ['| claim | holds | evidence |', '| --- | --- | --- |']
    lines += [f'| {c.claim} | {"yes" if c.holds else "**no**"} | {c.detail} |' for c in checks]
    return '\n'.join(lines) + '\n'
