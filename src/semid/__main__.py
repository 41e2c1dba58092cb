"""``python -m semid``: the CLI, so launchers can start it (``torchrun -m semid run ...``,
``accelerate launch -m semid run ...``)."""

from semid.cli import entrypoint

if __name__ == "__main__":
    entrypoint()
