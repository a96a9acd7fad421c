"""Score predictions against their registry entry, per row and in summary with clustered CIs.

Two modes. `strict` (default) reads the answer out of the output by the rules of `answers.py`
(README, "Scoring": the rule table): a closed question, a classification or a multiple-choice
row is correct, wrong, ambiguous or unparseable; open answers get token recall, F1 and exact
match. `compat` reproduces the paper's evaluation code (cliangyu/med_eval): a closed or label
answer is right when the gold string occurs anywhere in the lower-cased output (or, for entries
with `task.compat: first_match`, when the first candidate named is the gold), and open answers
get LLaVA-Med's token recall. Compat exists to compare with published numbers, not to report
new ones. No row stops scoring: a row that cannot be scored (its gold is not among its options,
its options cannot be told apart) is `unscorable`, counted wrong and named.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Literal, Optional, Sequence

from ..data.registry import Entry
from ..errors import ScoreError
from ..vocabulary import SCORING_MODES
from .answers import ARTICLES, NUMBER_WORDS, OptionSet, answer_tokens, first_match
from .predictions import Prediction
from .stats import METHODS, PairedComparison, compare_paired, mean_ci

Mode = Literal['strict', 'compat']
Kind = Literal['closed', 'open', 'classification', 'mc', 'caption', 'caption_recall_only']
Status = Literal['correct', 'wrong', 'unparseable', 'ambiguous', 'unscorable']
MODES = SCORING_MODES


# ---------------------------------------------------------------------------- open answers

def token_scores(prediction: str, gold: str) -> tuple[float, float, bool]:
    """(recall, F1, exact match) on answer tokens; recall = share of gold tokens the output has."""
    p, g = answer_tokens(prediction), answer_tokens(gold)
    common = sum((Counter(p) & Counter(g)).values())
    if not p or not g or common == 0:
        return 0.0, 0.0, p == g
    recall, precision = common / len(g), common / len(p)
    return recall, 2 * precision * recall / (precision + recall), p == g


# LLaVA-Med's answer normalization (llava/eval/eval_metrics/glossary.py `normalize_word`),
# re-implemented for compat mode with its quirks, which change scores.
_LLAVA_PUNCT = ';/[]"{}()=+\\_-><@`,?!'
# Its "(?!<=\d)" was meant as a look-behind but is a look-ahead for the text "<=digit", so in
# effect every period not followed by a digit goes.
_LLAVA_PERIOD = re.compile(r'(?!<=\d)(\.)(?!\d)')
_LLAVA_DIGIT_COMMA = re.compile(r'(\d)(,)(\d)')
_LLAVA_NUMBERS = {'none': '0', **NUMBER_WORDS}


def _llava_normalize(text: str) -> str:
    out = text
    for p in _LLAVA_PUNCT:
        # It tests the original text but edits the running copy: one "x, y" deletes every comma.
        if p + ' ' in text or ' ' + p in text or _LLAVA_DIGIT_COMMA.search(text):
            out = out.replace(p, '')
        else:
            out = out.replace(p, ' ')
    # It passes re.UNICODE (32) positionally, i.e. as `count`: at most 32 periods are removed.
    out = _LLAVA_PERIOD.sub('', out, count=32)
    words = [_LLAVA_NUMBERS.get(w, w) for w in out.lower().split()]
    return ' '.join(w for w in words if w not in ARTICLES).replace(',', '')


def llava_med_token_scores(prediction: str, gold: str) -> tuple[float, float]:
    """(recall, F1) as LLaVA-Med's `calculate_f1score`, which med_eval calls on lower-cased text.

    Unlike `token_scores`, a gold word repeated in the output counts once per repetition in the
    numerator ("left left" recalls 2/3 of "left lung").
    """
    cand = Counter(_llava_normalize(prediction.lower()).split())
    ref = Counter(_llava_normalize(gold.lower()).split())
    tp = sum(c for w, c in cand.items() if w in ref)
    if not cand or not ref or tp == 0:
        return 0.0, 0.0
    fp = sum(c for w, c in cand.items() if w not in ref)
    fn = sum(c for w, c in ref.items() if w not in cand)
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    return recall, 2 * precision * recall / (precision + recall)


# ---------------------------------------------------------------------------- per-row records

@dataclass
class RowScore:
    """One question's outcome; written to `<out>.rows.jsonl` so the grid can pair arms by id."""
    id: str
    image_key: str
    kind: Kind
    gold: str
    response: str
    status: Status
    # Open rows: the exact match. Compat rows: the paper's rule's verdict.
    correct: bool
    parsed: Optional[str] = None
    token_recall: Optional[float] = None
    token_f1: Optional[float] = None
    exact_match: Optional[bool] = None
    # Why a row is ambiguous, unparseable or unscorable.
    note: Optional[str] = None


