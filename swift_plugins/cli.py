"""`medres`: what stock ms-swift lacks. Each subcommand delegates to the module that does the work."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .registry import REGISTRY_ENV, RegistryError, load_registry

console = Console()


def cmd_datasets(args) -> int:
    entries = load_registry()
    if args.json:
        print(json.dumps([e.model_dump(mode='json') | {'registered_as': e.registered_name, 'file': e.path}
                          for e in entries.values()], indent=2))
        return 0
    table = Table(title=f'medres dataset registry ({len(entries)} entries)')
    for col in ('name', 'modality', 'task'):
        table.add_column(col, no_wrap=True)
    for col in ('splits (rows)', 'native size', 'source', 'license'):
        table.add_column(col, overflow='fold')
    for e in entries.values():
        splits = ', '.join(f'{s} ({v.rows:,})' if v.rows is not None else s for s, v in e.splits.items())
        size = f'{e.native_size.width}x{e.native_size.height}'
        table.add_row(e.registered_name, e.modality, e.task.kind, splits, size, e.source_summary, e.license)
    console.print(table)
    return 0


def cmd_plugin_path(args) -> int:
    from .swift_run import PLUGIN_PATH
    print(PLUGIN_PATH)
    return 0


def cmd_demo(args) -> int:
    from .demo import run_demo
    run_demo(Path(args.workdir), max_steps=args.max_steps)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='medres', description=__doc__)
    p.add_argument('--registry', action='append', default=[], metavar='DIR',
                   help='extra registry folder (repeatable; also MEDRES_REGISTRY)')
    sub = p.add_subparsers(dest='command', required=True)

    d = sub.add_parser('datasets', help='list the dataset registry')
    d.add_argument('--json', action='store_true', help='print the entries as JSON')
    d.set_defaults(func=cmd_datasets)

    pp = sub.add_parser('plugin-path', help='print the ms-swift plugin file for --external_plugins')
    pp.set_defaults(func=cmd_plugin_path)

    demo = sub.add_parser('demo', help='offline tiny end-to-end: train at native and low resolution, infer')
    demo.add_argument('--workdir', default='medres-demo', help='where models, data and outputs go')
    demo.add_argument('--max-steps', type=int, default=4)
    demo.set_defaults(func=cmd_demo)

    from .prepare import add_prepare_parser
    add_prepare_parser(sub)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.registry:
        # Through the environment, so that the swift runs a command starts see the same registry.
        dirs = [os.environ.get(REGISTRY_ENV, '')] + [os.path.abspath(d) for d in args.registry]
        os.environ[REGISTRY_ENV] = os.pathsep.join(d for d in dirs if d)
    try:
        return args.func(args)
    except RegistryError as e:
        console.print(f'[red]registry error:[/red] {e}', highlight=False)
        return 2


if __name__ == '__main__':
    sys.exit(main())
