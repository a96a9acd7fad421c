"""JSON Lines read row by row (rows may carry image bytes), every error naming the file and line."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from ..errors import DataError, MedresError


def json_objects(path: Path, error: type[MedresError] = DataError) -> Iterator[tuple[int, dict]]:
    """(line number, object) of each non-blank line. An unreadable file, a byte that is not UTF-8, a
    line that is not JSON or not a JSON object raises `error` naming `path:line`."""
    try:
        with open(path, 'rb') as f:
            for line_no, raw in enumerate(f, start=1):
                try:
                    text = raw.decode('utf-8')
                except UnicodeDecodeError as e:
                    raise error(f'{path}:{line_no}: not UTF-8 text (byte 0x{raw[e.start]:02x} at column '
                                f'{e.start + 1}); save the file as UTF-8') from None
                if not text.strip():
                    continue
                try:
                    value = json.loads(text)
                except json.JSONDecodeError as e:
                    raise error(f'{path}:{line_no}: not valid JSON: {e}') from None
                if not isinstance(value, dict):
                    raise error(f'{path}:{line_no}: expected a JSON object per line, got {type(value).__name__}')
                yield line_no, value
    except OSError as e:
        raise error(f'{path}: cannot read: {e}') from None
