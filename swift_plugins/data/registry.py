"""The dataset registry: one YAML file per dataset, validated on load.

Built-in entries live in `datasets_registry/` (shipped inside the wheel as
`swift_plugins/datasets_registry`). Users add or override entries with folders of such files
(`MEDRES_REGISTRY`, or `medres --registry DIR`; `Settings.registry_dirs`). Every fact about a
dataset (prompt, label set, synonyms, metric, native size, sources) lives in its entry only.
"""
from __future__ import annotations

import re
import string
import unicodedata
from functools import lru_cache
from pathlib import Path
from typing import Literal, Optional, Sequence

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..errors import RegistryError
from ..vocabulary import Env, entry_name, registered_name

BUILTIN_DIR = Path(__file__).resolve().parent.parent / 'datasets_registry'

Modality = Literal['radiology', 'pathology', 'microscopy', 'cytology', 'clinical', 'dermatology',
                   'ophthalmology', 'endoscopy', 'synthetic', 'other']
TaskKind = Literal['closed_vqa', 'open_vqa', 'vqa', 'classification', 'multiple_choice', 'caption']
Metric = Literal['closed_accuracy', 'accuracy', 'token_recall', 'exact_match', 'mention_accuracy', 'mention_macro_recall']
# Metrics of a `caption` task: facts read out of a generated description (eval/caption_metrics.py).
CAPTION_METRICS = ('mention_accuracy', 'mention_macro_recall')
PROMPT_FIELDS = {'question', 'labels', 'choices'}
# The closed answers of a `closed_vqa` entry that names none (as the scorer assumes).
DEFAULT_CLOSED_ANSWERS = ('yes', 'no')
_WORD = re.compile(r'[^\W_]+')


def answer_words(text: str) -> tuple[str, ...]:
    """Case-folded words (letters and digits), the scorer's comparison unit (`eval.scoring.tokens`)."""
    return tuple(_WORD.findall(unicodedata.normalize('NFKC', text).casefold()))
ChannelColor = Literal['red', 'green', 'blue', 'yellow', 'cyan', 'magenta', 'gray', 'none']


class _Strict(BaseModel):
    # Unknown keys are typos until proven otherwise: reject them so the error names the field.
    model_config = ConfigDict(extra='forbid', frozen=True)


def _no_yaml_booleans(v):
    if isinstance(v, list) and any(isinstance(x, bool) for x in v):
        raise ValueError('YAML reads unquoted yes/no/true/false/on/off as booleans: quote them, e.g. ["yes", "no"]')
    return v


def _check_template(v: Optional[str]) -> Optional[str]:
    if v is None:
        return v
    names = {name for _, name, _, _ in string.Formatter().parse(v) if name is not None}
    unknown = names - PROMPT_FIELDS
    if unknown:
        raise ValueError(f'unknown placeholder(s) {sorted(unknown)}; allowed: {sorted(PROMPT_FIELDS)}')
    return v


class Task(_Strict):
    kind: TaskKind
    # For `vqa`: a row whose answer is one of these is a closed question, the rest are open.
    closed_answers: list[str] = Field(default_factory=list)
    # For `caption` (the answer is a free-text description): metric -> the row column holding the fact
    # the description is scored on. `mention_accuracy`: a string column (e.g. cell_line), right when
    # the first of the split's values named in the output is the row's; `mention_macro_recall`: a list
    # column (e.g. localizations), each value's recall over the rows that have it, averaged.
    targets: dict[str, str] = Field(default_factory=dict)
    # How `medres score --compat` reads a label answer, as the paper's code did for this dataset:
    # `substring` (gold anywhere in the output) or `first_match` (the first candidate named, as
    # its Subcellular evaluation; candidates are the gold answers of the scored file).
    compat: Literal['substring', 'first_match'] = 'substring'

    _closed_strings = field_validator('closed_answers', mode='before')(_no_yaml_booleans)

    @field_validator('targets')
    @classmethod
    def _caption_metrics(cls, v: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(v) - set(CAPTION_METRICS))
        if unknown:
            raise ValueError(f'{unknown} are not caption metrics; allowed: {list(CAPTION_METRICS)}')
        return v


