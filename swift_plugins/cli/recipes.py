"""`medres recipes list|cp|build`: the shipped recipe pack (as torchtune's `tune ls` / `tune cp`)."""
from __future__ import annotations

from pathlib import Path

NAME = 'recipes'


def register(sub) -> None:
    rc = sub.add_parser(NAME, help='list, copy or regenerate the shipped recipes')
    verbs = rc.add_subparsers(dest='verb', required=True, metavar='list|cp|build')
    ls = verbs.add_parser('list', help='every shipped recipe, by kind')
    ls.set_defaults(run=run_list)
    cp = verbs.add_parser('cp', help='copy a recipe to edit (e.g. medres recipes cp qwen2-vl-2b-full-native my.yaml)')
    cp.add_argument('name', help='recipe name as `medres recipes list` shows it (train/..., infer/... or bare)')
    cp.add_argument('dest', help='file or folder to copy it to')
    cp.set_defaults(run=run_cp)
    b = verbs.add_parser('build', help='regenerate recipes/train and recipes/infer from recipes/src (developers)')
    b.add_argument('--check', action='store_true', help='write nothing; exit 1 if any recipe is out of date')
    b.set_defaults(run=run_build)


def run_list(args) -> int:
    from ..train.recipes import RECIPES_DIR, list_recipes
    for kind, names in list_recipes().items():
        if names:
            print(f'{kind}/ ({RECIPES_DIR / kind})')
            for n in names:
                print(f'  {kind}/{n}')
    return 0


def run_cp(args) -> int:
    from ..train.recipes import copy_recipe, recipe_path
    target = copy_recipe(args.name, Path(args.dest))
    if recipe_path(args.name).parent.name == 'infer':
        print(f'copied to {target}; run it with `swift infer {target} --external_plugins "$(medres plugin-path)" '
              f'--model <checkpoint> --result_path <predictions.jsonl>`')
    else:
        print(f'copied to {target}; run it with `medres train {target}` or `swift sft {target} '
              f'--external_plugins "$(medres plugin-path)"`')
    return 0


def run_build(args) -> int:
    from ..errors import EXIT_CHECK_FAILED
    from ..train.recipes import build
    from .common import console
    stale = build(check=args.check)
    if args.check:
        for p in stale:
            console.print(f'out of date: {p}', highlight=False)
        return EXIT_CHECK_FAILED if stale else 0
    console.print(f'wrote the recipes ({len(stale)} changed)', highlight=False)
    return 0
