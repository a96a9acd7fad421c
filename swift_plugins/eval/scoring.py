"""Score predictions against their registry entry, per row and in summary with clustered CIs.

Two modes. `strict` (default) parses an answer out of the output: a closed question is answered
only when the output starts with one allowed answer and names no other; a classification or
multiple-choice output must name exactly one label (whole words, longest label first). `compat`
reproduces the paper's evaluation code (cliangyu/med_eval): a closed or label answer is right when
the gold string occurs anywhere in the lower-cased output, and open answers get LLaVA-Med's token
recall. Compat exists to compare with published numbers, not to report new ones.
"""
from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Literal, Optional, Sequence

from ..data.registry import Entry
from ..errors import ScoreError
from ..vocabulary import SCORING_MODES
from .predictions import Prediction
from .stats import PairedComparison, cluster_bootstrap_ci, compare_paired

Mode = Literal['strict', 'compat']
Kind = Literal['closed', 'open', 'classification', 'mc', 'caption', 'caption_recall_only']
Status = Literal['correct', 'wrong', 'unparseable', 'ambiguous']
Parse = Literal['parsed', 'unparseable', 'ambiguous']
MODES = SCORING_MODES


# ---------------------------------------------------------------------------- normalization

_WORD = re.compile(r'[^\W_]+')  # runs of letters and digits, any script
ARTICLES = frozenset({'a', 'an', 'the'})
NUMBER_WORDS = {w: str(i) for i, w in enumerate(
    'zero one two three four five six seven eight nine ten'.split())}


def tokens(text: str) -> list[str]:
    """Case-folded words: punctuation, hyphens and whitespace all separate words."""
    return _WORD.findall(unicodedata.normalize('NFKC', text).casefold())


def answer_tokens(text: str) -> list[str]:
    """Tokens for comparing free-text answers: articles dropped, number words as digits.

    Only open answers use this: articles never distinguish two medical answers ("the left lung"
    is "left lung"), but a multiple-choice option may be the letter "A".
    """
    return [NUMBER_WORDS.get(t, t) for t in tokens(text) if t not in ARTICLES]


def normalize_answer(text: str) -> str:
    return ' '.join(answer_tokens(text))


# ---------------------------------------------------------------------------- label parsing

class LabelMatcher:
    """Find which of a fixed set of labels an output names, on whole-word token sequences.

    Longer labels claim their words first, so "Aurora kinase inhibitors" is not also read as
    "Kinase inhibitors". Labels that normalize to the same words cannot be told apart and are
    refused rather than scored arbitrarily.
    """

    def __init__(self, labels: Sequence[str]):
        self.labels = list(labels)
        self._words: dict[str, tuple[str, ...]] = {}
        seen: dict[tuple[str, ...], str] = {}
        for label in self.labels:
            words = tuple(tokens(label))
            if not words:
                raise ScoreError(f'label {label!r} has no letters or digits to match')
            if words in seen and seen[words] != label:
                raise ScoreError(f'labels {seen[words]!r} and {label!r} differ only in case or punctuation; '
                                 'strict scoring cannot tell them apart')
            seen[words] = label
            self._words[label] = words
        self._order = sorted(self._words, key=lambda lb: (-len(self._words[lb]), -len(lb)))

    def find(self, text: str) -> list[tuple[str, int]]:
        """(label, first token position) of every label named, by position."""
        toks = tokens(text)
        claimed = [False] * len(toks)
        found: dict[str, int] = {}
        for label in self._order:
            words, k = self._words[label], len(self._words[label])
            for i in range(len(toks) - k + 1):
                if tuple(toks[i:i + k]) == words and not any(claimed[i:i + k]):
                    claimed[i:i + k] = [True] * k
                    found.setdefault(label, i)
        return sorted(found.items(), key=lambda kv: kv[1])

    def canonical(self, answer: str) -> Optional[str]:
        """The label that `answer` is, ignoring case and punctuation."""
        words = tuple(tokens(answer))
        return next((lb for lb, w in self._words.items() if w == words), None)


def parse_label(text: str, matcher: LabelMatcher) -> tuple[Parse, Optional[str]]:
    """Classification / multiple choice: exactly one distinct label named."""
    labels = {label for label, _ in matcher.find(text)}
    if not labels:
        return 'unparseable', None
    if len(labels) > 1:
        return 'ambiguous', None
    return 'parsed', labels.pop()


def parse_closed(text: str, matcher: LabelMatcher) -> tuple[Parse, Optional[str]]:
    """Closed question: the output starts with one allowed answer and names no other."""
    found = matcher.find(text)
    if not found or found[0][1] != 0:
        # Leading words decide: "there is no ..." or "not sure" do not answer a yes/no question.
        return 'unparseable', None
    if len({label for label, _ in found}) > 1:
        return 'ambiguous', None
    return 'parsed', found[0][0]


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
    # Open rows: the exact match. Compat rows: the substring rule's verdict.
    correct: bool
    parsed: Optional[str] = None
    token_recall: Optional[float] = None
    token_f1: Optional[float] = None
    exact_match: Optional[bool] = None