class Sources(_Strict):
    hf: Optional[str] = None
    ms: Optional[str] = None
    # A folder in the hub's own layout (e.g. data/train-*.parquet) or a prepared folder.
    local: Optional[str] = None
    subset: str = 'default'
    hf_revision: Optional[str] = None
    ms_revision: Optional[str] = None


class Split(_Strict):
    hub_split: str
    rows: Optional[int] = Field(default=None, ge=0)
    # This split's question template instead of `prompt.question` (the paper asks its Subcellular
    # test images another question than the one its training captions answer).
    question: Optional[str] = None

    _template = field_validator('question')(_check_template)


class Columns(_Strict):
    image: str = 'image'
    question: Optional[str] = 'question'
    answer: str = 'answer'
    # Multiple choice: a column holding the list of options.
    choices: Optional[str] = None
    # The dataset's own row id: kept in every row (and so in `swift infer`'s predictions) as
    # `source_id`; ids must be unique within a split.
    id: Optional[str] = None


class Prompt(_Strict):
    system: str = 'You are a biomedical expert.'
    # str.format template over {question}, {labels} (the entry's label set) and {choices}.
    question: str = '{question}'

    _template = field_validator('question')(_check_template)


class NativeSize(_Strict):
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    note: Optional[str] = None


class Channel(_Strict):
    """One stain of a multichannel source and the colour it gets in the RGB composite."""
    name: str
    # How the converter finds the stain: a file-name suffix or a metadata-table column (not needed
    # when the stains are planes of one file, found by `index`).
    source: Optional[str] = None
    # Its plane in a single multichannel file (multi-page TIFF, stacked array), when it has one.
    index: Optional[int] = Field(default=None, ge=0)
    # `none` documents a stain that is deliberately left out of the composite.
    color: ChannelColor
    weight: float = Field(default=1.0, gt=0)


