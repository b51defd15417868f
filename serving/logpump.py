"""Writes the server's output to its log file, rotated by size, losing no line.

``bentoml serve`` (the supervisor and its workers) writes to a pipe; this small process
reads it line by line and appends to ``bentoml.log``, moving it to ``bentoml.log.1`` (and
``.1`` to ``.2``, ...) before a line would take it over ``max_bytes``. It runs in a session of
its own and ignores SIGINT, SIGTERM and SIGHUP: it ends when the last writer closes the pipe,
so the server's shutdown lines are written too. Standard library only: it starts in
milliseconds and cannot fail on an import.

Usage: ``python -m serving.logpump PATH MAX_BYTES BACKUPS``
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO


class RotatingWriter:
    """Appends lines to ``path``; rotates before a line would take it over ``max_bytes``
    (a single longer line is written whole, alone in its file)."""

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        self.path, self.max_bytes, self.backups = path, max_bytes, backups
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = self._open()
        self.size = self.file.tell()

    def _open(self) -> BinaryIO:
        """Append, creating the file readable by the owner only (the log names users,
        request ids and errors)."""
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        return os.fdopen(fd, "ab")

    def _rotate(self) -> None:
        self.file.close()
        if self.backups == 0:
            self.path.unlink(missing_ok=True)
        else:
            for i in range(self.backups - 1, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{i}")
                if older.exists():
                    older.replace(self.path.with_name(f"{self.path.name}.{i + 1}"))
            self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        self.file = self._open()
        self.size = 0

    def write(self, line: bytes) -> None:
        if self.size and self.size + len(line) > self.max_bytes:
            self._rotate()
        self.file.write(line)
        self.file.flush()  # whoever tails the log sees each line as it comes
        self.size += len(line)

    def close(self) -> None:
        self.file.close()


def pump(lines: Iterable[bytes], writer: RotatingWriter) -> int:
    """Copies every line to the writer; returns how many."""
    n = 0
    for line in lines:
        writer.write(line)
        n += 1
    writer.close()
    return n


def main(argv: list[str]) -> int:
    path, max_bytes, backups = Path(argv[0]), int(argv[1]), int(argv[2])
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    pump(sys.stdin.buffer, RotatingWriter(path, max_bytes, backups))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