def _closed_answers(entry: Entry) -> list[str]:
    return entry.task.closed_answers or entry.labels or ['yes', 'no']


class RowScorer:
    """Scores the rows of one entry in one mode (label matchers are built once per option set)."""

    def __init__(self, entry: Entry, mode: Mode = 'strict'):
        if mode not in MODES:
            raise ValueError(f'mode must be one of {MODES}, got {mode!r}')
        self.entry, self.mode = entry, mode
        self._matchers: dict[tuple[str, ...], LabelMatcher] = {}
        self._closed_lower = {a.lower() for a in _closed_answers(entry)}

    def matcher(self, options: Sequence[str]) -> LabelMatcher:
        key = tuple(options)
        if key not in self._matchers:
            self._matchers[key] = LabelMatcher(options)
        return self._matchers[key]

    def kind(self, gold: str) -> Kind:
        kind = self.entry.task.kind
        if kind == 'vqa':
            if self.mode == 'compat':  # med_eval: `answer.lower() in ['yes', 'no']`
                return 'closed' if gold.lower() in self._closed_lower else 'open'
            return 'closed' if self.matcher(_closed_answers(self.entry)).canonical(gold) is not None else 'open'
        return {'closed_vqa': 'closed', 'open_vqa': 'open', 'classification': 'classification',
                'multiple_choice': 'mc'}[kind]

    def options(self, pred: Prediction, kind: Kind) -> list[str]:
        if kind == 'closed':
            return _closed_answers(self.entry)
        if kind == 'mc' and pred.choices:
            return list(pred.choices)
        if self.entry.labels:
            return self.entry.labels
        raise ScoreError(f'{pred.id}: a multiple-choice row needs its options: neither '
                         f'chat_template_kwargs.medres.choices nor the labels of entry {self.entry.name!r} give them')

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

        options = self.options(pred, kind)
        if self.mode == 'compat':
            if pred.gold.lower() not in {o.lower() for o in options}:
                raise ScoreError(f'{pred.id}: gold answer {pred.gold!r} is not one of the options {options}')
            # med_eval: `gt in pred.lower()` (eval_hussain.py; infer_eval.py for yes/no).
            hit = pred.gold.lower() in pred.response.lower()
            return RowScore(**base, status='correct' if hit else 'wrong', correct=hit)
        m = self.matcher(options)
        gold = m.canonical(pred.gold)
        if gold is None:
            raise ScoreError(f'{pred.id}: gold answer {pred.gold!r} is not one of the options {options}')
        status, parsed = (parse_closed if kind == 'closed' else parse_label)(pred.response, m)
        if status == 'parsed':
            status = 'correct' if parsed == gold else 'wrong'
        return RowScore(**base, status=status, correct=status == 'correct', parsed=parsed)


def score_rows(entry: Entry, predictions: Sequence[Prediction], mode: Mode = 'strict') -> list[RowScore]:
    scorer = RowScorer(entry, mode)
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


@dataclass
class MetricResult:
    """A metric in points (0-100) with its cluster-bootstrap CI; None where there are no rows."""
    name: str
    value: Optional[float]
    ci_low: Optional[float]
    ci_high: Optional[float]
    n: int
    n_clusters: int
    n_unparseable: int
    n_ambiguous: int


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
        d['ci_method'] = (f'{self.level:.0%} percentile bootstrap over images (questions resampled with '
                          f'their image), {self.n_boot} resamples, seed {self.seed}')
        return d


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
        est = cluster_bootstrap_ci([metric_value(r, name) for r in sub], [r.image_key for r in sub],
                                   n_boot=n_boot, level=level, seed=seed)
        metrics[name] = MetricResult(
            name=name, value=_points(est.mean), ci_low=_points(est.low), ci_high=_points(est.high), n=est.n,
            n_clusters=est.n_clusters, n_unparseable=sum(r.status == 'unparseable' for r in sub),
            n_ambiguous=sum(r.status == 'ambiguous' for r in sub))
    if not metric_rows(rows, entry.metric):
        warnings.append(f'no rows for the primary metric {entry.metric!r}')
    if any(r.image_key == r.id for r in rows):
        warnings.append('some rows have no image_key; they are their own cluster (CIs may be too narrow)')
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
    """Arm B vs arm A on `metric`'s rows, paired by question id, CI clustered by image.

    McNemar's exact test for the binary metrics (accuracies, exact match); the difference and its
    CI only for token recall / F1. Both arms must score the same questions of the same images.
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
