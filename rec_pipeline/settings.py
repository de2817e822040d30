"""Settings objects built from wherever the settings were given: a Dagster config, a config file's section, an
argparse namespace. Each setting is a field of one library dataclass, with its default there; this is the one way any
layer turns its copy of the values back into that dataclass."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, TypeVar

T = TypeVar("T")


def from_settings(cls: type[T], source: Any, **data) -> T:
    """`cls` with `source`'s value for each of its fields that `source` has (an attribute or a mapping key), plus
    `data` for the fields that come from the data or the run (item counts, the device, the clock). Lists become
    tuples where the field is a tuple (config systems hold lists)."""
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            continue
        if isinstance(source, dict):
            if f.name not in source:
                continue
            value = source[f.name]
        elif hasattr(source, f.name):
            value = getattr(source, f.name)
        else:
            continue
        if isinstance(value, list) and typing.get_origin(hints[f.name]) is tuple:
            value = tuple(value)
        values[f.name] = value
    return cls(**values, **data)
