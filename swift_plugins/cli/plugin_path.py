"""`medres plugin-path`: the file to pass to `swift ... --external_plugins`."""
from __future__ import annotations

NAME = 'plugin-path'


def register(sub) -> None:
    p = sub.add_parser(NAME, help='print the ms-swift plugin file for --external_plugins')
    p.set_defaults(run=run)


def run(args) -> int:
    from ..train.swift_run import PLUGIN_PATH
    print(PLUGIN_PATH)
    return 0
