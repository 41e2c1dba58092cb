"""Named extension points: one registry per kind of component, and plugin loading.

Every kind of component a config names (quantizers, embedding spaces, query generators,
baselines) is looked up in one :class:`Registry`. Its names validate the config, its help text
is what the CLI prints, and a grid axis over the option expands to whatever it holds.

Components outside the package arrive in two ways:

* **Entry points** of an installed distribution, in the registry's group (read on first use)::

      [project.entry-points."semid.quantizers"]
      pca-bins = "my_package.pca_bins:make_pca_bins"

  Groups: ``semid.quantizers``, ``semid.embedding_spaces``, ``semid.query_generators`` and
  ``semid.baselines``; the entry point's name is the component's name and its object what
  ``register`` would be given.
* **Plugin modules** (``--plugin MODULE_OR_FILE.py``, or ``plugins:`` in a run config): imported
  by :func:`load_plugins` before the config is validated, they call ``register`` themselves.
  A run records them in ``config.json``, so grid workers and later commands import them too.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Generic, TypeVar

from semid.errors import ConfigError

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class Entry(Generic[T]):
    """A registered component: its object (or a ``module:attribute`` reference) and help."""

    name: str
    target: T | str
    help: str = ""


class Registry(Generic[T]):
    """Components of one kind by name.

    Parameters
    ----------
    kind : str
        What the components are, for messages ("quantizer").
    option : str
        The config option that names one ("quantizer.name"), for messages.
    group : str
        Entry-point group third-party distributions register under.
    """

    def __init__(self, kind: str, option: str, group: str) -> None:
        self.kind = kind
        self.option = option
        self.group = group
        self._entries: dict[str, Entry[T]] = {}
        self._entry_points_read = False

    def register(self, name: str, target: T | str, help: str = "") -> T | str:
        """Make ``name`` select ``target`` (an object, or ``"module:attribute"`` loaded on use).

        A later registration of the same name replaces the earlier one. Returns ``target``.
        """
        self._entries[name] = Entry(name, target, help)
        return target

    def _read_entry_points(self) -> None:
        if self._entry_points_read:
            return
        self._entry_points_read = True
        for point in metadata.entry_points(group=self.group):
            if point.name not in self._entries:
                self.register(point.name, point.value)

    def names(self) -> list[str]:
        """Every registered name, in registration order (entry points last)."""
        self._read_entry_points()
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self.names()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def unknown(self, name: str) -> str:
        """The message for a name that is not registered."""
        return (
            f"unknown {self.kind} {name!r} (available: {', '.join(self)}; others come from "
            "plugins, see docs/extending.md)"
        )

    def check(self, name: str) -> str:
        """``name`` if registered, else ConfigError naming the option and the choices."""
        if name not in self:
            raise ConfigError(f"{self.option}: {self.unknown(name)}")
        return name

    def validate(self, name: str) -> str:
        """:meth:`check` for pydantic validators (raises ValueError)."""
        if name not in self:
            raise ValueError(self.unknown(name))
        return name

    def get(self, name: str) -> T:
        """The object registered as ``name`` (a reference is imported now)."""
        entry = self._entries[self.check(name)]
        if isinstance(entry.target, str):
            entry.target = _resolve(entry.target, f"{self.option}={name}")
        return entry.target  # type: ignore[return-value]

    def help(self, name: str) -> str:
        """The help line of ``name``."""
        return self._entries[self.check(name)].help

    def choices(self, last: str = "or") -> str:
        """The names as prose: ``a, b or c``."""
        names = self.names()
        return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} {last} {names[-1]}"

    def describe(self) -> list[tuple[str, str]]:
        """``(name, help)`` of every component."""
        return [(name, self._entries[name].help) for name in self.names()]


def _resolve(reference: str, label: str) -> Any:
    module, _, attribute = reference.partition(":")
    try:
        value: Any = importlib.import_module(module)
        for part in attribute.split(".") if attribute else []:
            value = getattr(value, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"{label}: cannot load {reference} ({exc})") from exc
    return value


def _is_path(spec: str) -> bool:
    return spec.endswith(".py") or "/" in spec or "\\" in spec


def load_plugin(spec: str) -> None:
    """Import one plugin: a module name (``my_pkg.plugin``) or a Python file path."""
    if _is_path(spec):
        path = Path(spec).expanduser().resolve()
        if not path.is_file():
            raise ConfigError(f"plugin {spec}: no such file")
        # named by the file's stem, so objects pickled with a plugin class (a fitted quantizer)
        # load again wherever the same file is imported from
        name = f"semid_plugin_{path.stem}"
        if name in sys.modules:
            loaded = getattr(sys.modules[name], "__file__", None)
            if loaded and Path(loaded).resolve() != path:
                raise ConfigError(f"plugin {spec}: another plugin file named {path.name} is loaded")
            return
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise ConfigError(f"plugin {spec}: not a Python module")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        try:
            module_spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
    else:
        try:
            importlib.import_module(spec)
        except ImportError as exc:
            raise ConfigError(f"plugin {spec}: cannot import ({exc})") from exc
    log.debug("plugin %s loaded", spec)


def load_plugins(specs: Iterable[str]) -> list[str]:
    """Import every plugin of ``specs``; returns them as recorded in a config (files absolute)."""
    recorded: list[str] = []
    for spec in specs:
        load_plugin(spec)
        name = str(Path(spec).expanduser().resolve()) if _is_path(spec) else spec
        if name not in recorded:
            recorded.append(name)
    return recorded
