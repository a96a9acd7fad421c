"""`medres demo`: the embedded default study (`medres study --demo`)."""
from __future__ import annotations

from ..vocabulary import Env

NAME = 'demo'


def register(sub) -> None:
    d = sub.add_parser(NAME, help='offline demo, the same as `medres study --demo`: a tiny model trained at low, '
                                  'native and mixed resolution, the grid, the report')
    d.add_argument('--workdir', default='medres-demo', help='models, data, arms, cells and the report go here')
    d.add_argument('--quick', action='store_true', help='a few steps on 64 images: checks the pipeline in less time')
    d.add_argument('--data-home', help=f'where the generated images go (default: ${Env.DATA_HOME})')
    d.add_argument('--n-boot', type=int, default=2000, help='bootstrap resamples for the CIs (default 2000)')
    d.set_defaults(run=run)


def run(args) -> int:
    from .study import run_demo
    return run_demo(args, 'quick' if args.quick else 'demo', 0, workdir=args.workdir, data_home=args.data_home)
