"""`medres prepare <dataset>`: a public raw download -> the prepared folder its registry entry loads."""
from __future__ import annotations

from pathlib import Path

from ..errors import UsageError
from ..vocabulary import BAD_ROW_MODES, PAPER_SEED, Env

NAME = 'prepare'
# Flags every converter has; the rest of the namespace are the converter's own options.
_COMMON = {'command', 'dataset', 'raw', 'out', 'on_error', 'split_seed', 'force', 'run', 'registry', 'settings',
           'env', 'workers'}


def register(sub) -> None:
    from ..prepare import CONVERTERS

    p = sub.add_parser(NAME, help='turn a public raw download into a prepared, registered dataset',
                       description='Turn the public raw download of a dataset into the prepared folder its registry '
                                   'entry loads: images at native resolution, data/<split>.jsonl and manifest.json. '
                                   'See `medres prepare <dataset> --help`.')
    datasets = p.add_subparsers(dest='dataset', required=True, metavar='<dataset>')
    for name, converter in CONVERTERS.items():
        d = datasets.add_parser(name, help=converter.help, description=converter.help)
        d.add_argument('--raw', required=True, type=Path, help=converter.raw_help)
        d.add_argument('--out', type=Path, default=None,
                       help=f'output folder (default: ${Env.DATA_HOME}/prepared/{name}, where medres/{name} looks)')
        d.add_argument('--on-error', choices=BAD_ROW_MODES, default='error',
                       help='bad input (corrupt or missing image, label outside the set, duplicate id, ...): '
                            'stop naming it (default), or skip it and list it in the manifest')
        d.add_argument('--split-seed', type=int, default=PAPER_SEED,
                       help=f'seed of the train/test split (default: {PAPER_SEED}, as the paper)')
        d.add_argument('--force', action='store_true', help='rebuild even when the output is up to date')
        d.add_argument('--workers', type=int, default=None, metavar='N',
                       help='processes decoding and writing images (default: the cores); the output is '
                            'identical for any N')
        converter.add_arguments(d)
        d.set_defaults(run=run)


def run(args) -> int:
    from ..prepare import converter_options, prepare
    options = converter_options(args, exclude=_COMMON)
    if args.workers is not None and args.workers < 1:
        raise UsageError(f'--workers must be at least 1, got {args.workers}')
    prepare(args.dataset, args.raw, args.out, seed=args.split_seed, on_error=args.on_error, force=args.force,
            settings=args.settings, workers=args.workers, **options)
    return 0
