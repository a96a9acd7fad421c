"""Verdicts of the strict scorer on the adversarial set (tests/scoring_cases.py), against the expected ones.

    python benchmarks/scoring_adversarial.py                             # the installed scorer
    PYTHONPATH=/tmp/old python benchmarks/scoring_adversarial.py         # another version's swift_plugins

Prints how many cases get the expected verdict, by expected verdict and by task, and lists the
ones that do not (an exception counts as "error": that row would have stopped the whole file).
"""
from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / 'tests'))

from scoring_cases import CASES, entry_for, prediction_for  # noqa: E402

from swift_plugins.eval.scoring import RowScorer  # noqa: E402


def verdicts() -> list[str]:
    entries = {name: entry_for(name) for name in dict.fromkeys(c.entry for c in CASES)}
    out = []
    for i, case in enumerate(CASES):
        entry = entries[case.entry]
        try:
            out.append(RowScorer(entry)(prediction_for(case, entry, i)).status)
        except Exception:  # noqa: BLE001 - an abort is the verdict being measured
            out.append('error')
    return out


def main() -> None:
    got = verdicts()
    agree = [g == c.verdict for g, c in zip(got, CASES)]
    by_verdict = {v: f'{sum(a for a, c in zip(agree, CASES) if c.verdict == v)}/{sum(c.verdict == v for c in CASES)}'
                  for v in dict.fromkeys(c.verdict for c in CASES)}
    by_task = {t: f'{sum(a for a, c in zip(agree, CASES) if c.entry == t)}/{sum(c.entry == t for c in CASES)}'
               for t in dict.fromkeys(c.entry for c in CASES)}
    false_credit = sum(g == 'correct' and c.verdict != 'correct' for g, c in zip(got, CASES))
    missed_credit = sum(g != 'correct' and c.verdict == 'correct' for g, c in zip(got, CASES))
    print(json.dumps({'cases': len(CASES), 'expected_verdict': sum(agree), 'by_expected_verdict': by_verdict,
                      'by_task': by_task, 'verdicts_given': Counter(got),
                      'credited_but_not_correct': false_credit, 'correct_but_not_credited': missed_credit,
                      'aborted_the_file': got.count('error')}, indent=2))
    for g, c, a in zip(got, CASES, agree):
        if not a:
            print(f'  {c.entry:9} {c.output[:60]!r:64} gold {c.gold!r}: got {g}, expected {c.verdict} ({c.why})')


if __name__ == '__main__':
    main()