def _closed_answers(entry: Entry) -> list[str]:
    return entry.task.closed_answers or entry.labels or ['yes', 'no']


class RowScorer:
    """Scores the rows of one entry in one mode (option sets are built once per set of options).

    `candidates`: for compat `first_match` entries, the answers the paper's regex searches for
    (the gold answers of the file being scored; `score_rows` passes them). Default: the options.
    """

    def __init__(self, entry: Entry, mode: Mode = 'strict', candidates: Optional[Sequence[str]] = None):
        if mode not in MODES:
            raise ValueError(f'mode must be one of {MODES}, got {mode!r}')
        self.entry, self.mode = entry, mode
        self.candidates = list(candidates) if candidates is not None else None
        self._sets: dict[tuple[str, ...], OptionSet] = {}
        self._closed_lower = {a.lower() for a in _closed_answers(entry)}

    def option_set(self, options: Sequence[str]) -> OptionSet:
        key = tuple(options)
        if key not in self._sets:
            self._sets[key] = OptionSet(options, self.entry.synonyms)
        return self._sets[key]

    def kind(self, gold: str) -> Kind:
        kind = self.entry.task.kind
        if kind == 'vqa':
            if self.mode == 'compat':  # med_eval: `answer.lower() in ['yes', 'no']`
                return 'closed' if gold.lower() in self._closed_lower else 'open'
            return 'closed' if self.option_set(_closed_answers(self.entry)).canonical(gold) is not None else 'open'
        return {'closed_vqa': 'closed', 'open_vqa': 'open', 'classification': 'classification',
                'multiple_choice': 'mc'}[kind]

    def options(self, pred: Prediction, kind: Kind) -> list[str]:
        if kind == 'closed':
            return _closed_answers(self.entry)
        if kind == 'mc' and pred.choices:
            return list(pred.choices)
        if self.entry.labels:
            return self.entry.labels
        raise ScoreError('a multiple-choice row needs its options: neither chat_template_kwargs.medres.choices '
                         f'nor the labels of entry {self.entry.name!r} give them')

    def __call__(self, pred: Prediction) -> RowScore:
        kind = self.kind(pred.gold)
        base = dict(id=pred.id, image_key=pred.image_key or pred.id, kind=kind, gold=pred.gold,
                    response=pred.response)
        if kind == 'open':
            if self.mode == 'compat':
                recall, f1 = llava_med_token_scores(pred.response, pred.gold)
                exact = answer_tokens(pred.response) == answer_tokens(pred.gold)
            else:
                recall, f1, exact = token_scores(pred.response, pred.gold)
            return RowScore(**base, status='correct' if exact else 'wrong', correct=exact,
                            token_recall=recall, token_f1=f1, exact_match=exact)
        try:
            options = self.options(pred, kind)
            if self.mode == 'compat':
                return self._compat(pred, kind, options, base)
            return self._strict(pred, options, base)
        except ScoreError as e:
            return RowScore(**base, status='unscorable', correct=False, note=str(e))

    def _compat(self, pred: Prediction, kind: Kind, options: Sequence[str], base: dict) -> RowScore:
        if pred.gold.lower() not in {o.lower() for o in options}:
            raise ScoreError(f'gold answer {pred.gold!r} is not one of the options {list(options)}')
        if kind != 'closed' and self.entry.task.compat == 'first_match':
            named = first_match(pred.response, self.candidates if self.candidates is not None else options)
            hit = named is not None and named == pred.gold.upper()
            return RowScore(**base, status='correct' if hit else 'wrong', correct=hit, parsed=named)
        # med_eval: `gt in pred.lower()` (eval_hussain.py; infer_eval.py for yes/no).
        hit = pred.gold.lower() in pred.response.lower()
        return RowScore(**base, status='correct' if hit else 'wrong', correct=hit)

    def _strict(self, pred: Prediction, options: Sequence[str], base: dict) -> RowScore:
        opts = self.option_set(options)
        gold = opts.group(pred.gold)
        if not gold:
            raise ScoreError(f'gold answer {pred.gold!r} is not one of the options {list(options)}')
        parsed = opts.parse(pred.response, opts.letters(pred.prompt))
        if parsed.status != 'parsed':
            return RowScore(**base, status=parsed.status, correct=False, note=parsed.note)
        if not parsed.group & gold:
            return RowScore(**base, status='wrong', correct=False, parsed=parsed.option)
        # Options that coincide once case, punctuation and number spelling go are one answer.
        note = f'options {" / ".join(sorted(parsed.group))} are the same answer' if len(parsed.group) > 1 else None
        return RowScore(**base, status='correct', correct=True, parsed=pred.gold if pred.gold in parsed.group
                        else parsed.option, note=note)


