"""``bentoml serve`` with its process manager's control endpoints private to the owner.

BentoML runs its workers under circus, and binds circus's control endpoint (what
``circusctl`` talks to) and its event stream to TCP ports on 127.0.0.1, with no
authentication: any local user could read the workers' options (their environment: the
settings) and, worse, add or change watchers, that is run commands as the owner. BentoML has
no setting for those endpoints, so this entry point makes the one function that creates the
arbiter bind both to unix sockets in a fresh directory only the owner may enter (0700, a
random name under the temporary directory, removed when the server stops), then runs
BentoML's own command line unchanged::

    python -m serving.launch serve serving.service:RecommenderService --port 3000

Nothing in reelrank talks to circus: ``reelrank status`` asks the HTTP health endpoints, and
stopping goes by signal to the process group.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any


def private_endpoints() -> tuple[str, str, Path]:
    """(control endpoint, pub/sub endpoint, their directory): ``ipc://`` sockets in a new 0700
    directory (``mkdtemp`` creates it 0700, with a name nobody can guess)."""
    where = Path(tempfile.mkdtemp(prefix="reelrank-circus-"))
    return f"ipc://{where / 'control'}", f"ipc://{where / 'events'}", where


def install() -> None:
    """Replace BentoML's arbiter factory by one on private endpoints (every BentoML serve path
    imports it from its module at call time, so the module attribute is the one to set)."""
    from bentoml._internal.utils import circus

    def private_arbiter(
        watchers: list[Any], *, threaded: bool = False, **kwargs: Any
    ) -> circus.Arbiter:
        control, events, where = private_endpoints()
        cls = circus.ThreadedArbiter if threaded else circus.Arbiter
        arbiter = cls(
            watchers,
            endpoint=control,
            pubsub_endpoint=events,
            # BentoML's own default: its health check runs before the workers are up
            check_delay=kwargs.pop("check_delay", 10),
            **kwargs,
        )
        arbiter.exit_stack.callback(shutil.rmtree, where, ignore_errors=True)
        return arbiter

    circus.create_standalone_arbiter = private_arbiter


def main(argv: list[str] | None = None) -> int:
    """BentoML's command line (``bentoml ...``) with :func:`install` in effect."""
    install()
    from bentoml_cli.cli import cli

    cli.main(args=sys.argv[1:] if argv is None else argv, prog_name="bentoml")
    return 0


if __name__ == "__main__":
    sys.exit(main())
