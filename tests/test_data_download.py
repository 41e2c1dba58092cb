"""MovieLens download with a fake HTTP fetch (no network in tests)."""

from __future__ import annotations

import io
import urllib.error
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from semid.cli.data import data_app
from semid.data import DataConfig, load_dataset
from semid.data import download as dl
from semid.errors import DataError


def movielens_zip(top: str = "ml-latest-small", extra: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr(f"{top}/movies.csv", "movieId,title,genres\n1,Heat (1995),Action|Crime\n")
        zf.writestr(f"{top}/ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,10\n")
        for name, text in (extra or {}).items():
            zf.writestr(name, text)
    return buffer.getvalue()


def fake_fetch(payload: bytes, calls: list[str]):
    def fetch(url: str, out: Path, progress: bool = True) -> None:
        calls.append(url)
        out.write_bytes(payload)

    return fetch


def test_download_unpacks_atomically(tmp_path, monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(dl, "fetch", fake_fetch(movielens_zip("ml-10M100K"), calls))
    folder = dl.download_movielens("ml-10m", tmp_path / "ml-10m", progress=False)
    assert calls == ["https://files.grouplens.org/datasets/movielens/ml-10m.zip"]
    assert folder == tmp_path / "ml-10m"
    assert sorted(p.name for p in folder.iterdir()) == ["movies.csv", "ratings.csv"]
    assert [p.name for p in tmp_path.iterdir()] == ["ml-10m"]  # no temporary left behind
    assert load_dataset(DataConfig(dataset="ml-10m", path=folder)).items.height == 1
    # present already: no second fetch
    dl.download_movielens("ml-10m", folder, progress=False)
    assert len(calls) == 1


def test_download_to_cache_through_cli(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("SEMID_DATA_DIR", str(tmp_path / "nothing"))
    monkeypatch.setattr(dl, "fetch", fake_fetch(movielens_zip("ml-1m"), []))
    result = CliRunner().invoke(data_app, ["download", "ml-1m"])
    assert result.exit_code == 0, result.output
    assert load_dataset(DataConfig(dataset="ml-1m")).interactions.height == 1


def test_download_errors(tmp_path, monkeypatch):
    def offline(url: str, out: Path, progress: bool = True) -> None:
        out.write_bytes(b"partial")
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(dl, "fetch", offline)
    with pytest.raises(DataError, match="cannot download .*ml-1m.zip .*no network"):
        dl.download_movielens("ml-1m", tmp_path / "ml-1m", progress=False)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(dl, "fetch", fake_fetch(b"<html>proxy login</html>", []))
    with pytest.raises(DataError, match="not a zip file"):
        dl.download_movielens("ml-1m", tmp_path / "ml-1m", progress=False)
    monkeypatch.setattr(dl, "fetch", fake_fetch(movielens_zip(extra={"../evil.txt": "x"}), []))
    with pytest.raises(DataError, match="unsafe path"):
        dl.download_movielens("ml-1m", tmp_path / "ml-1m", progress=False)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(DataError, match="unknown MovieLens dataset 'ml-2m'"):
        dl.download_movielens("ml-2m", tmp_path / "x")
