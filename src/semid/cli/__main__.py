"""``python -m semid.cli``."""

from semid.cli.main import entrypoint

entrypoint()
