"""The package's shape: concepts as subpackages, imports only downward, one vocabulary, one error base."""
import ast
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import swift_plugins
from swift_plugins import errors
from swift_plugins.cli.main import _option_strings, build_parser, kebab_case
from swift_plugins.vocabulary import Env, misspelling_warnings

PKG = Path(swift_plugins.__file__).parent
# Lower layers never import higher ones; a subpackage may import its own modules freely.
LAYERS = {
    '__init__': 0, 'vocabulary': 0, 'errors': 0,
    'settings': 1,
    'resolution': 2,
    'data': 3,
    'train': 4, 'prepare': 4, 'fixtures': 4,
    'eval': 5,
    'probe': 6,
    'study': 7,       # uses the probe: its embedded default is a study on the probe dataset
    'cli': 8, 'plugin': 8,
}


def modules():
    for path in sorted(PKG.rglob('*.py')):
        yield path, path.relative_to(PKG).with_suffix('').parts


def module_name(parts: tuple) -> str:
    return '.'.join(('swift_plugins',) + parts).removesuffix('.__init__')


def imported_modules(path: Path, parts: tuple) -> set[str]:
    """Absolute names of the swift_plugins modules (and names imported from them) `path` imports."""
    import importlib.util
    name = module_name(parts)
    package = name if parts[-1] == '__init__' else name.rsplit('.', 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            module = importlib.util.resolve_name('.' * node.level + (node.module or ''), package) if node.level \
                else node.module or ''
            if module.startswith('swift_plugins'):
                found.add(module)
                found.update(f'{module}.{a.name}' for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith('swift_plugins'))
    return found


def imported(path: Path, parts: tuple) -> set[str]:
    """Top-level concepts of swift_plugins that `path` imports."""
    return {m.split('.')[1] for m in imported_modules(path, parts) if m.count('.') >= 1}


def concept(parts: tuple) -> str:
    return parts[0] if len(parts) > 1 else parts[0]


def test_concepts_are_subpackages_and_the_top_level_is_small():
    top = [p.name for p in PKG.glob('*.py')]
    assert len(top) <= 8, top
    for sub in ('resolution', 'data', 'prepare', 'eval', 'train', 'probe', 'study', 'cli', 'plugin'):
        assert (PKG / sub / '__init__.py').is_file(), sub
    assert {p.stem for p in (PKG / 'prepare').glob('*.py')} >= {'subcellular', 'compound', 'cervical', 'wsi'}
    assert not (PKG / 'register.py').exists()   # `register` vs `registry` no longer look alike


def test_every_module_has_a_layer_and_imports_only_downward():
    bad = []
    for path, parts in modules():
        here = concept(parts)
        assert here in LAYERS, f'{path}: add {here!r} to LAYERS'
        for other in imported(path, parts):
            if other in LAYERS and other != here and LAYERS[other] > LAYERS[here]:
                bad.append(f'{path.relative_to(PKG)} ({here}, layer {LAYERS[here]}) imports {other} '
                           f'(layer {LAYERS[other]})')
    assert not bad, '\n'.join(bad)


def test_no_import_cycles_between_modules():
    graph = {module_name(parts): imported_modules(path, parts) for path, parts in modules()}
    edges = {n: {d for d in deps if d in graph and d != n and not n.startswith(d + '.')} for n, deps in graph.items()}
    state, stack = {}, []

    def visit(n):
        state[n] = 'open'
        stack.append(n)
        for m in sorted(edges[n]):
            if state.get(m) == 'open':
                raise AssertionError('import cycle: ' + ' -> '.join(stack[stack.index(m):] + [m]))
            if m not in state:
                visit(m)
        stack.pop()
        state[n] = 'done'
    for n in sorted(graph):
        if n not in state:
            visit(n)


def string_literals(path: Path):
    tree = ast.parse(path.read_text())
    docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                  if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
                  and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield node.value


def test_environment_names_are_spelled_only_in_the_vocabulary():
    offenders = [f'{path.relative_to(PKG)}: {s!r}' for path, _ in modules() if path.name != 'vocabulary.py'
                 for s in string_literals(path) if 'MEDRES_' in s and '${MEDRES_' not in s]
    assert not offenders, offenders


def test_the_environment_is_read_only_at_the_boundaries():
    allowed = {'settings.py', 'errors.py', 'resolution/policy.py', 'resolution/swift_args.py', 'cli/main.py'}
    readers = {path.relative_to(PKG).as_posix() for path, _ in modules() if 'os.environ' in path.read_text()}
    assert readers <= allowed, readers - allowed
    assert 'sys.argv' not in (PKG / 'resolution' / 'templates.py').read_text()


def test_one_error_base():
    for name in ('RegistryError', 'DataError', 'ImageDecodeError', 'PolicyError', 'TokenMismatchError',
                 'PredictionsError', 'ScoreError', 'PrepareError', 'LaunchError', 'RunError', 'GridError', 'UsageError'):
        assert issubclass(getattr(errors, name), errors.MedresError), name
    defined = [f'{path.relative_to(PKG)}: {node.name}' for path, _ in modules() if path.name != 'errors.py'
               for node in ast.walk(ast.parse(path.read_text()))
               if isinstance(node, ast.ClassDef) and any(getattr(b, 'id', '').endswith(('Error', 'Exception'))
                                                         for b in node.bases)]
    assert not defined, defined


def test_templates_ask_the_family_not_an_isinstance_chain():
    tree = ast.parse((PKG / 'resolution' / 'templates.py').read_text())
    chains = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, 'id', '') == 'isinstance'
              and any(getattr(a, 'id', '') in ('Qwen2VL', 'InternVL', 'LlavaOneVision') for a in ast.walk(n))]
    assert not chains


