"""Dagster config and resources spelled by the library's dataclasses: each setting is a field of one dataclass in
rec_pipeline, with its default there; the launchpad, run config and the project's config file take it from there.

`from_dataclasses` turns dataclass fields into the fields of a `dg.Config` (or `dg.ConfigurableResource`), tuples
becoming lists (what Dagster's config system holds); `rec_pipeline.settings.from_settings` turns them back into the
dataclass the library takes.
"""

from __future__ import annotations

import dataclasses
import typing

import dagster as dg
import pydantic


def from_dataclasses(name: str, *classes: type, exclude: tuple[str, ...] = (), base: type = dg.Config) -> type:
    """A `base` subclass named `name` with the fields of `classes` (less `exclude`), their types and defaults."""
    fields: dict[str, tuple] = {}
    for cls in classes:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.name in exclude:
                continue
            if f.name in fields:
                raise TypeError(f"{f.name!r} is a field of two of {[c.__name__ for c in classes]}: one spelling per setting")
            if f.default is dataclasses.MISSING:
                raise TypeError(f"{cls.__name__}.{f.name} has no default: exclude it and pass it to build()")
            kind, default = hints[f.name], f.default
            if typing.get_origin(kind) is tuple:  # tuple[str, ...] -> list[str]
                kind, default = list[typing.get_args(kind)[0]], list(default)
            fields[f.name] = (kind, pydantic.Field(default=default, description=_comment(cls, f.name)))
    return pydantic.create_model(name, __base__=base, __module__=classes[0].__module__, **fields)


def _comment(cls: type, name: str) -> str | None:
    """The comment beside the field in the dataclass's source, shown in the launchpad."""
    import inspect

    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return None
    for line in source.splitlines():
        stripped = line.strip()
        if stripped.startswith(f"{name}:") and "#" in stripped:
            return stripped.split("#", 1)[1].strip()
    return None
