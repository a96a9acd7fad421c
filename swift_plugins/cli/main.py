"""`medres`: what stock ms-swift lacks. Each subcommand lives in its own module of this package."""
from __future__ import annotations

import argparse
import os
import shlex
import sys
from typing import Optional, Sequence

from ..errors import MedresError, report
from ..settings import Settings, env_warnings
from ..vocabulary import Env
from . import datasets, demo, fixtures, grid, plugin_path, prepare, probe, recipes, score, study, sweep, tokens, train

# The subcommands, in the order `medres --help` lists them.
COMMANDS = (datasets, plugin_path, tokens, recipes, train, grid, sweep, score, study, prepare, fixtures, probe, demo)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='medres', description=__doc__,
                                epilog='Flags also take ms-swift\'s snake_case spelling (--micro_batch = --micro-batch). '
                                       f'{Env.DEBUG}=1 shows tracebacks.')
    p.add_argument('--registry', action='append', default=[], metavar='DIR',
                   help=f'extra registry folder (repeatable; also {Env.REGISTRY})')
    sub = p.add_subparsers(dest='command', required=True, metavar='<command>')
    for command in COMMANDS:
        command.register(sub)
    return p


def _option_strings(parser: argparse.ArgumentParser) -> set[str]:
    found = set()
    for action in parser._actions:
        found.update(s for s in action.option_strings if s.startswith('--'))
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                found |= _option_strings(child)
    return found


def kebab_case(argv: Sequence[str], known: set[str]) -> list[str]:
    """`--micro_batch 2` -> `--micro-batch 2` where the kebab spelling is a medres flag (as ms-swift
    users type flags); anything else is left as typed."""
    out = []
    for token in argv:
        name, eq, value = token.partition('=')
        if name.startswith('--') and '_' in name:
            kebab = '--' + name[2:].replace('_', '-')
            if kebab in known:
                token = kebab + eq + value
        out.append(token)
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Everything after `--` is passed to swift unchanged (train, grid, sweep).
    passthrough = argv[argv.index('--') + 1:] if '--' in argv else []
    argv = argv[:argv.index('--')] if '--' in argv else argv
    parser = build_parser()
    args = parser.parse_args(kebab_case(argv, _option_strings(parser)))
    # As typed, for records (`medres study` writes it into its report).
    args.command_line = shlex.join(['medres', *argv, *(['--', *passthrough] if passthrough else [])])
    if passthrough:
        if not hasattr(args, 'swift_args'):
            parser.error(f'medres {args.command} does not take arguments after --')
        args.swift_args = passthrough
    try:
        # The boundary: the shell's MEDRES_* variables and flags become explicit settings; the swift
        # runs a command starts get them back through their environment (`args.env`).
        for warning in env_warnings():
            print(f'medres: warning: {warning}', file=sys.stderr)
        args.settings = Settings.from_env().with_registry(args.registry)
        args.env = {**os.environ, **args.settings.to_env()}
        return args.run(args)
    except MedresError as e:
        return report(e)
    except KeyboardInterrupt:
        print('medres: interrupted', file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `medres ... | head`: the reader left; say nothing more (Python would complain at exit).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == '__main__':
    sys.exit(main())
