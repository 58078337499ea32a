"""Registries by name: every axis of the benchmark (selectors, attacks, datasets, presets) is a set of small
files, each a frozen dataclass registered under its `name`, found by importing every module of one package of
this project and every entry point of one group (plug-ins from other packages). Selectors, attacks and datasets
register classes (their fields are their parameters, `create` builds one); presets register instances (a
`Protocol` each, `get` returns it).

A registered class's dataclass fields are its parameters. `Registry.create` is the one factory: it names
the known entries when a name is unknown, converts command-line strings to each field's type, refuses
values of the wrong type or non-finite numbers, and turns a class's own `__post_init__` checks
(`ValueError`) into one-line errors, so a bad parameter fails before any data is loaded.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import math
import pkgutil
import re
import warnings
from typing import Any

from benchmark.errors import UserError

# names are identifiers: they go into file names, table rows and page anchors, never markup
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")


class Registry:
    def __init__(self, kind: str, package: str, group: str, required: tuple[str, ...] = ("name", "paper"), *,
                 instances: bool = False):
        self.kind = kind  # "method", "attack", "dataset", "preset": the word in error messages
        self.package = package
        self.group = group
        self.required = required
        self.instances = instances  # entries are dataclass instances, not classes
        self._entries: dict[str, type] = {}
        self._discovered = False

    def register(self, cls):
        """Class decorator (or, for a registry of instances, a call): makes `cls` available under `cls.name`."""
        label = getattr(cls, "__qualname__", None) or f"{type(cls).__qualname__} {getattr(cls, 'name', '?')!r}"
        for attribute in self.required:
            value = getattr(cls, attribute, None)
            if not isinstance(value, str) or not value:
                raise TypeError(f"{self.kind} {label} needs a class attribute `{attribute}` (a non-empty string)")
        if not NAME_PATTERN.match(cls.name):
            raise TypeError(f"{self.kind} name {cls.name!r} of {label} must match "
                            f"{NAME_PATTERN.pattern} (lowercase letters, digits, _ and -)")
        previous = self._entries.get(cls.name)
        if previous is not None and previous is not cls and getattr(previous, "__qualname__", None) != \
                getattr(cls, "__qualname__", ""):
            warnings.warn(f"{self.kind} {cls.name!r} registered twice; the one from {cls.__module__} replaces the "
                          f"one from {previous.__module__}", stacklevel=2)
        self._entries[cls.name] = cls
        return cls

    def _discover(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        package = importlib.import_module(self.package)
        for module in pkgutil.iter_modules(package.__path__):
            if not module.name.startswith("_"):
                importlib.import_module(f"{self.package}.{module.name}")
        for entry_point in importlib.metadata.entry_points(group=self.group):
            try:
                loaded = entry_point.load()
                if dataclasses.is_dataclass(loaded) and isinstance(loaded, type) != self.instances:
                    self.register(loaded)
            except Exception as error:  # a broken plug-in must not take the benchmark down with it
                warnings.warn(f"{self.kind} plug-in {entry_point.name!r} failed to load: {error}", stacklevel=2)

    def available(self) -> dict[str, type]:
        self._discover()
        return dict(sorted(self._entries.items()))

    def get(self, name: str) -> type:
        entries = self.available()
        if name not in entries:
            raise UserError(f"unknown {self.kind} {name!r}; known {self.kind}s: {', '.join(entries)}")
        return entries[name]

    def create(self, name: str, params: dict[str, Any] | None = None):
        cls = self.get(name)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        converted = {}
        for key, value in (params or {}).items():
            if key not in fields:
                raise UserError(f"{self.kind} {name!r} has no parameter {key!r}; its parameters: "
                                f"{', '.join(fields) or 'none'}")
            converted[key] = convert(value, fields[key], f"{self.kind} {name!r}")
        try:
            instance = cls(**converted)
        except (TypeError, ValueError) as error:
            raise UserError(f"{self.kind} {name!r}: {error}") from None
        for field in fields.values():  # defaults too: a class must not ship a NaN
            value = getattr(instance, field.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise UserError(f"{self.kind} {name!r}: parameter {field.name} must be a finite number, got {value}")
        return instance


def _kind(field: dataclasses.Field) -> str:
    return field.type if isinstance(field.type, str) else getattr(field.type, "__name__", "str")


def convert(value: Any, field: dataclasses.Field, owner: str) -> Any:
    """A parameter value of the field's declared type (int, float, bool or str): strings from the command
    line are parsed, other values must already have the type (an int is accepted for a float)."""
    kind = _kind(field)

    def wrong():
        return UserError(f"{owner}: parameter {field.name} must be {kind}, got {value!r}")

    if isinstance(value, str) and kind != "str":
        text = value.strip()
        try:
            if kind == "bool":
                if text.lower() not in ("true", "false", "1", "0"):
                    raise ValueError(text)
                return text.lower() in ("true", "1")
            if kind == "int":
                return int(text)
            if kind == "float":
                number = float(text)
                if not math.isfinite(number):
                    raise UserError(f"{owner}: parameter {field.name} must be a finite number, got {value!r}")
                return number
        except ValueError:
            raise wrong() from None
        return value
    if kind == "bool" and not isinstance(value, bool):
        raise wrong()
    if kind == "int" and (isinstance(value, bool) or not isinstance(value, int)):
        raise wrong()
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise wrong()
        return float(value)
    if kind == "str" and not isinstance(value, str):
        raise wrong()
    return value
