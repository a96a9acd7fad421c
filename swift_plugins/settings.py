"""The environment boundary: `MEDRES_*` variables read once into an explicit `Settings` object.

`medres` reads them in `cli.main` (flags override), the ms-swift plugin in the process it runs in
(the dataset loader and the templates are created by ms-swift, so the environment is the only way
in). Everything below those two places takes a `Settings` (or one of its values) as an argument;
`to_env()` is how a command hands its settings to the `swift` runs it starts. The resolution
policy has its own reader (`resolution.policy.ResolutionPolicy.from_env`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping, Optional, Sequence

from .errors import UsageError
from .vocabulary import (
    BAD_ROW_MODES,
    DEFAULT_IMAGE_CACHE_GB,
    DEFAULT_MAX_IMAGE_PIXELS,
    TRUE_STRINGS,
    Env,
    misspelling_warnings,
)


def default_data_home() -> Path:
    return Path.home() / '.cache' / 'medres'


@dataclass(frozen=True)
class Settings:
    """What medres needs to know about the user's machine and data, besides the resolution policy."""
    # Extra registry folders, in override order (later wins), after the built-in one.
    registry_dirs: tuple[Path, ...] = ()
    # A folder of per-dataset local copies that win over hub sources (`<dir>/<name>`).
    local_sources: Optional[Path] = None
    # Where `medres prepare` writes and prepared entries look (`${MEDRES_DATA_HOME}` in an entry).
    data_home: Path = field(default_factory=default_data_home)
    # A row that cannot be converted: 'error' stops loading, 'skip' drops it (both name every bad row).
    # None (unset): stop in training, skip in `swift infer`, which predicts the other rows (and
    # `medres score` refuses the file as partial).
    bad_rows: Optional[str] = None
    # Images over this many pixels are refused before decoding.
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    # An image the model family cannot encode (an extreme aspect ratio): refused, or padded when True.
    pad_aspect: bool = False
    # Append one JSON line per encoded sample here (the template's token check).
    token_log: Optional[Path] = None
    debug: bool = False
    # On-disk cache of policy-resized images (off when None) and its size bound in GB.
    image_cache: Optional[Path] = None
    image_cache_gb: float = DEFAULT_IMAGE_CACHE_GB

    def __post_init__(self):
        if self.bad_rows is not None and self.bad_rows not in BAD_ROW_MODES:
            raise UsageError(f'{Env.BAD_ROWS} must be one of {BAD_ROW_MODES}, got {self.bad_rows!r}')
        if self.max_image_pixels <= 0:
            raise UsageError(f'{Env.MAX_IMAGE_PIXELS} must be positive, got {self.max_image_pixels}')
        if not self.image_cache_gb > 0:
            raise UsageError(f'{Env.IMAGE_CACHE_GB} must be positive, got {self.image_cache_gb}')

    @classmethod
    def from_env(cls, env: Optional[Mapping[str, str]] = None) -> 'Settings':
        env = os.environ if env is None else env
        raw_pixels = env.get(Env.MAX_IMAGE_PIXELS, '').strip()
        try:
            pixels = int(raw_pixels) if raw_pixels else DEFAULT_MAX_IMAGE_PIXELS
        except ValueError:
            raise UsageError(f'{Env.MAX_IMAGE_PIXELS}={raw_pixels!r} is not an integer') from None
        raw_gb = env.get(Env.IMAGE_CACHE_GB, '').strip()
        try:
            cache_gb = float(raw_gb) if raw_gb else DEFAULT_IMAGE_CACHE_GB
        except ValueError:
            raise UsageError(f'{Env.IMAGE_CACHE_GB}={raw_gb!r} is not a number') from None
        return cls(
            registry_dirs=tuple(Path(p) for p in env.get(Env.REGISTRY, '').split(os.pathsep) if p),
            local_sources=Path(env[Env.LOCAL_SOURCES]) if env.get(Env.LOCAL_SOURCES) else None,
            data_home=Path(env[Env.DATA_HOME]) if env.get(Env.DATA_HOME) else default_data_home(),
            bad_rows=env.get(Env.BAD_ROWS, '').strip() or None,
            max_image_pixels=pixels,
            pad_aspect=env.get(Env.PAD_ASPECT, '').strip().lower() in TRUE_STRINGS,
            token_log=Path(env[Env.TOKEN_LOG]) if env.get(Env.TOKEN_LOG) else None,
            debug=env.get(Env.DEBUG, '').strip().lower() in TRUE_STRINGS,
            image_cache=Path(env[Env.IMAGE_CACHE]) if env.get(Env.IMAGE_CACHE, '').strip() else None,
            image_cache_gb=cache_gb,
        )

    def with_registry(self, dirs: Sequence[str | Path]) -> 'Settings':
        return replace(self, registry_dirs=self.registry_dirs + tuple(Path(d).resolve() for d in dirs))

    def to_env(self) -> dict[str, str]:
        """The variables that give a child process these settings (the token log is per run)."""
        # medres's own `swift infer` runs (grid, sweep, probe, demo) score what they predict: unless the
        # user chose to skip, a bad row stops them rather than shrinking a cell's test set.
        env = {Env.DATA_HOME: str(self.data_home), Env.BAD_ROWS: self.bad_rows or 'error',
               Env.MAX_IMAGE_PIXELS: str(self.max_image_pixels)}
        if self.pad_aspect:
            env[Env.PAD_ASPECT] = '1'
        if self.registry_dirs:
            env[Env.REGISTRY] = os.pathsep.join(str(d) for d in self.registry_dirs)
        if self.local_sources:
            env[Env.LOCAL_SOURCES] = str(self.local_sources)
        if self.debug:
            env[Env.DEBUG] = '1'
        if self.image_cache:
            env[Env.IMAGE_CACHE] = str(self.image_cache)
            env[Env.IMAGE_CACHE_GB] = str(self.image_cache_gb)
        return env


def env_warnings(env: Optional[Mapping[str, str]] = None) -> list[str]:
    """One warning per misspelled `MEDRES_*` name, with the closest valid one."""
    return misspelling_warnings(os.environ if env is None else env)
