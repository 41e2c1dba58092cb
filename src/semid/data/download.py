"""Download the official MovieLens zips from GroupLens, atomically.

The zip is fetched to a temporary file next to the destination, checked to be a zip, unpacked
into a temporary folder and only then renamed into place, so an interrupted download never
leaves a half-written dataset behind.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from tqdm.auto import tqdm

from semid.data.movielens import MOVIELENS_NAMES, datasets_cache_dir, detect_layout
from semid.errors import DataError

log = logging.getLogger(__name__)

BASE_URL = "https://files.grouplens.org/datasets/movielens"


def movielens_url(name: str) -> str:
    """The GroupLens URL of the zip of ``name``."""
    if name not in MOVIELENS_NAMES:
        raise DataError(
            f"unknown MovieLens dataset {name!r} (available: {', '.join(MOVIELENS_NAMES)})"
        )
    return f"{BASE_URL}/{name}.zip"


def fetch(url: str, out: Path, progress: bool = True, timeout: float = 60.0) -> None:
    """Stream ``url`` into the file ``out`` with a progress bar."""
    request = urllib.request.Request(url, headers={"User-Agent": "semid"})
    with urllib.request.urlopen(request, timeout=timeout) as response, out.open("wb") as fh:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(
            total=total, unit="B", unit_scale=True, desc=out.name, disable=not progress
        ) as bar:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                fh.write(chunk)
                bar.update(len(chunk))


def download_movielens(
    name: str, dest: Path | None = None, *, force: bool = False, progress: bool = True
) -> Path:
    """Download and unpack MovieLens ``name``; returns the dataset folder.

    Parameters
    ----------
    name : str
        One of ``ml-latest-small``, ``ml-100k``, ``ml-1m``, ``ml-10m``, ``ml-20m``, ``ml-25m``.
    dest : Path, optional
        The folder to create (default: ``~/.cache/semid/datasets/NAME``, where
        ``data.dataset=NAME`` finds it without a path).
    force : bool
        Download again even if ``dest`` already holds the dataset.
    progress : bool
        Show a progress bar.
    """
    url = movielens_url(name)
    dest = Path(dest).expanduser() if dest is not None else datasets_cache_dir() / name
    if dest.exists() and not force:
        try:
            detect_layout(dest)
        except DataError as exc:
            raise DataError(
                f"{dest}: exists but holds no dataset; remove it or choose another destination"
            ) from exc
        log.info("%s already present in %s", name, dest)
        return dest
    if dest.exists() and any(dest.iterdir()):
        try:
            detect_layout(dest)
        except DataError as exc:
            raise DataError(f"{dest}: exists and holds no dataset; not replacing it") from exc
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".download", dir=dest.parent))
    try:
        archive = tmp / f"{name}.zip"
        try:
            fetch(url, archive, progress=progress)
        except urllib.error.HTTPError as exc:
            raise DataError(f"cannot download {url}: the server answered HTTP {exc.code}") from exc
        except (TimeoutError, urllib.error.URLError, ConnectionError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise DataError(
                f"cannot download {url} ({reason}); no network? Download the zip by hand, unpack "
                f"it and pass data.path=FOLDER"
            ) from exc
        if not zipfile.is_zipfile(archive):
            raise DataError(f"{url}: the download is not a zip file (a proxy or error page?)")
        unpacked = tmp / "unpacked"
        _extract(archive, unpacked)
        layout = detect_layout(unpacked)
        if dest.exists():
            shutil.rmtree(dest)
        layout.folder.replace(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("%s downloaded to %s", name, dest)
    return dest


def _extract(archive: Path, out: Path) -> None:
    """Unpack ``archive`` into ``out``, refusing members that would land outside it."""
    out.mkdir(parents=True)
    root = out.resolve()
    try:
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                target = (out / member).resolve()
                if root not in target.parents and target != root:
                    raise DataError(f"{archive.name}: unsafe path {member!r} in the zip")
            zf.extractall(out)
    except zipfile.BadZipFile as exc:
        raise DataError(f"{archive.name}: corrupt zip ({exc})") from exc