def score_rows(entry: Entry, predictions: Sequence[Prediction], mode: Mode = 'strict') -> list[RowScore]:
    candidates = None
    if mode == 'compat' and entry.task.compat == 'first_match':
        # The paper searched for the cell lines present in its test file.
        candidates = sorted({p.gold for p in predictions})
    scorer = RowScorer(entry, mode, candidates)
    return [scorer(p) for p in predictions]


def rows_path(summary_path: str | Path) -> Path:
    """Where the per-row records of a summary JSON go: `scores/x.json` -> `scores/x.rows.jsonl`."""
    return Path(summary_path).with_suffix('.rows.jsonl')


def write_rows(path: str | Path, rows: Sequence[RowScore]) -> None:
    with open(path, 'w', encoding='utf-8') as f:
        for r in rows:
            f.write(json.dumps(asdict(r), ensure_ascii=False) + '\n')


def read_rows(path: str | Path) -> list[RowScore]:
    with open(path, encoding='utf-8') as f:
        return [RowScore(**json.loads(line)) for line in f if line.strip()]


# ---------------------------------------------------------------------------- summaries

# The kinds of row each metric averages over.
METRIC_KINDS: dict[str, tuple[Kind, ...]] = {
    'closed_accuracy': ('closed',),
    'accuracy': ('closed', 'classification', 'mc'),
    'token_recall': ('open',),
    'token_f1': ('open',),
    'exact_match': ('open',),
    'mention_accuracy': ('caption',),   # caption tasks: eval/caption_metrics.py
}


def metric_value(row: RowScore, metric: str) -> float:
    if metric in ('closed_accuracy', 'accuracy', 'mention_accuracy'):
        return float(row.correct)
    return float(getattr(row, metric))


def metric_rows(rows: Sequence[RowScore], metric: str) -> list[RowScore]:
    """The rows `metric` is computed on (closed accuracy: closed questions; token recall: open ones)."""
    if metric not in METRIC_KINDS:
        raise ValueError(f'unknown metric {metric!r}; known: {sorted(METRIC_KINDS)}')
    return [r for r in rows if r.kind in METRIC_KINDS[metric]]


# 0/1 metrics: Agresti-Coull intervals on the design-effect-adjusted n and the clustered paired test.
BINARY_METRICS = frozenset({'closed_accuracy', 'accuracy', 'exact_match'})
# Unscorable rows shown by name in a summary's warnings (all of them are in the rows file).
NAMED_UNSCORABLE = 5


@dataclass
class MetricResult:
    """A metric in points (0-100) with its image-clustered CI; None where there are no rows.

    `n_unparseable` counts every row with no answer to score: unparseable and unscorable ones
    (`n_unscorable` of them); both are in `n` and count as wrong.
    """
    name: str
    value: Optional[float]
    ci_low: Optional[float]
    ci_high: Optional[float]
    n: int
    n_clusters: int
    n_unparseable: int
    n_ambiguous: int
    n_unscorable: int = 0
    ci_method: Optional[str] = None
    n_effective: Optional[float] = None


@dataclass
class Score:
    dataset: str
    mode: Mode
    primary: str
    n_rows: int
    metrics: dict[str, MetricResult]
    level: float
    n_boot: int
    seed: int
    warnings: list[str] = field(default_factory=list)

    @property
    def value(self) -> Optional[float]:
        """The entry's own metric, in points."""
        return self.metrics[self.primary].value

    def to_dict(self) -> dict:
        d = asdict(self)
        d['ci_method'] = ci_description(self.metrics.values(), self.level, self.n_boot, self.seed)
        return d


def ci_description(metrics, level: float, n_boot: int, seed: int) -> str:
    parts = []
    for method in dict.fromkeys(m.ci_method for m in metrics if m.ci_method):
        names = ', '.join(m.name for m in metrics if m.ci_method == method)
        extra = f', {n_boot} resamples, seed {seed}' if method == 'bootstrap' else ''
        parts.append(f'{names}: {level:.0%} {METHODS[method]}{extra}')
    return '; '.join(parts)


def _points(x: float) -> Optional[float]:
    return None if x != x else 100.0 * x  # nan -> None


