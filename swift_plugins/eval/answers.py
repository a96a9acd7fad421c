"""Read the answer out of a model's output: the strict rules of `medres score` (README, "Scoring").

Text is normalized into tokens (numbers atomic, signs and comparisons kept, units and plurals
folded), answer wrappers are stripped, and an output is matched against a fixed option set (a
closed question's answers, an entry's labels or a row's choices, each with its synonyms):

- the option the output starts with decides, unless its sentence names another option (outside
  brackets) or a later clause is another option on its own ("no, yes");
- otherwise exactly one option must be named; several are ambiguous, none is unparseable;
- a negated option ("not DMSO", "non-epithelial", "rather than LSIL", "DMSO is unlikely") is not
  named; "no" inside a clause ("there is no fracture") is a determiner, not the answer "no";
- a letter ("B", "(B)", "Option B") is the option the prompt listed under that letter.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Literal, Mapping, Optional, Sequence

Parse = Literal['parsed', 'unparseable', 'ambiguous']

# ---------------------------------------------------------------------------- tokens

_CHARS = str.maketrans({
    '\u2010': '-', '\u2011': '-', '\u2012': '-', '\u2013': '-', '\u2212': '-', '\ufe63': '-', '\uff0d': '-',
    '\u2014': ',', '\u2015': ',',                       # an em dash separates clauses
    '\u2264': '<=', '\u2265': '>=', '\u00d7': 'x',
    '\u2018': "'", '\u2019': "'", '\u201c': '"', '\u201d': '"',
})
_TOKEN = re.compile(r"""
    (?P<num>\d{1,3}(?:,\d{3})+(?![\d,])|\d+(?:\.\d+)?|(?<!\d)\.\d+)   # 1,000  2.5  .5: one token each
  | (?P<word>[^\W\d_]+)                                              # letters only: "her2" is her 2
  | (?P<cmp><=|>=|=<|=>|<|>|=)
  | (?P<plus>\+)
  | (?P<minus>(?<=[^\W_])-(?![^\W_])|(?<![^\W_])-(?=\.?\d))         # "er-", "-5"; not "x-ray"
  | (?P<pct>%)
  | (?P<strong>[.!?;\n]+)
  | (?P<weak>[,:()\[\]{}"]|\s-\s)
""", re.X)
STRONG = '.'   # a sentence boundary inside a token stream
NUMBER_WORDS = {w: str(i) for i, w in enumerate(
    'zero one two three four five six seven eight nine ten'.split())}
_WORDS = NUMBER_WORDS | {
    'percent': '%', 'centimeter': 'cm', 'centimetre': 'cm', 'millimeter': 'mm', 'millimetre': 'mm',
    'micrometer': 'um', 'micrometre': 'um', 'micron': 'um', '\u03bcm': 'um', 'cannot': 'can not',
}
_PHRASES = [  # longest first; applied to both options and outputs
    (('less', 'than', 'or', 'equal', 'to'), ('<=',)), (('greater', 'than', 'or', 'equal', 'to'), ('>=',)),
    (('less', 'than'), ('<',)), (('fewer', 'than'), ('<',)), (('lower', 'than'), ('<',)),
    (('more', 'than'), ('>',)), (('greater', 'than'), ('>',)), (('higher', 'than'), ('>',)),
    (('at', 'least'), ('>=',)), (('at', 'most'), ('<=',)), (('per', 'cent'), ('%',)),
    (('=', '<'), ('<=',)), (('=', '>'), ('>=',)),
]
ARTICLES = frozenset({'a', 'an', 'the'})
# Words that start a new clause, ending a negation's scope ("not SCC but HSIL").
CLAUSE_WORDS = frozenset({'but', 'however', 'whereas', 'although', 'though'})


def _number(text: str) -> str:
    """Canonical spelling: 2.0 -> 2, 0.50 -> 0.5, .5 -> 0.5, 1,000 -> 1000, 007 -> 7."""
    t = text.replace(',', '')
    if '.' in t:
        whole, frac = t.split('.', 1)
        frac = frac.rstrip('0')
        whole = whole.lstrip('0') or '0'
        return f'{whole}.{frac}' if frac else whole
    return t.lstrip('0') or '0'


def _word(w: str) -> list[str]:
    # Plurals fold to the singular ("inhibitor" is "inhibitors"); -ss, -us, -is words keep their s.
    if w not in _WORDS and len(w) >= 4 and w.endswith('s') and not w.endswith(('ss', 'us', 'is')):
        w = w[:-1]
    return _WORDS.get(w, w).split()


def _prepare(text: str) -> str:
    text = unicodedata.normalize('NFKC', text).translate(_CHARS).casefold()
    text = re.sub(r'(?<=\d)\s*\*\s*(?=\d)', ' x ', text)  # 45.1*2.5 cm is 45.1 x 2.5 cm
    return re.sub(r"n't\b", ' not', text)


def _phrases(toks: list[str]) -> list[str]:
    out, i = [], 0
    while i < len(toks):
        for src, dst in _PHRASES:
            if tuple(toks[i:i + len(src)]) == src:
                out.extend(dst)
                i += len(src)
                break
        else:
            out.append(toks[i])
            i += 1
    return out


@dataclass(frozen=True)
class Stream:
    """An output as tokens. `clause[i]` numbers the clause of token i (commas, colons, brackets,
    dashes, "but" and sentence ends separate clauses), `sentence[i]` its sentence, `aside[i]` is
    True inside brackets; `STRONG` tokens mark sentence ends."""
    tokens: tuple[str, ...]
    clause: tuple[int, ...]
    sentence: tuple[int, ...]
    aside: tuple[bool, ...]

    def starts_clause(self, i: int) -> bool:
        return i == 0 or self.clause[i] != self.clause[i - 1] or self.tokens[i - 1] == STRONG

    def ends_clause(self, i: int) -> bool:
        """True when token i - 1 is the last of its clause."""
        return i >= len(self.tokens) or self.tokens[i] == STRONG or self.clause[i] != self.clause[i - 1]


def stream(text: str) -> Stream:
    rows: list[tuple[str, int, int, bool]] = []
    clause = sentence = depth = 0
    pending: list[str] = []   # words of the current clause, for phrase folding

    def flush():
        rows.extend((t, clause, sentence, depth > 0) for t in _phrases(pending))
        pending.clear()

    for m in _TOKEN.finditer(_prepare(text)):
        kind, s = m.lastgroup, m.group()
        if kind == 'weak' or (kind == 'word' and s in CLAUSE_WORDS):
            flush()
            clause += 1
            if s in ('(', '[', '{'):
                depth += 1
            elif s in (')', ']', '}'):
                depth = max(0, depth - 1)
        elif kind == 'strong':
            flush()
            if rows and rows[-1][0] != STRONG:
                rows.append((STRONG, clause, sentence, depth > 0))
            clause += 1
            sentence += 1
        elif kind == 'num':
            pending.append(_number(s))
        elif kind == 'word':
            pending.extend(_word(s))
        elif kind == 'cmp':
            pending.append({'=<': '<=', '=>': '>='}.get(s, s))
        else:
            pending.append(s)
    flush()
    while rows and rows[-1][0] == STRONG:
        rows.pop()
    while rows and rows[0][0] == STRONG:
        rows.pop(0)
    if not rows:
        return Stream((), (), (), ())
    toks, clauses, sentences, aside = zip(*rows)
    return Stream(toks, clauses, sentences, aside)


def tokens(text: str) -> list[str]:
    """The words, numbers and signs of `text`, normalized; punctuation dropped."""
    return [t for t in stream(text).tokens if t != STRONG]


def form(text: str) -> tuple[str, ...]:
    """What an option or a gold answer is matched as: its tokens, inner sentence ends kept."""
    return stream(text).tokens


# ---------------------------------------------------------------------------- answer wrappers

_THINK = re.compile(r'<think>.*?(?:</think>|$)', re.S | re.I)
_ANSWER_TAG = re.compile(r'<answer>\s*(.*?)\s*(?:</answer>|$)', re.S | re.I)
_BOXED = re.compile(r'\\boxed\{([^{}]*)\}')
_LEAD_MARKER = re.compile(
    r'^\s*(?:(?:so|thus|therefore|hence|overall|in\s+conclusion)\s*,?\s*)?(?:the\s+|my\s+|your\s+)?'
    r'(?:final\s+|correct\s+|right\s+|best\s+|most\s+likely\s+)?(?:answer|option|choice|response|prediction)'
    r'(?:\s+(?:is|would\s+be|will\s+be)\s*:?|\s*[:=]|\s+-\s)\s*', re.I)
_LAST_MARKER = re.compile(r'(?:final\s+answer(?:\s+is)?\s*:?|(?:^|\n)\s*answer\s*:)\s*', re.I)
_MARKDOWN = re.compile(r'(?<!\d)\*+|\*+(?!\d)|`+|(?<![^\W_])_{2,}|_{2,}(?![^\W_])|^\s*#+\s*', re.M)
_TAGS = re.compile(r'<\|[^|<>]*\|>|</?[a-z_]+/?>', re.I)   # <|im_end|>, <b>, </s>


def extract_answer(text: str) -> str:
    """The answer part of an output: reasoning and wrappers removed.

    `<answer>...</answer>` and `\\boxed{...}` give their content; `<think>...</think>` is dropped;
    after the last "Final answer:" (or an "Answer:" line) the rest is the answer; a leading "The
    answer is", "Answer:", "The correct option is" goes; markdown emphasis and quotes go.
    """
    text = _THINK.sub(' ', text)
    tag = _ANSWER_TAG.search(text)
    if tag:
        text = tag.group(1)
    else:
        boxed = _BOXED.search(text)
        if boxed:
            text = boxed.group(1)
        else:
            last = None
            for last in _LAST_MARKER.finditer(text):
                pass
            if last is not None:
                text = text[last.end():]
    text = _MARKDOWN.sub('', _TAGS.sub(' ', text))
    for _ in range(2):  # "Answer: The answer is B"
        text = _LEAD_MARKER.sub('', text, count=1)
    return text.strip().strip('"\'').strip()


# ---------------------------------------------------------------------------- negation

_PRE_NEGATION = {('not',), ('no',), ('non',), ('never',), ('neither',), ('nor',), ('without',), ('unlike',),
                 ('except',), ('excluding',), ('absent',), ('lacking',), ('rather', 'than'), ('instead', 'of'),
                 ('other', 'than'), ('absence', 'of'), ('lack', 'of'), ('rule', 'out'), ('ruled', 'out'),
                 ('negative', 'for'), ('free', 'of')}
_COPULA = frozenset({'is', 'are', 'was', 'were', 'be', 'been', 'seem', 'appear', 'look', 'very', 'most', 'highly'})
_POST_NEGATION = {('not',), ('unlikely',), ('excluded',), ('absent',), ('ruled', 'out')}


def _has(seq: Sequence[str], i: int, phrases) -> int:
    """Length of the phrase of `phrases` at seq[i], or 0."""
    for p in phrases:
        if tuple(seq[i:i + len(p)]) == p:
            return len(p)
    return 0


# ---------------------------------------------------------------------------- options

@dataclass(frozen=True)
class Mention:
    start: int
    end: int
    group: frozenset          # the option(s) these tokens name (several only when options collide)
    negated: bool = False
    bare: bool = False        # the mention is its whole clause(s)


@dataclass(frozen=True)
class Parsed:
    status: Parse
    option: Optional[str]                 # the option named (first of `group` when options collide)
    group: frozenset = frozenset()        # every option the answer's words match
    note: Optional[str] = None


_LETTER = re.compile(r'^(?:(?:option|choice)\s+\(?([a-z])\)?\b|\(([a-z])\)|\[([a-z])\]|([a-z])(?:[:)]|\.(?![a-z])|(?=\s*$)))'
                     r'\s*(.*)$', re.I | re.S)
_LETTER_LINE = re.compile(r'^\s*(?:\(([A-Z])\)|\[([A-Z])\]|([A-Z])[.):])\s*(\S.*?)\s*$', re.M)
_LETTER_INLINE = re.compile(r'\(([A-Z])\)\s*(.+?)(?=\s*\([A-Z]\)|\s*$)', re.S)


class OptionSet:
    """A fixed set of options (closed answers, labels or a row's choices) and their synonyms.

    Options whose tokens coincide ("2 cm" / "2.0 cm") are one answer spelled twice: they form one
    group, and an answer naming the group names each of them.
    """

    def __init__(self, options: Sequence[str], synonyms: Optional[Mapping[str, Sequence[str]]] = None):
        self.options = list(dict.fromkeys(options))
        aliases = {k.casefold(): list(v) for k, v in (synonyms or {}).items()}
        self._groups: dict[tuple[str, ...], set[str]] = {}
        self._own: dict[str, tuple[str, ...]] = {}
        for option in self.options:
            f = form(option)
            self._own[option] = f
            for spelling in [f] + [form(a) for a in aliases.get(option.casefold(), [])]:
                if spelling:
                    self._groups.setdefault(spelling, set()).add(option)
        self._by_len: dict[int, dict[tuple[str, ...], frozenset]] = {}
        for f, group in self._groups.items():
            self._by_len.setdefault(len(f), {})[f] = frozenset(group)
        self._lengths = sorted(self._by_len, reverse=True)

    def collisions(self) -> list[frozenset]:
        return sorted({frozenset(g) for g in self._groups.values() if len(g) > 1}, key=sorted)

    def group(self, text: str) -> frozenset:
        """The option(s) a string is (a gold answer, a prompt line), by its tokens; empty if none."""
        return self._by_len.get(len(f := form(text)), {}).get(f, frozenset())

    def canonical(self, text: str) -> Optional[str]:
        """The option `text` is exactly (case, punctuation and synonyms aside), preferring its own spelling."""
        g = self.group(text)
        if not g:
            return None
        f = form(text)
        return next((o for o in self.options if o in g and self._own[o] == f), sorted(g, key=self.options.index)[0])

    # ------------------------------------------------------------------------ letters

    def letters(self, prompt: Optional[str]) -> dict[str, str]:
        """{letter: option} for the options the prompt lists under letters ("A. x", "(B) y")."""
        if not prompt:
            return {}
        found: dict[str, str] = {}
        pairs = [(m.group(1) or m.group(2) or m.group(3), m.group(4)) for m in _LETTER_LINE.finditer(prompt)]
        pairs += [(m.group(1), m.group(2)) for m in _LETTER_INLINE.finditer(prompt)]
        for letter, text in pairs:
            g = self.group(text)
            if len(g) == 1:
                found.setdefault(letter.lower(), next(iter(g)))
        if len(found) < 2 or len(set(found.values())) != len(found):
            return {}
        return found

    # ------------------------------------------------------------------------ parsing

    def mentions(self, s: Stream) -> list[Mention]:
        toks, n = s.tokens, len(s.tokens)
        claimed = [False] * n
        found: list[Mention] = []
        for k in self._lengths:  # longer options claim their words first
            table = self._by_len[k]
            for i in range(n - k + 1):
                group = table.get(toks[i:i + k])
                if group is not None and not any(claimed[i:i + k]):
                    claimed[i:i + k] = [True] * k
                    found.append(Mention(i, i + k, group))
        found.sort(key=lambda m: m.start)
        # "no" followed by more words of its clause is a determiner ("there is no mass", "yes, no
        # mass"), unless it opens the answer ("No mass is seen").
        kept = [m for m in found if not (toks[m.start:m.end] == ('no',) and m.start > 0 and not s.ends_clause(m.end))]
        used = [False] * n
        for m in kept:
            used[m.start:m.end] = [True] * (m.end - m.start)
        out = []
        for m in kept:
            out.append(Mention(m.start, m.end, m.group, self._negated(s, m, used),
                               s.starts_clause(m.start) and s.ends_clause(m.end)))
        return out

    @staticmethod
    def _negated(s: Stream, m: Mention, used: list[bool]) -> bool:
        """A negation cue earlier in the mention's clause, or right after it ("DMSO is unlikely")."""
        toks = s.tokens
        i = m.start - 1
        while i >= 0 and toks[i] != STRONG and s.clause[i] == s.clause[m.start]:
            k = _has(toks, i, _PRE_NEGATION)
            if k and i + k <= m.start and not any(used[i:i + k]):
                return True
            i -= 1
        j, last = m.end, s.clause[m.end - 1]
        while j < len(toks) and toks[j] != STRONG and s.clause[j] == last and not used[j]:
            if _has(toks, j, _POST_NEGATION):
                return True
            if toks[j] not in _COPULA:
                break
            j += 1
        return False

    def parse(self, output: str, letters: Optional[Mapping[str, str]] = None) -> Parsed:
        """Which option `output` gives (see the module docstring for the rules)."""
        answer = extract_answer(output)
        if letters:
            hit = _LETTER.match(answer)
            if hit:
                letter = next(g for g in hit.groups()[:4] if g).lower()
                rest = hit.group(5).strip()
                if letter in letters:
                    chosen = letters[letter]
                    if rest:
                        other = self._parse_text(rest)
                        if other.status == 'parsed' and chosen not in other.group:
                            return Parsed('ambiguous', None, note=f'letter {letter.upper()} is {chosen!r} but the text '
                                                                  f'names {other.option!r}')
                    return Parsed('parsed', chosen, frozenset({chosen}))
                if not rest:
                    return Parsed('unparseable', None, note=f'letter {letter.upper()} is not one of the listed options')
        return self._parse_text(answer)

    def _parse_text(self, answer: str) -> Parsed:
        s = stream(answer)
        if not s.tokens:
            return Parsed('unparseable', None, note='empty answer')
        exact = self._by_len.get(len(s.tokens), {}).get(s.tokens)
        if exact is not None:
            return self._result(exact)
        mentions = self.mentions(s)
        affirmed = [m for m in mentions if not m.negated]
        lead = affirmed[0] if affirmed and affirmed[0].start == 0 else None
        if lead is not None:
            # Its sentence names nothing else (bracketed asides aside); no later clause is another option.
            sentence = s.sentence[lead.end - 1]
            rivals = {m.group for m in affirmed[1:] if m.group != lead.group
                      and ((s.sentence[m.start] == sentence and not s.aside[m.start]) or m.bare)}
            if rivals:
                return Parsed('ambiguous', None, note=self._names([lead.group, *rivals]))
            return self._result(lead.group)
        groups = list(dict.fromkeys(m.group for m in affirmed))
        if len(groups) == 1:
            return self._result(groups[0])
        if len(groups) > 1:
            return Parsed('ambiguous', None, note=self._names(groups))
        negated = list(dict.fromkeys(m.group for m in mentions))
        return Parsed('unparseable', None, note=('names only negated options: ' + self._names(negated)) if negated
                      else 'names no option')

    def _names(self, groups) -> str:
        return ', '.join(' / '.join(sorted(g, key=self.options.index)) for g in groups)

    def _result(self, group: frozenset) -> Parsed:
        first = sorted(group, key=self.options.index)[0]
        return Parsed('parsed', first, group)


def answer_tokens(text: str) -> list[str]:
    """Tokens for comparing free-text answers: wrappers stripped, articles dropped, numbers canonical.

    Only open answers drop articles: "the left lung" is "left lung", but an option may be "A".
    """
    return [t for t in tokens(extract_answer(text)) if t not in ARTICLES]


# ---------------------------------------------------------------------------- the paper's Subcellular rule

def first_match(text: str, candidates: Sequence[str]) -> Optional[str]:
    """The paper's cell-line rule (med_eval `infer_eval_subcellular.py`): the first case-insensitive
    regex hit among `candidates` (plain substrings, so "BJ" is found inside "object"), upper-cased.

    The paper joined a Python set into the alternation, so which of two candidates that start at
    the same character won depended on hash order; here the longer one wins, deterministically.
    """
    if not candidates:
        return None
    ordered = sorted(set(candidates), key=lambda c: (-len(c), c))
    hit = re.search('(?i)(' + '|'.join(map(re.escape, ordered)) + ')', text)
    return hit.group(1).upper() if hit else None
