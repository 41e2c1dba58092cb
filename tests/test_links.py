"""Every relative link and every cited repository file in README.md and docs/ is tracked by git.

Checked: relative Markdown links ``[text](target)`` (doc-relative, or repo-relative when they
start with ``/``) and backticked paths with a directory and a known extension
(``.md .json .py .yaml .csv .png .txt .parquet``), read as repo-relative, doc-relative or
package-relative (``semid/...`` under ``src/``); ``*`` globs must match a tracked file. Paths
under run-output folders (``runs/``, ``OUT``-style placeholders, absolute or home paths) are not
repository files and are skipped.
"""

from __future__ import annotations

import fnmatch
import re
import subprocess
from pathlib import Path, PurePosixPath

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXTENSIONS = ("md", "json", "py", "yaml", "csv", "png", "txt", "parquet")
LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
CODE = re.compile(r"`([^`\s]+\.(?:" + "|".join(EXTENSIONS) + r"))`")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
# first components of backticked paths that name run outputs or placeholders, not repo files
NOT_REPO = ("runs", "~", "$", "<", "OUT", "RUN", "DIR", "PATH")


def tracked_files() -> set[str] | None:
    """Files tracked by git in the checkout, or None outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return {name for name in out.stdout.split("\0") if name}


def _normalise(path: PurePosixPath) -> str | None:
    parts: list[str] = []
    for part in path.parts:
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                return None  # outside the repository
            parts.pop()
        else:
            parts.append(part)
    return "/".join(parts)


def _exists(candidate: str | None, files: set[str], folders: set[str]) -> bool:
    if candidate is None:
        return False
    candidate = candidate.rstrip("/")
    if any(ch in candidate for ch in "*?["):
        return any(fnmatch.fnmatchcase(name, candidate) for name in files)
    return candidate in files or candidate in folders


def dead_references(files: set[str]) -> list[str]:
    """``doc: kind target`` for every link or cited path that is not tracked."""
    folders = {str(PurePosixPath(name).parent) for name in files}
    folders |= {str(parent) for name in files for parent in PurePosixPath(name).parents}
    docs = ["README.md", *sorted(n for n in files if n.startswith("docs/") and n.endswith(".md"))]
    dead: list[str] = []
    for doc in docs:
        if doc not in files or not (ROOT / doc).is_file():
            continue
        here = PurePosixPath(doc).parent
        text = (ROOT / doc).read_text(encoding="utf-8")
        for target in LINK.findall(FENCE.sub("", text)):
            target = target.split("#", 1)[0].split("?", 1)[0]
            if not target or re.match(r"^[a-zA-Z][a-zA-Z+.-]*:", target):
                continue  # anchor, URL, mailto
            path = target[1:] if target.startswith("/") else str(here / target)
            if not _exists(_normalise(PurePosixPath(path)), files, folders):
                dead.append(f"{doc}: link {target}")
        for target in CODE.findall(text):
            if "/" not in target or target.startswith(("/", "./.")) or target.startswith(NOT_REPO):
                continue
            candidates = [target, str(here / target), f"src/{target}"]
            if not any(_exists(_normalise(PurePosixPath(c)), files, folders) for c in candidates):
                dead.append(f"{doc}: path {target}")
    return dead


def test_every_link_and_cited_path_is_tracked() -> None:
    files = tracked_files()
    if files is None:
        pytest.skip("not a git checkout (git ls-files failed): links cannot be checked")
    dead = dead_references(files)
    assert not dead, f"{len(dead)} dead reference(s):\n" + "\n".join(dead)


def test_checker_finds_dead_links() -> None:
    files = {"README.md", "docs/a.md", "src/semid/x.py"}
    assert _exists(_normalise(PurePosixPath("docs/../src/semid/x.py")), files, {"src/semid"})
    assert _exists("src/semid/*.py", files, set())
    assert not _exists("benchmarks/results/*.json", files, set())
    assert _normalise(PurePosixPath("../outside.md")) is None