def summarize(entry: Entry, rows: Sequence[RowScore], mode: Mode = 'strict', *, n_boot: int = 2000,
              level: float = 0.95, seed: int = 0) -> Score:
    """Every metric the rows support, plus the entry's primary metric even if it has no rows."""
    kinds = {r.kind for r in rows}
    names = [m for m, ks in METRIC_KINDS.items() if kinds & set(ks)]
    if 'accuracy' in names and not kinds & {'classification', 'mc'} and entry.metric != 'accuracy':
        names.remove('accuracy')  # it would repeat closed_accuracy
    if entry.metric not in names:
        names.insert(0, entry.metric)
    metrics, warnings = {}, []
    for name in names:
        sub = metric_rows(rows, name)
        est = mean_ci([metric_value(r, name) for r in sub], [r.image_key for r in sub], binary=name in BINARY_METRICS,
                      n_boot=n_boot, level=level, seed=seed)
        metrics[name] = MetricResult(
            name=name, value=_points(est.mean), ci_low=_points(est.low), ci_high=_points(est.high), n=est.n,
            n_clusters=est.n_clusters, n_unparseable=sum(r.status in ('unparseable', 'unscorable') for r in sub),
            n_ambiguous=sum(r.status == 'ambiguous' for r in sub), n_unscorable=sum(r.status == 'unscorable' for r in sub),
            ci_method=est.method if est.n else None, n_effective=est.n_effective)
    if not metric_rows(rows, entry.metric):
        warnings.append(f'no rows for the primary metric {entry.metric!r}')
    if any(r.image_key == r.id for r in rows):
        warnings.append('some rows have no image_key; they are their own cluster (CIs may be too narrow)')
    bad = [r for r in rows if r.status == 'unscorable']
    if bad:
        named = '; '.join(f'{r.id}: {r.note}' for r in bad[:NAMED_UNSCORABLE])
        more = f'; and {len(bad) - NAMED_UNSCORABLE} more (status "unscorable" in the rows file)' \
            if len(bad) > NAMED_UNSCORABLE else ''
        warnings.append(f'{len(bad)} row(s) could not be scored and count as wrong (in the unparseable column): '
                        f'{named}{more}')
    return Score(dataset=entry.name, mode=mode, primary=entry.metric, n_rows=len(rows), metrics=metrics,
                 level=level, n_boot=n_boot, seed=seed, warnings=warnings)


# Task kinds scored by their own module (it registers itself; the package imports it): kind -> scorer
# with score_predictions' signature.
TASK_SCORERS: dict[str, Callable[..., tuple[Score, list[RowScore]]]] = {}


def score_predictions(entry: Entry, predictions: Sequence[Prediction], mode: Mode = 'strict', *,
                      n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[Score, list[RowScore]]:
    if entry.task.kind in TASK_SCORERS:   # e.g. caption tasks: eval/caption_metrics.py
        return TASK_SCORERS[entry.task.kind](entry, predictions, mode, n_boot=n_boot, level=level, seed=seed)
    rows = score_rows(entry, predictions, mode)
    return summarize(entry, rows, mode, n_boot=n_boot, level=level, seed=seed), rows


# ---------------------------------------------------------------------------- pairing arms

def compare_rows(a: Sequence[RowScore], b: Sequence[RowScore], metric: str, *, intersect: bool = False,
                 a_name: str = 'A', b_name: str = 'B', n_boot: int = 2000, level: float = 0.95,
                 seed: int = 0) -> PairedComparison:
    """Arm B vs arm A on `metric`'s rows, paired by question id, images as clusters.

    For the 0/1 metrics (accuracies, exact match): the exact cluster sign-flip test (McNemar's
    exact test where every image has one question) and the MOVER interval of the difference; for
    token recall / F1 the difference and its paired image-bootstrap CI only. Both arms must score
    the same questions of the same images.
    """
    va = {r.id: metric_value(r, metric) for r in metric_rows(a, metric)}
    vb = {r.id: metric_value(r, metric) for r in metric_rows(b, metric)}
    keys_a = {r.id: r.image_key for r in a}
    keys_b = {r.id: r.image_key for r in b}
    clash = [i for i in keys_a.keys() & keys_b.keys() if keys_a[i] != keys_b[i]]
    if clash:
        raise ValueError(f'arms {a_name!r} and {b_name!r} disagree on the image of {len(clash)} questions '
                         f'(e.g. {sorted(clash)[:3]}): they are not predictions on the same data')
    return compare_paired(va, vb, keys_a | keys_b, intersect=intersect, a_name=a_name, b_name=b_name,
                          n_boot=n_boot, level=level, seed=seed)