def test_a_new_family_is_one_class_and_one_registration():
    from dataclasses import dataclass
    from typing import ClassVar

    from swift_plugins.resolution import families
    from swift_plugins.resolution.families import FAMILIES, TEMPLATE_FAMILY, Qwen2VL, get_family, register_family

    @dataclass
    class Qwen2VLWide(Qwen2VL):   # e.g. a variant with 16 px patches
        name: ClassVar[str] = 'qwen_wide_test'
        templates: ClassVar[tuple[str, ...]] = ('qwen_wide_test_template',)
        patch_size: int = 16

    try:
        register_family(Qwen2VLWide)
        fam = get_family('qwen_wide_test_template')
        assert isinstance(fam, Qwen2VLWide) and fam.fit(1000, 700, None) == (992, 672)
        assert fam.tokens((992, 672)) == 31 * 21
    finally:
        FAMILIES.pop('qwen_wide_test', None)
        TEMPLATE_FAMILY.pop('qwen_wide_test_template', None)
    assert families.get_family('qwen2_vl').unit == 28


def test_misspelled_variables_get_the_closest_name():
    warnings = misspelling_warnings({'MEDRES_RESOLUTON': 'low', 'MEDRES_LOW_PIXEL': '1', 'MEDRES_FILTER': 'box',
                                     'OTHER': 'x'})
    assert len(warnings) == 2
    assert any('MEDRES_RESOLUTON' in w and 'did you mean MEDRES_RESOLUTION' in w for w in warnings)
    assert any('MEDRES_LOW_PIXEL ' in w and 'MEDRES_LOW_PIXELS' in w for w in warnings)
    assert Env.RESOLUTION == 'MEDRES_RESOLUTION' and 'MEDRES_DEBUG' in Env.names()


def test_snake_case_flags_are_accepted():
    parser = build_parser()
    known = _option_strings(parser)
    assert kebab_case(['train', 'r.yaml', '--micro_batch', '2', '--nproc_per_node=8', '--', '--max_length', '9'],
                      known)[:4] == ['train', 'r.yaml', '--micro-batch', '2']
    assert kebab_case(['--nproc_per_node=8'], known) == ['--nproc-per-node=8']
    assert kebab_case(['--not_a_flag'], known) == ['--not_a_flag']


def test_seed_flags_say_what_they_seed():
    known = _option_strings(build_parser())
    assert '--seed' not in known
    assert {'--mix-seed', '--bootstrap-seed', '--split-seed', '--replicate-seed'} <= known


