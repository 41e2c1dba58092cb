"""The command line, the only layer that uses typer and rich.

``main`` holds the top-level commands (``run``, ``grid``, ``search``, ...) and mounts the
sub-command groups: ``data`` / ``queries`` (:mod:`semid.cli.data`, :mod:`semid.cli.llm`),
``embed`` (:mod:`semid.cli.embed`) and ``ids`` (:mod:`semid.cli.ids`,
:mod:`semid.cli.assign`). :mod:`semid.cli.tables` prints tables that stay readable at any width.
"""

from semid.cli.main import app, entrypoint

__all__ = ["app", "entrypoint"]
