"""`medres/<name>[:<split>[/<split>...]][#<rows>]`: the one parser of a registry dataset reference.

The same syntax as ms-swift's `--dataset` (its `DatasetSyntax`: `:` before the subsets, `/`
between them, `#` before a sample size), so what a user types for `swift sft --dataset` also
works for every `medres` command; the `medres/` prefix is optional there. Validation against an
entry (known splits, a default split) is `resolve`, used by the commands and the loader alike.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from ..errors import RegistryError, UsageError
from ..vocabulary import entry_name, registered_name
from .registry import Entry


@dataclass(frozen=True)
class DatasetSpec:
    name: str                       # the entry name, without `medres/`
    splits: tuple[str, ...] = ()    # empty: the command's default
    rows: Optional[int] = None      # `#n`: sample n rows

    @classmethod
    def parse(cls, text: str) -> 'DatasetSpec':
        raw = text.strip()
        rest, sep, rows = raw.rpartition('#') if '#' in raw else (raw, '', '')
        n = None
        if sep:
            if not rows.isdigit() or int(rows) == 0:
                raise UsageError(f'{text!r}: the part after # must be a positive number of rows')
            n = int(rows)
        name, _, splits = rest.partition(':')
        name = entry_name(name.strip())
        if not name:
            raise UsageError(f'{text!r}: no dataset name (expected medres/<name>[:<split>[/<split>]][#<rows>])')
        parts = tuple(s.strip() for s in splits.split('/')) if splits else ()
        if any(not p for p in parts):
            raise UsageError(f'{text!r}: empty split name')
        return cls(name, parts, n)

    @classmethod
    def from_parts(cls, name: str, splits: Sequence[str] = (), rows: Optional[int] = None) -> 'DatasetSpec':
        """From ms-swift's already parsed `DatasetSyntax` fields (the loader's input)."""
        return cls(entry_name(name), tuple(splits or ()), rows)

    def resolve(self, entry: Entry, default: Optional[Sequence[str]] = None) -> tuple[str, ...]:
        """The splits this spec names on `entry`, checked; `default` when it names none
        (None: the entry's default split)."""
        splits = self.splits or tuple(default if default is not None else [entry.default_split])
        unknown = [s for s in splits if s not in entry.splits]
        if unknown:
            raise RegistryError(f'{entry.registered_name}: unknown split(s) {unknown}; {entry.path} defines '
                                f'{sorted(entry.splits)}')
        return splits

    def __str__(self) -> str:
        return registered_name(self.name) + (':' + '/'.join(self.splits) if self.splits else '') + \
            (f'#{self.rows}' if self.rows else '')
