"""`medres prepare <dataset>`: public raw downloads -> prepared datasets the registry loads.

One converter per source; each reads its prompt, label set and channel mapping from the
dataset's registry entry and writes through `common.run` (atomic, manifest, idempotent).
"""
from __future__ import annotations

from pathlib import Path

from rich.markup import escape

from ..registry import get_entry
from .bbbc021 import CompoundConverter
from .cervical import CervicalConverter
from .common import ON_ERROR_CHOICES, Converter, PrepareError, console, run
from .hpa import SubcellularConverter
from .wsi_vqa import WsiVqaConverter

CONVERTERS: dict[str, Converter] = {c.name: c for c in (
    SubcellularConverter(), CompoundConverter(), CervicalConverter(), WsiVqaConverter())}
_COMMON = {'command', 'dataset', 'raw', 'out', 'on_error', 'seed', 'force', 'func', 'registry'}


def prepare(name: str, raw, out=None, *, seed: int = 42, on_error: str = 'error', force: bool = False,
            **options) -> dict:
    """Python entry point of `medres prepare`; returns the manifest."""
    converter = CONVERTERS[name]
    return run(converter, get_entry(name), Path(raw), Path(out) if out else None, seed=seed,
               on_error=on_error, options=options, force=force)


def cmd_prepare(args) -> int:
    options = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k not in _COMMON}
    try:
        prepare(args.dataset, args.raw, args.out, seed=args.seed, on_error=args.on_error, force=args.force,
                **options)
    except PrepareError as e:
        console.print(f'[red]prepare error:[/red] {escape(str(e))}', highlight=False)
        return 1
    return 0


def add_prepare_parser(sub) -> None:
    p = sub.add_parser('prepare', help='turn a public raw download into a prepared, registered dataset',
                       description='Turn the public raw download of a dataset into the prepared folder its registry '
                                   'entry loads: images at native resolution, data/<split>.jsonl and manifest.json. '
                                   'See `medres prepare <dataset> --help`.')
    datasets = p.add_subparsers(dest='dataset', required=True, metavar='<dataset>')
    for name, converter in CONVERTERS.items():
        d = datasets.add_parser(name, help=converter.help, description=converter.help)
        d.add_argument('--raw', required=True, type=Path, help=converter.raw_help)
        d.add_argument('--out', type=Path, default=None,
                       help=f'output folder (default: $MEDRES_DATA_HOME/prepared/{name}, where medres/{name} looks)')
        d.add_argument('--on-error', choices=ON_ERROR_CHOICES, default='error',
                       help='bad input (corrupt or missing image, label outside the set, duplicate id, ...): '
                            'stop naming it (default), or skip it and list it in the manifest')
        d.add_argument('--seed', type=int, default=42, help='split seed (default: 42)')
        d.add_argument('--force', action='store_true', help='rebuild even when the output is up to date')
        converter.add_arguments(d)
        d.set_defaults(func=cmd_prepare)
