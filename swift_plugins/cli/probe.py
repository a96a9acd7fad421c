"""`medres probe`: the offline benchmark that shows the paper's resolution pattern on tiny models."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..errors import EXIT_CHECK_FAILED
from ..vocabulary import Env

NAME = 'probe'


def register(sub) -> None:
    pr = sub.add_parser(NAME, help='offline benchmark: tiny models trained at low / native / mixed on a synthetic '
                                   'dataset, the train x inference grid, the paper\'s pattern checked')
    pr.add_argument('--quick', action='store_true', help='a few steps on 64 images: checks the pipeline, not the pattern')
    pr.add_argument('--replicate-seed', type=int, default=0,
                    help='one replicate of the probe: seeds the generated data, the model\'s initialisation and the '
                         'training order together (default 0)')
    pr.add_argument('--workdir', default='medres-probe', help='arms, grid and report go here; rerun to resume')
    pr.add_argument('--data-home', help=f'where the generated images go (default: ${Env.DATA_HOME})')
    pr.add_argument('--n-boot', type=int, default=2000, help='bootstrap resamples for the CIs (default 2000)')
    pr.add_argument('--check', action='store_true', help=f'exit {EXIT_CHECK_FAILED} when the pattern does not hold')
    pr.set_defaults(run=run)


def run(args) -> int:
    from rich.markdown import Markdown

    from ..eval.grid import comparisons_markdown
    from ..probe.arms import ProbeConfig
    from ..probe.pattern import breakdown_markdown, checks_markdown
    from ..probe.run import run_probe
    from .common import console

    config = ProbeConfig.preset('quick' if args.quick else 'default', seed=args.replicate_seed)
    settings = replace(args.settings, data_home=Path(args.data_home).resolve()) if args.data_home else args.settings
    report = run_probe(config, Path(args.workdir), settings=settings, base_env=args.env, n_boot=args.n_boot)
    console.print(Markdown(report.grid.markdown))
    console.print(Markdown(comparisons_markdown(report.grid.comparisons)))
    console.print(Markdown('**The paper\'s pattern on the probe**\n\n' + checks_markdown(report.checks)))
    console.print(Markdown('**Which cue each model reads** (accuracy, points)\n\n' + breakdown_markdown(report.breakdown)))
    tokens = {r.spec.inference: r.mean_visual_tokens for r in report.grid.results}
    console.print('visual tokens per test image: ' + ', '.join(f'{k} {v:g}' for k, v in tokens.items() if v is not None),
                  highlight=False)
    verdict = 'holds' if report.holds else 'does NOT hold: ' + ', '.join(c.name for c in report.checks if not c.holds)
    console.print(f'pattern {verdict}; {report.wall_seconds / 60:.1f} min', highlight=False)
    console.print(f'wrote: {report.folder / "probe.json"}, {report.folder / "pattern.md"}, {report.grid.heatmap_png}',
                  highlight=False, soft_wrap=True)
    return EXIT_CHECK_FAILED if args.check and not report.holds else 0
