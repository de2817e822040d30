"""The project's config file: one YAML in Dagster's run-config shape, so `rec-pipeline demo --config FILE`, the
Definitions (`REC_PIPELINE_CONFIG=FILE`, read when the code location loads: the sensor, the schedule and the
launchpad's defaults follow it) and the launchpad itself (paste it) all take the same file.

    resources:                       # where data lands and what passes validation
      source: {config: {format: canonical, events_path: data/raw/events, catalog_path: data/raw/catalog}}
      policy: {config: {earliest_ts: "1990-01-01", max_quarantine_share: 0.05}}
    ops:                             # the assets' settings
      training_splits: {config: {positive_events: [purchase], test_share: 0.1}}

Every setting and its default: `rec-pipeline demo --print-config`. A setting left out keeps its default, which is
spelled once, in the library dataclass behind it.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

CONFIG_ENV_VAR = "REC_PIPELINE_CONFIG"
SECTIONS = ("resources", "ops")


class ConfigFileError(ValueError):
    """A config file that cannot be used, naming the file and the key."""

    def __init__(self, path: str | Path, message: str):
        super().__init__(f"{path}: {message}")


def read_config(path: str | Path | None) -> dict:
    """The file's {"resources": {...}, "ops": {...}} (either may be absent); {} when no file is given."""
    if path is None:
        return {}
    path = Path(path)
    if not path.is_file():
        raise ConfigFileError(path, "no such config file")
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigFileError(path, f"not valid YAML: {err}") from None
    if not isinstance(config, dict):
        raise ConfigFileError(path, f"expected a mapping with {' and/or '.join(SECTIONS)}, found a {type(config).__name__}")
    unknown = [key for key in config if key not in SECTIONS]
    if unknown:
        raise ConfigFileError(path, f"unknown top-level key(s) {', '.join(map(repr, unknown))}; expected {', '.join(SECTIONS)}")
    for section, entries in config.items():
        if not isinstance(entries, dict):
            raise ConfigFileError(path, f"'{section}' must be a mapping of names to {{config: ...}}")
        for name, entry in entries.items():
            if not isinstance(entry, dict) or set(entry) - {"config"} or not isinstance(entry.get("config", {}), dict):
                raise ConfigFileError(path, f"'{section}.{name}' must be {{config: {{setting: value, ...}}}}")
    return config


def config_path() -> Path | None:
    value = os.environ.get(CONFIG_ENV_VAR)
    return Path(value) if value else None


def merged(*configs: dict) -> dict:
    """Later configs override earlier ones, setting by setting."""
    out: dict = {}
    for config in configs:
        for section, entries in config.items():
            for name, entry in entries.items():
                out.setdefault(section, {}).setdefault(name, {}).setdefault("config", {}).update(entry.get("config", {}))
    return out