class Entry(_Strict):
    name: str = Field(pattern=r'^[a-z0-9][a-z0-9._-]*$')
    title: str
    description: str = ''
    modality: Modality
    task: Task
    metric: Metric
    sources: Sources
    splits: dict[str, Split]
    default_split: str = 'train'
    columns: Columns = Columns()
    prompt: Prompt = Prompt()
    # For `caption`: the known values of the `mention_accuracy` target (normalised to, not enforced).
    labels: Optional[list[str]] = None
    # Other spellings of a label or closed answer that mean it (e.g. `HEK293` for `HEK 293`).
    synonyms: dict[str, list[str]] = Field(default_factory=dict)
    # Multichannel sources: the explicit stain-to-RGB mapping that `medres prepare` applies.
    channels: Optional[list[Channel]] = None
    # Integer codes a raw source uses for named values, per code table: `<table>: [name of 0, name of 1, ...]`.
    codes: dict[str, list[str]] = Field(default_factory=dict)
    native_size: NativeSize
    license: str
    citation: str
    homepage: Optional[str] = None
    # Set by the loader, not by the file: where the entry came from.
    path: Optional[str] = Field(default=None, exclude=True)

    _label_strings = field_validator('labels', mode='before')(_no_yaml_booleans)

    @model_validator(mode='after')
    def _consistent(self) -> 'Entry':
        if not (self.sources.hf or self.sources.ms or self.sources.local):
            raise ValueError('sources: give at least one of hf, ms, local')
        if not self.splits:
            raise ValueError('splits: at least one split is required')
        if self.default_split not in self.splits:
            raise ValueError(f'default_split {self.default_split!r} is not one of splits {sorted(self.splits)}')
        if self.task.kind == 'classification' and not self.labels:
            raise ValueError('labels: a classification task needs its label set')
        if self.labels is not None and len(set(self.labels)) != len(self.labels):
            raise ValueError('labels: duplicate labels')
        if self.task.kind == 'multiple_choice' and not self.columns.choices:
            raise ValueError('columns.choices: a multiple_choice task needs the column holding its options')
        if self.task.kind == 'vqa' and not self.task.closed_answers:
            raise ValueError('task.closed_answers: a vqa task (closed + open questions) needs the closed answer set')
        caption_metric = self.metric in CAPTION_METRICS
        if (self.task.kind == 'caption') != caption_metric or (self.task.targets and self.task.kind != 'caption'):
            raise ValueError(f'metric {self.metric!r}: the caption metrics {list(CAPTION_METRICS)} go with task.kind '
                             f'caption and task.targets, and only with them')
        if caption_metric and self.metric not in self.task.targets:
            raise ValueError(f'task.targets: a caption task needs the column its metric {self.metric!r} reads')
        if self.channels is not None:
            for what in ('name', 'source', 'index'):
                values = [getattr(c, what) for c in self.channels if getattr(c, what) is not None]
                if len(set(values)) != len(values):
                    raise ValueError(f'channels: duplicate channel {what}s {values}')
            unlocated = [c.name for c in self.channels if c.source is None and c.index is None]
            if unlocated:
                raise ValueError(f'channels: {unlocated} need a `source` (file suffix or column) or a plane `index`')
            if all(c.color == 'none' for c in self.channels):
                raise ValueError('channels: every channel has color none; the composite would be black')
        answers = set(self.labels or []) | set(self.task.closed_answers)
        unknown = sorted(set(self.synonyms) - answers)
        if unknown:
            raise ValueError(f'synonyms: {unknown} are not labels or closed answers of this entry')
        owner: dict[str, str] = {}
        for label, aliases in self.synonyms.items():
            for alias in aliases:
                if owner.setdefault(alias.casefold(), label) != label:
                    raise ValueError(f'synonyms: {alias!r} is given for both {owner[alias.casefold()]!r} and {label!r}')
        templates = [('prompt.question', self.prompt.question)] + [
            (f'splits.{name}.question', split.question) for name, split in self.splits.items() if split.question]
        for field, template in templates:
            if '{labels}' in template and not self.labels:
                raise ValueError(f'{field} uses {{labels}} but the entry has no labels')
        return self

    def spellings(self) -> dict[str, str]:
        """Case-folded spelling -> label: every label and every synonym of one (how a source or an
        output may write it)."""
        out = {alias.casefold(): label for label, aliases in self.synonyms.items() for alias in aliases}
        return out | {label.casefold(): label for label in self.labels or []}

    def question_template(self, split: str) -> str:
        """The user-turn template of `split`: its own `question`, else `prompt.question`."""
        own = self.splits[split].question if split in self.splits else None
        return own or self.prompt.question

    @property
    def registered_name(self) -> str:
        return registered_name(self.name)

    def answer_options(self) -> Optional[list[str]]:
        """The fixed answer set every row's answer must be in (what the scorer parses against), or
        None when answers are free text (open and mixed VQA) or per row (multiple choice)."""
        if self.task.kind == 'classification':
            return list(self.labels or [])
        if self.task.kind == 'closed_vqa':
            return list(self.task.closed_answers or self.labels or DEFAULT_CLOSED_ANSWERS)
        return None

    def canonical_answer(self, answer: str, options: list[str]) -> Optional[str]:
        """The option `answer` is, ignoring case and punctuation as the scorer does; None if none."""
        words = answer_words(answer)
        return next((o for o in options if answer_words(o) == words), None)

    def fingerprint(self) -> str:
        """sha256 of the entry's contents: what a cached result computed from it records."""
        import hashlib
        import json
        blob = json.dumps(self.model_dump(mode='json'), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    @property
    def source_summary(self) -> str:
        parts = [f'hf:{self.sources.hf}' if self.sources.hf else None,
                 f'ms:{self.sources.ms}' if self.sources.ms else None,
                 f'local:{self.sources.local}' if self.sources.local else None]
        return ', '.join(p for p in parts if p)


def _format_validation_error(path: Path, err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        field = '.'.join(str(p) for p in e['loc']) or '(entry)'
        lines.append(f"{path}: field '{field}': {e['msg']}")
    return '\n'.join(lines)


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys silently; a registry file with one is an error."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == 'tag:yaml.org,2002:merge':
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                if key in seen:
                    raise RegistryError(f'key {key!r} is given twice, on lines {seen[key]} and '
                                        f'{key_node.start_mark.line + 1} (YAML would keep only the last); keep one')
                seen[key] = key_node.start_mark.line + 1
            except TypeError:   # an unhashable key: the base constructor reports it
                break
        return super().construct_mapping(node, deep=deep)


def _read_yaml(path: Path):
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise RegistryError(f'{path}: cannot read: {e}') from None
    try:
        text = raw.decode('utf-8')
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b'\n') + 1
        raise RegistryError(f'{path}: line {line}: not UTF-8 text (byte 0x{raw[e.start]:02x}); save the file as '
                            f'UTF-8') from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except RegistryError as e:   # a duplicate key, found by the loader, which knows no path
        raise RegistryError(f'{path}: {e}') from None
    except yaml.YAMLError as e:
        raise RegistryError(f'{path}: not valid YAML: {e}') from None


def load_entry(path: str | Path) -> Entry:
    """Parse and validate one registry file, raising `RegistryError` naming file and field."""
    path = Path(path)
    data = _read_yaml(path)
    if not isinstance(data, dict):
        raise RegistryError(f'{path}: expected a mapping of fields, got {type(data).__name__}')
    try:
        entry = Entry.model_validate(data)
    except ValidationError as e:
        raise RegistryError(_format_validation_error(path, e)) from None
    if path.stem != entry.name:
        raise RegistryError(f"{path}: field 'name': {entry.name!r} must match the file name {path.stem!r}")
    return entry.model_copy(update={'path': str(path)})


def registry_dirs(extra: Sequence[str | Path] = ()) -> list[Path]:
    """Built-in folder first, then the user's folders in order (a folder named twice counts once)."""
    dirs, seen = [BUILTIN_DIR], {BUILTIN_DIR.resolve()}
    for d in map(Path, extra):
        if not d.is_dir():
            raise RegistryError(f'{d}: registry folder does not exist (from {Env.REGISTRY} or --registry)')
        if d.resolve() not in seen:
            seen.add(d.resolve())
            dirs.append(d)
    return dirs


def _registry_files(dirs: Sequence[Path]) -> tuple[tuple[Path, int, int, int], ...]:
    """Every entry file in override order, with its folder's position (0: built-in), size and
    modification time (the cache key)."""
    files = []
    for k, d in enumerate(dirs):
        for path in sorted(p for p in d.iterdir() if p.suffix.lower() in ('.yaml', '.yml') and p.is_file()):
            st = path.stat()
            files.append((path, k, st.st_size, st.st_mtime_ns))
    return tuple(files)


@lru_cache(maxsize=8)
def _load_files(files: tuple[tuple[Path, int, int, int], ...]) -> dict[str, Entry]:
    entries: dict[str, Entry] = {}
    origin: dict[str, tuple[Path, int]] = {}
    for path, folder, _, _ in files:
        entry = load_entry(path)
        if entry.name in origin:
            first, first_folder = origin[entry.name]
            # A user folder replaces a built-in entry on purpose; anything else is two definitions.
            if first_folder != 0 or folder == 0:
                where = 'two extensions in one folder' if first.parent == path.parent else 'two registry folders'
                raise RegistryError(f'dataset {entry.name!r} is defined twice ({where}): {first} and {path}; '
                                    f'remove or rename one')
        origin[entry.name] = (path, folder)
        entries[entry.name] = entry
    return entries


def load_registry(dirs: Sequence[str | Path] = ()) -> dict[str, Entry]:
    """All entries by name; an entry in a user folder (`dirs`) replaces a built-in one of the same name,
    and the same name twice among the user's folders (or two files of one name) is an error naming both.
    Parsed once per process and re-read when a file changes (a long grid sees an edited prompt)."""
    return dict(_load_files(_registry_files(registry_dirs(dirs))))


def get_entry(name: str, dirs: Sequence[str | Path] = ()) -> Entry:
    """One entry by `name` or `medres/name`, from the built-in folder and the user's `dirs`."""
    name = entry_name(name)
    entries = load_registry(dirs)
    if name not in entries:
        raise RegistryError(f'unknown dataset {name!r}; registered: {sorted(entries)}')
    return entries[name]
