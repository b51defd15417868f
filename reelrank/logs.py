"""The services' logs under ``<home>/logs`` (what ``reelrank up`` starts writes there):
listed, or the end of one, without reading a large file whole."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from reelrank.errors import UsageError
from reelrank.settings import Settings


@dataclass(frozen=True)
class LogFile:
    service: str  # the file name without ``.log``
    path: Path
    bytes: int
    modified: str  # ISO time, UTC

    def to_dict(self) -> dict[str, object]:
        return {
            "service": self.service,
            "path": str(self.path),
            "bytes": self.bytes,
            "modified": self.modified,
        }


def list_logs(settings: Settings) -> list[LogFile]:
    """Every ``*.log`` file under ``<home>/logs``, by name."""
    folder = settings.home / "logs"
    if not folder.is_dir():
        return []
    out = []
    for path in sorted(folder.glob("*.log")):
        st = path.stat()
        modified = datetime.fromtimestamp(st.st_mtime, UTC).isoformat(timespec="seconds")
        out.append(LogFile(path.name.removesuffix(".log"), path, st.st_size, modified))
    return out


def find_log(settings: Settings, service: str) -> LogFile:
    """The log of ``service`` (its name or file name); a clear usage error otherwise."""
    logs = list_logs(settings)
    for log in logs:
        if service in (log.service, log.path.name):
            return log
    known = ", ".join(log.service for log in logs) or "none yet"
    raise UsageError(f"no log for {service!r} under {settings.home / 'logs'} (logs: {known})")


def tail(path: Path, n: int, block: int = 64 * 1024) -> list[str]:
    """The last ``n`` lines of ``path``, reading blocks from its end."""
    if n <= 0:
        return []
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        end = f.tell()
        data = b""
        while end > 0 and data.count(b"\n") <= n:
            start = max(0, end - block)
            f.seek(start)
            data = f.read(end - start) + data
            end = start
    return data.decode(errors="replace").splitlines()[-n:]
