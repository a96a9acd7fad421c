"""The strict scorer on adversarial outputs of the kind real models write (tests/scoring_cases.py):
closed yes/no, label sets with nested names, Bethesda and cell-line synonyms, multiple choice and numbers."""
import pytest
from scoring_cases import CASES, CELL_LINES, entry_for, prediction_for

from swift_plugins.data.registry import Entry
from swift_plugins.eval.scoring import RowScorer

ENTRIES = {name: entry_for(name) for name in dict.fromkeys(c.entry for c in CASES)}


def test_the_set_is_large_and_covers_every_kind_of_task():
    assert len(CASES) >= 60
    assert {c.entry for c in CASES} == {'vqa-rad', 'compound', 'cervical', 'wsi', 'cells'}
    assert {c.verdict for c in CASES} == {'correct', 'wrong', 'ambiguous', 'unparseable', 'unscorable'}


@pytest.mark.parametrize('case', CASES, ids=[f'{c.entry}:{c.output[:40]!r}->{c.gold}' for c in CASES])
def test_adversarial_verdicts(case):
    entry = ENTRIES[case.entry]
    row = RowScorer(entry)(prediction_for(case, entry))
    assert row.status == case.verdict, f'{case.why}; note: {row.note}'
    assert row.correct == (case.verdict == 'correct')
    if case.verdict == 'correct':
        assert row.parsed == case.gold
    if case.verdict in ('ambiguous', 'unparseable', 'unscorable'):
        assert row.note  # every row that is not scored says why


def test_synonyms_come_from_the_entry():
    """HepG2 is Hep G2 only because the entry says so; an entry without synonyms cannot read it."""
    case = next(c for c in CASES if c.output == 'HepG2')
    bare = Entry.model_validate(ENTRIES['cells'].model_dump(exclude={'synonyms'}) | {'labels': CELL_LINES})
    assert RowScorer(ENTRIES['cells'])(prediction_for(case, ENTRIES['cells'])).status == 'correct'
    assert RowScorer(bare)(prediction_for(case, bare)).status == 'unparseable'