def run_medres(*args, env=None, cwd=None):
    import os
    return subprocess.run([str(Path(sys.executable).parent / 'medres'), *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=cwd)


def test_exit_codes_and_one_line_errors(tmp_path):
    usage = run_medres('train', 'nope.yaml', '--nproc-per-node', '6', '--dry-run')
    assert usage.returncode == 2 and usage.stderr.startswith('medres: error: ') and 'Traceback' not in usage.stderr
    assert len(usage.stderr.strip().splitlines()) == 1
    data = run_medres('score', '--dataset', 'vqa-rad', '--predictions', str(tmp_path / 'absent.jsonl'))
    assert data.returncode == 2 and 'absent.jsonl: cannot read' in data.stderr and 'Traceback' not in data.stderr
    debug = run_medres('score', '--dataset', 'vqa-rad', '--predictions', str(tmp_path / 'absent.jsonl'),
                       env={'MEDRES_DEBUG': '1'})
    assert debug.returncode == 2 and 'Traceback' in debug.stderr and 'PredictionsError' in debug.stderr
    typo = run_medres('datasets', '--json', env={'MEDRES_RESOLUTON': 'low'})
    assert typo.returncode == 0 and 'did you mean MEDRES_RESOLUTION' in typo.stderr


def test_datasets_fits_80_columns_and_tokens_flags_have_help():
    out = run_medres('datasets', env={'COLUMNS': '80'})
    assert out.returncode == 0 and max(len(line) for line in out.stdout.splitlines()) <= 80, out.stdout
    wide = run_medres('datasets', '--wide', env={'COLUMNS': '200'})
    assert 'CC0' in wide.stdout or 'cc0' in wide.stdout.lower()
    import argparse
    tokens = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices['tokens']
    flags = [a for a in tokens._actions if a.option_strings and a.dest != 'help']
    assert len(flags) >= 12
    assert all(a.help for a in flags), [a.option_strings for a in flags if not a.help]


def test_recipes_list_and_cp(tmp_path):
    listed = run_medres('recipes', 'list')
    assert listed.returncode == 0
    names = [line.strip() for line in listed.stdout.splitlines() if line.startswith('  ')]
    assert sum(n.startswith('train/') for n in names) == 24 and sum(n.startswith('infer/') for n in names) == 3
    out = run_medres('recipes', 'cp', 'qwen2-vl-2b-full-mixed', str(tmp_path))
    assert out.returncode == 0, out.stderr
    copied = tmp_path / 'qwen2-vl-2b-full-mixed.yaml'
    assert copied.read_text() == (PKG / 'recipes' / 'train' / 'qwen2-vl-2b-full-mixed.yaml').read_text()
    again = run_medres('recipes', 'cp', 'train/qwen2-vl-2b-full-mixed', str(tmp_path))
    assert again.returncode == 2 and 'exists' in again.stderr
    unknown = run_medres('recipes', 'cp', 'nope', str(tmp_path / 'x.yaml'))
    assert unknown.returncode == 2 and 'unknown recipe' in unknown.stderr


def test_recipe_env_sections_come_from_the_policy_defaults():
    import yaml

    from swift_plugins.resolution.policy import ResolutionPolicy
    from swift_plugins.train.recipes import RECIPES_DIR, build
    assert build(check=True) == []
    for mode in ('native', 'low', 'mixed'):
        env = yaml.safe_load((RECIPES_DIR / 'infer' / f'{mode}.yaml').read_text())['ENV']
        assert ResolutionPolicy.from_env({k: str(v) for k, v in env.items()}) == ResolutionPolicy(mode=mode)
    src = yaml.safe_load((RECIPES_DIR / 'src' / 'resolution.yaml').read_text())
    assert all(set(mode) <= {'title', 'note'} for mode in src.values())   # no value typed twice


@pytest.mark.parametrize('text, name, splits, rows', [
    ('medres/path-vqa', 'path-vqa', (), None),
    ('path-vqa:validation/test', 'path-vqa', ('validation', 'test'), None),
    ('medres/slake:test#100', 'slake', ('test',), 100),
    ('vqa-rad#7', 'vqa-rad', (), 7),
])
def test_one_dataset_spec_parser_agrees_with_ms_swift(text, name, splits, rows):
    from swift.dataset import DatasetSyntax

    from swift_plugins.data.spec import DatasetSpec
    spec = DatasetSpec.parse(text)
    assert (spec.name, spec.splits, spec.rows) == (name, splits, rows)
    theirs = DatasetSyntax.parse(text if text.startswith('medres/') else f'medres/{text}')
    assert (theirs.dataset.removeprefix('medres/'), tuple(theirs.subsets or ()), theirs.dataset_sample) == \
        (name, splits, rows)
    assert DatasetSpec.parse(str(spec)) == spec


def test_dataset_spec_errors_name_the_problem():
    from swift_plugins.data.registry import get_entry
    from swift_plugins.data.spec import DatasetSpec
    with pytest.raises(errors.UsageError, match='positive number of rows'):
        DatasetSpec.parse('vqa-rad#x')
    with pytest.raises(errors.RegistryError, match=r"unknown split\(s\) \['dev'\]"):
        DatasetSpec.parse('vqa-rad:dev').resolve(get_entry('vqa-rad'))


def test_the_wheel_ships_recipes_registry_and_tables(tmp_path):
    root = PKG.parent
    out = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q',
                          '-w', str(tmp_path), str(root)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    (wheel,) = tmp_path.glob('medres-*.whl')
    names = set(zipfile.ZipFile(wheel).namelist())
    assert sum(n.startswith('swift_plugins/recipes/train/') and n.endswith('.yaml') for n in names) == 24
    assert sum(n.startswith('swift_plugins/train/checkpoints/') and n.endswith('.json') for n in names) == 4
    assert {'swift_plugins/recipes/infer/native.yaml', 'swift_plugins/recipes/src/base.yaml',
            'swift_plugins/eval/paper_tables.csv', 'swift_plugins/datasets_registry/vqa-rad.yaml',
            'swift_plugins/plugin/medres_plugin.py', 'swift_plugins/cli/main.py'} <= names
