"""Scores of `caption` tasks: facts read out of a generated description (the paper's Subcellular task).

The model describes the image; the scorer looks for the row's facts in the text (the columns named
by the entry's `task.targets`), as the paper's Subcellular evaluation does:

- `mention_accuracy` (the paper's cell-line accuracy): the values of the target column over the
  scored rows (the paper: the cell lines present in the test file) are the vocabulary, each with its
  spellings from the entry's `synonyms`; the first one named in the output (leftmost; at one position
  the longest) is the prediction, right when it is the row's value, compared case-insensitively
  through the synonyms (`U2OS` is `U-2 OS`). Rows without a value are left out of it.
- `mention_macro_recall` (the paper's localization macro recall): for each value of the list column
  present among the rows, the share of the rows having it whose output names it; averaged over the
  values.

`strict` matches whole words (`HEL` is not found in `HeLa`, `BJ` not in `object`) and a longer value
claims its words first (`Nucleoli fibrillar center` is not also `Nucleoli`). `compat` is the paper's
script: case-insensitive substring search, so `Nucleoli` is also found inside `Nucleoli fibrillar
center`; where several values start at one position it takes the longest (the paper's pattern order
was a Python set's, i.e. arbitrary). CIs: cluster bootstrap over images, as every other metric; macro
recall is recomputed on each resample.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from ..data.registry import Entry
from ..errors import ScoreError
from .predictions import Prediction
from .scoring import TASK_SCORERS, MetricResult, RowScore, Score, _points
from .stats import BOOTSTRAP, mean_ci

ACCURACY, RECALL = 'mention_accuracy', 'mention_macro_recall'
# Row kinds: a row with a value for the accuracy target, and one scored on its list target only.
CAPTION, CAPTION_RECALL_ONLY = 'caption', 'caption_recall_only'
_BATCH_ELEMENTS = 4_000_000   # bootstrap weights held at once (resamples x clusters)


class MentionFinder:
    """Which of a set of values a text names, by spelling (value -> its spellings)."""

    def __init__(self, spellings: dict[str, Sequence[str]], mode: str):
        self.mode = mode
        self._value = {}
        for value, names in spellings.items():
            for name in (value, *names):
                self._value.setdefault(name.casefold(), value)
        alternatives = sorted(self._value, key=lambda s: (-len(s), s))
        body = '|'.join(re.escape(a) for a in alternatives)
        # strict: not inside a word (letters or digits on either side).
        self._pattern = re.compile(f'(?<![^\\W_])(?:{body})(?![^\\W_])' if mode == 'strict' else f'(?:{body})',
                                   re.IGNORECASE) if alternatives else None

    def first(self, text: str) -> Optional[str]:
        """The value named first (leftmost; the longest spelling at one position)."""
        m = self._pattern.search(text) if self._pattern else None
        return self._value.get(m.group(0).casefold()) if m else None

    def all(self, text: str) -> set[str]:
        """Every value named. strict: non-overlapping, longest first; compat: any substring (the paper's)."""
        if self._pattern is None:
            return set()
        if self.mode == 'strict':
            return {self._value[m.group(0).casefold()] for m in self._pattern.finditer(text)}
        folded = text.casefold()
        return {value for name, value in self._value.items() if name in folded}


def _target_list(value, where: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):   # a table that kept the ';'-joined form
        return [v.strip() for v in value.split(';') if v.strip()]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return [v.strip() for v in value if v.strip()]
    raise ScoreError(f'{where}: expected a list of strings, got {value!r}')


@dataclass
class CaptionScore(Score):
    """A `Score` plus what the caption metrics saw: the vocabularies and each value's recall."""
    details: dict = field(default_factory=dict)


def macro_recall_ci(gold: Sequence[set], found: Sequence[set], clusters: Sequence[str], *, n_boot: int,
                    level: float, seed: int) -> tuple[float, float, float, dict[str, float], int]:
    """Macro recall (mean over values of hits / rows with the value), its cluster-bootstrap percentile
    CI, each value's recall and the number of clusters. A value absent from a resample is left out of
    that resample's mean, as the point estimate leaves out values absent from the rows."""
    values = sorted(set().union(*gold)) if gold else []
    if not values:
        return math.nan, math.nan, math.nan, {}, 0
    col = {v: k for k, v in enumerate(values)}
    _, codes = np.unique(np.asarray(clusters, dtype=object).astype(str), return_inverse=True)
    n_clusters = int(codes.max()) + 1
    has = np.zeros((n_clusters, len(values)))
    hit = np.zeros((n_clusters, len(values)))
    for c, g, f in zip(codes, gold, found):
        for v in g:
            has[c, col[v]] += 1
            hit[c, col[v]] += v in f
    per_value = hit.sum(0) / has.sum(0)
    point = float(per_value.mean())
    recalls = {v: float(per_value[col[v]]) for v in values}
    if n_clusters < 2:
        return point, math.nan, math.nan, recalls, n_clusters
    rng = np.random.default_rng(seed)
    stats, batch = [], max(1, _BATCH_ELEMENTS // n_clusters)
    for start in range(0, n_boot, batch):
        w = rng.multinomial(n_clusters, np.full(n_clusters, 1 / n_clusters), size=min(batch, n_boot - start))
        with np.errstate(invalid='ignore', divide='ignore'):
            r = (w @ hit) / (w @ has)
        stats.append(np.nanmean(r, axis=1))
    dist = np.concatenate(stats)
    alpha = (1 - level) / 2
    return point, float(np.quantile(dist, alpha)), float(np.quantile(dist, 1 - alpha)), recalls, n_clusters


def score_captions(entry: Entry, predictions: Sequence[Prediction], mode: str = 'strict', *, n_boot: int = 2000,
                   level: float = 0.95, seed: int = 0) -> tuple[CaptionScore, list[RowScore]]:
    """Per-row records (accuracy target found or not) and the summary with both caption metrics."""
    targets = entry.task.targets
    acc_col, rec_col = targets.get(ACCURACY), targets.get(RECALL)
    for p in predictions:
        if not isinstance(p.targets, dict) or any(c not in p.targets for c in targets.values()):
            raise ScoreError(f'{p.id}: no medres.targets {sorted(targets.values())} in its prediction row; the '
                             f'caption metrics of {entry.registered_name} read them (predict with swift infer on '
                             f'a medres/<name> dataset)')

    spellings = entry.spellings()

    def value(p: Prediction) -> str:
        v = p.targets.get(acc_col) if acc_col else None
        if v is not None and not isinstance(v, str):
            raise ScoreError(f'{p.id}: target {acc_col!r} must be a string, got {v!r}')
        v = (v or '').strip()
        return spellings.get(v.casefold(), v)

    golds = {p.id: value(p) for p in predictions}
    # The vocabulary is what this file's rows hold (the paper: the cell lines of its test file).
    vocab = sorted({v for v in golds.values() if v})
    finder = MentionFinder({v: entry.synonyms.get(v, []) for v in vocab}, mode)
    rows = []
    for p in predictions:
        gold, key = golds[p.id], p.image_key or p.id
        if not gold:
            rows.append(RowScore(id=p.id, image_key=key, kind=CAPTION_RECALL_ONLY, gold='', response=p.response,
                                 status='unparseable', correct=False))
            continue
        named = finder.first(p.response)
        status = 'unparseable' if named is None else 'correct' if named == gold else 'wrong'
        rows.append(RowScore(id=p.id, image_key=key, kind=CAPTION, gold=gold, response=p.response, status=status,
                             correct=status == 'correct', parsed=named))

    metrics, details, warnings = {}, {}, []
    scored = [r for r in rows if r.kind == CAPTION]
    if acc_col:
        # An accuracy: the same interval as every other accuracy (honest near 0 and 100%).
        est = mean_ci([float(r.correct) for r in scored], [r.image_key for r in scored], binary=True,
                      n_boot=n_boot, level=level, seed=seed)
        metrics[ACCURACY] = MetricResult(ACCURACY, _points(est.mean), _points(est.low), _points(est.high), est.n,
                                         est.n_clusters, sum(r.status == 'unparseable' for r in scored), 0,
                                         ci_method=est.method if est.n else None, n_effective=est.n_effective)
        details[ACCURACY] = {'column': acc_col, 'values': vocab, 'rows_without_value': len(rows) - len(scored)}
    if rec_col:
        gold_sets = [{x.casefold() for x in _target_list(p.targets.get(rec_col), f'{p.id}: target {rec_col!r}')}
                     for p in predictions]
        names = {}
        for p in predictions:
            for x in _target_list(p.targets.get(rec_col), p.id):
                names.setdefault(x.casefold(), x)
        loc_finder = MentionFinder({k: [] for k in names}, mode)
        found = [loc_finder.all(p.response) for p in predictions]
        with_values = [i for i, g in enumerate(gold_sets) if g]
        point, low, high, recalls, n_clusters = macro_recall_ci(
            [gold_sets[i] for i in with_values], [found[i] for i in with_values],
            [predictions[i].image_key or predictions[i].id for i in with_values], n_boot=n_boot, level=level, seed=seed)
        metrics[RECALL] = MetricResult(RECALL, _points(point), _points(low), _points(high), len(with_values), n_clusters,
                                       0, 0, ci_method=BOOTSTRAP if with_values else None)
        details[RECALL] = {'column': rec_col, 'per_value': {names[k]: round(100 * v, 4) for k, v in recalls.items()}}
    if not metrics.get(entry.metric) or metrics[entry.metric].n == 0:
        warnings.append(f'no rows for the primary metric {entry.metric!r}')
    if any(r.image_key == r.id for r in rows):
        warnings.append('some rows have no image_key; they are their own cluster (CIs may be too narrow)')
    score = CaptionScore(dataset=entry.name, mode=mode, primary=entry.metric, n_rows=len(rows), metrics=metrics,
                         level=level, n_boot=n_boot, seed=seed, warnings=warnings, details=details)
    return score, rows


TASK_SCORERS['caption'] = score_captions
