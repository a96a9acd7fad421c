"""Adversarial model outputs with the verdict a careful biomedical researcher gives each, and why.

Shared by tests/test_scoring_adversarial.py and benchmarks/scoring_adversarial.py (which counts
the verdicts of another version of the scorer on the same set). Option sets marked "WSI-VQA" are
verbatim from cpystan/WSI-VQA's WsiVQA_{train,val,test}.json.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

COMPOUND_LABELS = ['Actin disruptors', 'Aurora kinase inhibitors', 'Cholesterol-lowering', 'DNA damage',
                   'DNA replication', 'Eg5 inhibitors', 'Epithelial', 'Kinase inhibitors',
                   'Microtubule destabilizers', 'Microtubule stabilizers', 'Protein degradation',
                   'Protein synthesis', 'DMSO']
EVERY_COMPOUND = 'It could be ' + ', '.join(COMPOUND_LABELS) + '.'

# A Subcellular-like entry with cell lines as two HPA releases spell them (the challenge list vs
# Cellosaurus names); only spellings that differ in more than case and punctuation need a synonym.
CELL_LINES = ['A-431', 'A549', 'BJ', 'HEK 293', 'HeLa', 'Hep G2', 'MCF7', 'RT4', 'U-2 OS', 'U-251 MG']
CELL_SYNONYMS = {'Hep G2': ['HepG2'], 'BJ': ['BJ [Human fibroblast]'], 'U-251 MG': ['U251']}

# WSI-VQA option sets (verbatim).
SIZES_A = ['2 cm', '3 cm', '4 cm', '5 cm']
SIZES_B = ['1.4 cm', '2.8 cm', '3 cm', '3.2 cm']
SIZES_C = ['1.4 cm', '2.4 cm', '3.4 cm', '4.4 cm']
SIZES_MM = ['2.8 cm', '4 mm', '0.4 cm', '3 mm']
PERCENT = ['2%', '5%', '10%', '15%']
PERCENT_WORDS = ['less than 1%', 'approximately 2%', 'around 10%', 'more than 5%']
YES_NO_MORE = ['yes', 'no', 'not mentioned', 'cannot be determined']
STATUS = ['positive', 'negative', 'equivocal', 'not mentioned']
LVI = ['yes, lymphovascular invasion was observed.', 'no, lymphovascular invasion was observed.',
       'lymphovascular invasion not specifie',
       'b: no, lymphovascular invasion was observed. c: lymphovascular invasion not specified. '
       'd: immunostains are negative.']
GRADES = ['grade 1', 'grade 2', 'grade 3', 'grade 4']
TUMOURS = ['invasive ductal carcinoma', 'invasive lobular carcinoma', 'ductal carcinoma in situ', 'fibroadenoma']
# The receptor options the issue reports (signs only tell them apart) and a same-answer pair.
RECEPTORS = ['er- pr-', 'er+ pr-', 'er+ pr+', 'er- pr+']
CUTOFF = ['<5%', '>5%', '10%', 'not mentioned']
SAME_SIZE = ['2.0 cm', '1.5 cm', '2 cm', '3.0 cm']
LETTERED = 'What is the diagnosis?\nOptions:\nA. {}\nB. {}\nC. {}\nD. {}\nAnswer with the letter.'.format(*TUMOURS)


@dataclass(frozen=True)
class Case:
    entry: str            # vqa-rad, compound, cervical, wsi (registry) or cells (built in the test)
    output: str
    gold: str
    verdict: str          # correct / wrong / ambiguous / unparseable / unscorable
    why: str
    choices: Optional[tuple[str, ...]] = None
    prompt: Optional[str] = None   # None: the prompt medres itself writes for the row


def C(entry, output, gold, verdict, why, choices=None, prompt=None) -> Case:
    return Case(entry, output, gold, verdict, why, tuple(choices) if choices else None, prompt)


CASES = [
    # ------------------------------------------------------------------ closed yes/no (VQA-RAD)
    C('vqa-rad', 'Yes.', 'yes', 'correct', 'the plain answer'),
    C('vqa-rad', 'No', 'yes', 'wrong', 'the plain other answer'),
    C('vqa-rad', 'No, there is no fracture.', 'no', 'correct', 'leading "No" answers; the rest explains'),
    C('vqa-rad', 'Yes, no abnormality is seen.', 'yes', 'correct',
      'leading "Yes" answers; "no abnormality" is a determiner, not the answer no'),
    C('vqa-rad', 'Yes. No other abnormality.', 'yes', 'correct', 'the second sentence explains, it does not answer'),
    C('vqa-rad', 'yes\n\nExplanation: there is no fracture', 'yes', 'correct', 'explanation after the answer'),
    C('vqa-rad', 'No, no abnormality is seen.', 'no', 'correct', 'mirror of the yes case: both words alike'),
    C('vqa-rad', 'Yes, there is no fracture', 'no', 'wrong', 'the output answers yes; its gloss does not change that'),
    C('vqa-rad', 'no, yes', 'no', 'ambiguous', 'two answers, each a clause of its own'),
    C('vqa-rad', 'Yes or no', 'yes', 'ambiguous', 'both answers in the leading clause'),
    C('vqa-rad', 'Yes. No.', 'no', 'ambiguous', 'two one-word answers'),
    C('vqa-rad', 'not sure', 'no', 'unparseable', '"not" is not "no"'),
    C('vqa-rad', 'normal', 'no', 'unparseable', 'no yes/no answer given'),
    C('vqa-rad', 'unknown', 'no', 'unparseable', 'no yes/no answer given'),
    C('vqa-rad', 'Yesterday', 'yes', 'unparseable', 'whole words only'),
    C('vqa-rad', '', 'yes', 'unparseable', 'empty output'),
    C('vqa-rad', 'There is no fracture.', 'no', 'unparseable',
      'a "no" inside a sentence is a determiner; the scorer cannot know the question\'s polarity'),
    C('vqa-rad', "I don't know.", 'no', 'unparseable', "\"don't\" is a negation, not the answer no"),
    C('vqa-rad', '<answer>yes</answer>', 'yes', 'correct', 'answer tags are a wrapper'),
    C('vqa-rad', 'Answer: yes', 'yes', 'correct', '"Answer:" is a wrapper'),
    C('vqa-rad', 'The answer is no.', 'no', 'correct', '"The answer is" is a wrapper'),
    C('vqa-rad', '**Yes**, the mass is in the left lobe.', 'yes', 'correct', 'markdown emphasis is stripped'),
    C('vqa-rad', 'Based on the image, yes.', 'yes', 'correct', 'the only answer word starts its own clause'),
    C('vqa-rad', 'YES it is', 'yes', 'correct', 'case is ignored'),
    C('vqa-rad', 'The lungs are clear and there is no consolidation.\nFinal answer: no', 'no', 'correct',
      'the reasoning before "Final answer:" is not the answer'),
    C('vqa-rad', '<think>is there a fracture? no clear line</think>Yes', 'yes', 'correct', 'reasoning tags are dropped'),
    # ------------------------------------------------------------------ label set with nested names (Compound)
    C('compound', 'Not DMSO.', 'DMSO', 'unparseable', 'a negated label is not an answer'),
    C('compound', 'It is not kinase inhibitors; I cannot tell.', 'Kinase inhibitors', 'unparseable',
      'negated, then a refusal'),
    C('compound', 'aurora kinase inhibitors', 'Kinase inhibitors', 'wrong', 'the longer, nested label is named'),
    C('compound', 'Kinase inhibitors', 'Aurora kinase inhibitors', 'wrong', 'the broader label is another class'),
    C('compound', 'These are kinase inhibitors.', 'Kinase inhibitors', 'correct', 'one label in a sentence'),
    C('compound', 'a kinase inhibitor', 'Kinase inhibitors', 'correct',
      'singular of the label; the article "a" is not a letter'),
    C('compound', 'cholesterol lowering', 'Cholesterol-lowering', 'correct', 'hyphen vs space'),
    C('compound', 'Microtubule stabilizers', 'Microtubule destabilizers', 'wrong', 'a different label'),
    C('compound', 'DNA', 'DNA damage', 'unparseable', 'part of two labels names neither'),
    C('compound', 'Actin disruptors or DNA damage', 'DNA damage', 'ambiguous', 'two labels offered'),
    C('compound', EVERY_COMPOUND, 'Eg5 inhibitors', 'ambiguous', 'every label listed'),
    C('compound', 'non-epithelial', 'Epithelial', 'unparseable', '"non-" negates the label'),
    C('compound', 'DMSO rather than actin disruptors', 'DMSO', 'correct', '"rather than" negates the second label'),
    C('compound', 'Not DMSO, but actin disruptors.', 'Actin disruptors', 'correct', 'negated one, affirmed the other'),
    C('compound', 'Eg-5 inhibitor', 'Eg5 inhibitors', 'correct', 'hyphen and singular'),
    C('compound', 'Mechanism of action: Protein synthesis', 'Protein synthesis', 'correct', 'a header before the label'),
    C('compound', 'Protein degradation is unlikely; these look like DMSO controls.', 'DMSO', 'correct',
      '"is unlikely" negates the first label'),
    C('compound', 'Neither DNA damage nor DNA replication.', 'DNA damage', 'unparseable', 'both negated'),
    C('compound', 'Aurora kinase inhibitors (a subclass of kinase inhibitors)', 'Aurora kinase inhibitors',
      'correct', 'the leading label answers; the bracket explains'),
    # ------------------------------------------------------------------ Bethesda categories (Cervical, entry synonyms)
    C('cervical', 'NILM', 'NILM', 'correct', 'the label'),
    C('cervical', 'Not NILM', 'NILM', 'unparseable', 'a negated label is not an answer'),
    C('cervical', 'Negative for intraepithelial lesion or malignancy', 'NILM', 'correct',
      'the Bethesda full name the prompt spells out'),
    C('cervical', 'High-grade squamous intraepithelial lesion', 'HSIL', 'correct', 'Bethesda full name'),
    C('cervical', 'Squamous cell carcinoma', 'SCC', 'correct', 'Bethesda full name'),
    C('cervical', 'Low-grade squamous intraepithelial lesion (LSIL)', 'LSIL', 'correct', 'full name and abbreviation agree'),
    C('cervical', 'High-grade squamous intraepithelial lesion', 'LSIL', 'wrong', 'the other grade'),
    C('cervical', 'HSIL', 'LSIL', 'wrong', 'another label'),
    C('cervical', 'LSIL or HSIL', 'HSIL', 'ambiguous', 'two labels offered'),
    C('cervical', 'Bethesda category: HSIL; no evidence of squamous cell carcinoma.', 'HSIL', 'correct',
      '"no evidence of" negates SCC'),
    C('cervical', 'This is not squamous cell carcinoma but HSIL', 'HSIL', 'correct', '"but" ends the negation'),
    C('cervical', 'Negative for Intraepithelial malignancy', 'NILM', 'correct', "the dataset's own folder name"),
    C('cervical', 'Atypical squamous cells of undetermined significance', 'LSIL', 'unparseable',
      'ASC-US is not one of the four categories'),
    # ------------------------------------------------------------------ multiple choice and numbers (WSI)
    C('wsi', '2.5 cm', '5 cm', 'unparseable', '2.5 is one number, not "5 cm"', SIZES_A),
    C('wsi', '4.3 cm', '3 cm', 'unparseable', '4.3 is not 3', SIZES_B),
    C('wsi', 'The tumour measures 3.2 cm in greatest dimension.', '3.2 cm', 'correct', 'one option in a sentence', SIZES_B),
    C('wsi', '3 cm', '3.2 cm', 'wrong', '3 is not 3.2', SIZES_B),
    C('wsi', 'The tumor measures 4.4cm.', '4.4 cm', 'correct', 'number and unit written together', SIZES_C),
    C('wsi', '7.5%', '5%', 'unparseable', '7.5 is not 5', PERCENT),
    C('wsi', '1.4 mm', '4 mm', 'unparseable', '1.4 is not 4', SIZES_MM),
    C('wsi', '4 millimeters', '4 mm', 'correct', 'unit spelled out', SIZES_MM),
    C('wsi', '>5%', 'more than 5%', 'correct', '">" is "more than"', PERCENT_WORDS),
    C('wsi', 'less than 1 percent', 'less than 1%', 'correct', '"percent" is "%"', PERCENT_WORDS),
    C('wsi', 'ER+ PR-', 'er+ pr-', 'correct', 'signs are kept, so these options can be told apart', RECEPTORS),
    C('wsi', 'er- pr-', 'er+ pr-', 'wrong', 'a sign differs', RECEPTORS),
    C('wsi', '>5%', '<5%', 'wrong', 'comparison characters are kept', CUTOFF),
    C('wsi', 'less than 5%', '<5%', 'correct', '"less than" is "<"', CUTOFF),
    C('wsi', 'Not mentioned.', 'not mentioned', 'correct', 'an option that contains "not"', YES_NO_MORE),
    C('wsi', 'No, it is not mentioned.', 'no', 'ambiguous', 'two options named', YES_NO_MORE),
    C('wsi', 'No lymphovascular invasion is identified.', 'no', 'correct', 'leading "No" answers', YES_NO_MORE),
    C('wsi', 'not positive', 'positive', 'unparseable', 'negated; not the complement either', STATUS),
    C('wsi', 'no, lymphovascular invasion was observed.', 'no, lymphovascular invasion was observed.', 'correct',
      'verbatim option (itself self-contradictory, as published)', LVI),
    C('wsi', 'Grade 2 (moderately differentiated)', 'grade 2', 'correct', 'option with an explanation', GRADES),
    C('wsi', '2 cm', '2.0 cm', 'correct', '"2 cm" and "2.0 cm" are one answer listed twice', SAME_SIZE),
    C('wsi', 'B', 'invasive lobular carcinoma', 'correct', 'the prompt lists lettered options', TUMOURS, LETTERED),
    C('wsi', '(C) ductal carcinoma in situ', 'ductal carcinoma in situ', 'correct', 'letter and text agree',
      TUMOURS, LETTERED),
    C('wsi', 'The correct option is D.', 'fibroadenoma', 'correct', 'a wrapped letter', TUMOURS, LETTERED),
    C('wsi', 'B. ductal carcinoma in situ', 'invasive lobular carcinoma', 'ambiguous', 'letter and text disagree',
      TUMOURS, LETTERED),
    C('wsi', 'B', 'invasive lobular carcinoma', 'unparseable', 'the prompt lists no letters', TUMOURS),
    C('wsi', 'A', 'invasive ductal carcinoma', 'unparseable', 'the prompt lists no letters, so "A" is no option', TUMOURS),
    C('wsi', 'invasive lobular carcinoma', 'lobular carcinoma in situ', 'unscorable',
      'the gold answer is not among the options (29 such WSI-VQA train items)', TUMOURS),
    # ------------------------------------------------------------------ cell lines across HPA releases (entry synonyms)
    C('cells', 'HEK293', 'HEK 293', 'correct', 'Cellosaurus spelling'),
    C('cells', 'U2OS cells', 'U-2 OS', 'correct', 'Cellosaurus spelling'),
    C('cells', 'HepG2', 'Hep G2', 'correct', "a synonym from the entry"),
    C('cells', 'MCF-7', 'MCF7', 'correct', 'hyphenated spelling'),
    C('cells', 'A431', 'A-431', 'correct', 'unhyphenated spelling'),
    C('cells', 'This is a HeLa cell line.', 'HeLa', 'correct', 'the article "a" is not A-431'),
    C('cells', 'U-251 MG', 'U-2 OS', 'wrong', 'another line'),
    C('cells', 'Not HeLa; likely U2OS.', 'U-2 OS', 'correct', 'negated one, named the other'),
    C('cells', 'BJ [Human fibroblast]', 'BJ', 'correct', 'the newer release names BJ this way'),
    C('cells', 'The object shows HeLa cells.', 'HeLa', 'correct', '"BJ" inside "object" is no cell line'),
]


def entry_for(name: str):
    """The registry entry a case is scored against (`cells` is built here, like a user's own entry)."""
    from swift_plugins.data.registry import Entry, get_entry
    if name != 'cells':
        return get_entry(name)
    return Entry.model_validate({
        'name': 'cells', 'title': 'cell lines', 'modality': 'microscopy', 'task': {'kind': 'classification'},
        'metric': 'accuracy', 'sources': {'local': '.'}, 'splits': {'test': {'hub_split': 'test'}},
        'default_split': 'test', 'labels': CELL_LINES, 'synonyms': CELL_SYNONYMS,
        'prompt': {'question': 'Which cell line is shown? Answer with one of: {labels}.'},
        'native_size': {'width': 8, 'height': 8}, 'license': 'x', 'citation': 'x'})


def prediction_for(case: Case, entry, index: int = 0):
    """The row `swift infer` would write for this case, with the prompt medres renders (or the case's)."""
    from dataclasses import fields

    from swift_plugins.eval.predictions import Prediction
    # As data/rows.py `format_question` renders it (not imported: that module loads ms-swift, ~10 s).
    prompt = case.prompt if case.prompt is not None else entry.prompt.question.format(
        question='What is shown?', labels=', '.join(entry.labels or []), choices='\n'.join(case.choices or ()))
    values = dict(id=f'{entry.name}/test/{index}', gold=case.gold, response=case.output, image_key=f'img{index}',
                  choices=case.choices, line=index + 1, prompt=prompt)
    names = {f.name for f in fields(Prediction)}  # older versions of the scorer read no prompt
    return Prediction(**{k: v for k, v in values.items() if k in names})
