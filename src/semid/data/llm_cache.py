"""The LLM query generator's append-only JSONL cache (one validated item per line)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import os
from pathlib import Path
from typing import IO, Any

from semid.errors import ConfigError

log = logging.getLogger(__name__)

CACHE_VERSION = 1


class QueryCache:
    """Append-only JSONL of validated per-item results; one line per item, fsynced.

    Lines whose ``fingerprint`` differs (another prompt, model or ``n_queries``) are ignored,
    as is a truncated last line (it is cut off before new lines are appended). The file is
    locked while open, so two runs cannot write it at once.
    """

    def __init__(self, path: Path, fingerprint: str) -> None:
        self.path = Path(path)
        self.fingerprint = fingerprint
        self._fh: IO[bytes] | None = None

    def open(self) -> dict[int, dict[str, Any]]:
        """Lock the file and return its valid records by item id."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = self.path.open("a+b")
        try:
            _lock(fh, self.path)
            fh.seek(0)
            data = fh.read()
            if data and not data.endswith(b"\n"):
                keep = data.rfind(b"\n") + 1
                log.warning("%s: dropped a truncated last line (an interrupted write)", self.path)
                fh.truncate(keep)
                fh.flush()
                os.fsync(fh.fileno())
                data = data[:keep]
        except BaseException:
            fh.close()
            raise
        self._fh = fh
        records: dict[int, dict[str, Any]] = {}
        other = bad = 0
        for line in data.splitlines():
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                item_id = int(record["item_id"])
                ok = isinstance(record["queries"], list) and isinstance(record["paraphrases"], list)
            except (ValueError, KeyError, TypeError):
                bad += 1
                continue
            if not ok:
                bad += 1
            elif record.get("fingerprint") != self.fingerprint:
                other += 1
            else:
                records[item_id] = record
        if bad:
            log.warning("%s: skipped %d unreadable line(s)", self.path, bad)
        if other:
            log.info(
                "%s: %d cached result(s) from another prompt/model/n_queries are not reused",
                self.path,
                other,
            )
        return records

    def append(self, *records: dict[str, Any]) -> None:
        """Write each record as one line; flushed and fsynced before returning."""
        if self._fh is None:
            raise RuntimeError("QueryCache.append before open")
        lines = [
            json.dumps({**record, "fingerprint": self.fingerprint}, ensure_ascii=False) + "\n"
            for record in records
        ]
        self._fh.write("".join(lines).encode("utf-8"))
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class GroupCommit:
    """Cache appends off the event loop; records finished meanwhile share one fsync.

    ``await write(record)`` returns once the record's line is on disk, so an item counts as
    done only when a kill can no longer lose it; fsync (milliseconds) bounds throughput only
    per batch, not per item.
    """

    def __init__(self, cache: QueryCache) -> None:
        self.cache = cache
        self.pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="semid-cache")
        self.pending: list[tuple[dict[str, Any], asyncio.Future[None]]] = []
        self.flushing = False
        self.task: asyncio.Task[None] | None = None

    async def write(self, record: dict[str, Any]) -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self.pending.append((record, done))
        if not self.flushing:
            self.flushing = True
            self.task = loop.create_task(self._flush())
        await done

    async def drain(self) -> None:
        """Wait until every record handed over so far is on disk (also when cancelled)."""
        while self.task is not None and not self.task.done():
            await asyncio.wait({self.task})

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self.pending:
                batch, self.pending = self.pending, []
                try:
                    await loop.run_in_executor(
                        self.pool, self.cache.append, *[record for record, _ in batch]
                    )
                except Exception as exc:  # disk full, ...: every waiter sees it
                    for _, done in batch:
                        if not done.done():
                            done.set_exception(exc)
                else:
                    for _, done in batch:
                        if not done.done():
                            done.set_result(None)
        finally:
            self.flushing = False

    def close(self) -> None:
        self.pool.shutdown(wait=True)


def _lock(fh: IO[bytes], path: Path) -> None:
    try:
        import fcntl
    except ImportError:  # Windows: no advisory lock
        return
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise ConfigError(
            f"{path}: another process is using this cache (is another `semid queries generate` "
            "still running?)"
        ) from None
