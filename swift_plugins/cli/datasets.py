"""`medres datasets`: the dataset registry, in 80 columns (`--wide` for every column, `--json` for every field)."""
from __future__ import annotations

import json

NAME = 'datasets'


def register(sub) -> None:
    d = sub.add_parser(NAME, help='list the dataset registry')
    d.add_argument('--wide', action='store_true', help='also native size, source and license (needs a wide terminal)')
    d.add_argument('--json', action='store_true', help='every field of every entry, as JSON')
    d.set_defaults(run=run)


def run(args) -> int:
    from rich import box
    from rich.table import Table

    from ..data.registry import load_registry
    from .common import console

    entries = load_registry(args.settings.registry_dirs)
    if args.json:
        print(json.dumps([e.model_dump(mode='json') | {'registered_as': e.registered_name, 'file': e.path}
                          for e in entries.values()], indent=2))
        return 0
    table = Table(title=f'medres dataset registry ({len(entries)} entries)', box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ('name', 'modality', 'task'):
        table.add_column(col, no_wrap=True)
    table.add_column('splits (rows)', overflow='fold')
    if args.wide:
        for col in ('native size', 'source', 'license'):
            table.add_column(col, overflow='fold')
    for e in entries.values():
        splits = ', '.join(f'{s} {v.rows:,}' if v.rows is not None else s for s, v in e.splits.items())
        cells = [e.registered_name, e.modality, e.task.kind, splits]
        if args.wide:
            cells += [f'{e.native_size.width}x{e.native_size.height}', e.source_summary, e.license]
        table.add_row(*cells)
    console.print(table)
    if not args.wide:
        console.print('--wide: native size, source, license; --json: every field', style='dim', highlight=False)
    return 0
