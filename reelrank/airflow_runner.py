"""Run the project's DAGs through Airflow itself, on the profile's own metadata database.

``airflow dags test`` executes a whole DAG run in one process against the metadata DB in
``<home>/airflow`` (SQLite on the local profile), with real task states, XComs and Asset
events: the same DAG code the scheduler runs, without needing a scheduler.

The run's output goes to ``<home>/airflow/runs/<dag_id>.log``. A caller that wants to show
progress passes ``on_progress`` to :func:`run_dag`: the log is followed while the run writes
it, and every task that starts or ends is reported as a :class:`DagProgress` (no UI here).
"""

from __future__ import annotations

import ast
import fcntl
import json
import os
import re
import secrets
import string
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reelrank.errors import ConfigError, StageFailed
from reelrank.settings import Settings

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DAGS_DIR = PROJECT_ROOT / "dags"
POLL_S = 0.25

# What ``airflow dags test`` logs per task at INFO (airflow.sdk.definitions.dag and the
# execution API): a task starts, its state is updated, it ends. A retried task starts again.
_STARTING = re.compile(r"\[DAG TEST\] starting task_id=(\S+)")
_ENDED = re.compile(r"\[DAG TEST\] end task task_id=(\S+)")
_NEW_STATE = re.compile(r"Task instance state updated .*\bnew_state=(\w+)")
# the last line of a traceback: builtin names and the reelrank.errors family's endings
_EXCEPTION = re.compile(
    r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit|Failed|Rejected|Mismatch|NotFound|Unavailable"
    r"|Exited|Timeout)): (.+)$"
)
FINISHED_STATES = frozenset({"success", "skipped", "failed", "upstream_failed", "removed"})


class DagRunFailed(StageFailed, RuntimeError):
    """A DAG run that did not succeed; ``str()`` holds the log's tail, :attr:`brief` one line
    (the failed task and its exception) for people."""

    def __init__(
        self,
        message: str,
        dag_id: str = "",
        log_path: Path | None = None,
        task: str | None = None,
        error: str | None = None,
    ) -> None:
        super().__init__(message)
        self.dag_id, self.log_path, self.task, self.error = dag_id, log_path, task, error

    @property
    def brief(self) -> str:
        """One line: which DAG, which task, which exception, where the log is."""
        if not self.dag_id:
            return str(self).splitlines()[0] if str(self) else "DAG run failed"
        what = f"task {self.task}" if self.task else "the run"
        why = f": {self.error}" if self.error else ""
        return f"DAG {self.dag_id} failed in {what}{why} (log: {self.log_path})"

    def details(self) -> dict[str, Any]:
        """The DAG and its log, for the ``--json`` error document."""
        return {"dag_id": self.dag_id, "log": self.log_path}


@dataclass
class DagProgress:
    """Where a DAG run stands, as read from its log."""

    dag_id: str
    total: int
    done: list[str] = field(default_factory=list)
    running: str | None = None
    failed: list[str] = field(default_factory=list)
    attempts: dict[str, int] = field(default_factory=dict)

    @property
    def n_done(self) -> int:
        return len(self.done)


def dag_task_ids(dag_id: str, dags_dir: Path = DAGS_DIR) -> list[str]:
    """The task ids of a DAG file, read statically: functions decorated with ``@task`` (or
    ``@task(...)``, ``@task.<kind>``) named by ``task_id=`` or by the function's name.

    Reading the source instead of importing the DAG keeps Airflow out of the caller's
    process; a task the file builds some other way is still counted once it shows up in
    the log (:class:`TaskLogFollower` grows the total)."""
    path = dags_dir / f"{dag_id}.py"
    if not path.exists():
        return []
    ids: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for deco in node.decorator_list:
            target = deco.func if isinstance(deco, ast.Call) else deco
            root = target.value if isinstance(target, ast.Attribute) else target
            if not (isinstance(root, ast.Name) and root.id == "task"):
                continue
            task_id = node.name
            if isinstance(deco, ast.Call):
                for kw in deco.keywords:
                    if kw.arg == "task_id" and isinstance(kw.value, ast.Constant):
                        task_id = str(kw.value.value)
            ids.append(task_id)
    return ids


class TaskLogFollower:
    """Turns the text of an ``airflow dags test`` log, fed as it grows, into task progress.

    A task is running from its ``starting`` line to its ``end task`` line; the last
    ``new_state`` between them says how it ended (success, failed, up_for_retry, ...).
    Partial lines are kept until their end arrives. ``on_change`` hears of every start and
    end, even of a task that started and ended within one read of the log."""

    def __init__(
        self,
        dag_id: str,
        task_ids: list[str],
        on_change: Callable[[DagProgress], None] | None = None,
    ) -> None:
        self.state = DagProgress(dag_id, total=len(task_ids))
        self.on_change = on_change
        self._known = set(task_ids)
        self._pending = ""
        self._last_state: str | None = None

    def feed(self, text: str) -> bool:
        """Read more of the log; True when the progress changed."""
        lines = (self._pending + text).split("\n")
        self._pending = lines.pop()
        changed = False
        for line in lines:
            if self._line(line):
                changed = True
                if self.on_change is not None:
                    self.on_change(self.state)
        return changed

    def _line(self, line: str) -> bool:
        s = self.state
        if m := _STARTING.search(line):
            task = m.group(1)
            if task not in self._known:  # a task the static reading missed
                self._known.add(task)
                s.total += 1
            s.running = task
            s.attempts[task] = s.attempts.get(task, 0) + 1
            self._last_state = None
            return True
        if m := _NEW_STATE.search(line):
            self._last_state = m.group(1)
            return False
        if m := _ENDED.search(line):
            task = m.group(1)
            if self._last_state in FINISHED_STATES and task not in s.done:
                s.done.append(task)
                if self._last_state in ("failed", "upstream_failed"):
                    s.failed.append(task)
            if s.running == task:
                s.running = None
            self._last_state = None
            return True
        return False


def _failure_details(text: str) -> tuple[str | None, str | None]:
    """(the last task that started, the last exception line) of a failed run's log."""
    task = None
    for m in _STARTING.finditer(text):
        task = m.group(1)
    error = None
    for line in text.splitlines():
        if found := _EXCEPTION.match(line.strip()):
            name, message = found.group(1), found.group(2)
            # a task's data error fails fast as "AirflowFailException: <the error>: ...":
            # people read the error itself
            if name.endswith("AirflowFailException") and (inner := _EXCEPTION.match(message)):
                name, message = inner.group(1), inner.group(2)
            error = f"{name}: {message}"
    return task, error


# -- files only their owner reads ------------------------------------------------------------------
# The host may have other users: the Airflow password, the logs (which may quote settings and
# data) and Airflow's metadata DB are for the owner of ``<home>`` only.
OWNER_ONLY_FILE = 0o600
OWNER_ONLY_DIR = 0o700
AIRFLOW_USER = "admin"


def owner_only_dir(path: Path) -> Path:
    """``mkdir -p`` and ``chmod 0700``: a directory made before (0755) is tightened too."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(OWNER_ONLY_DIR)
    return path


def open_owner_only(path: Path, append: bool = True) -> int:
    """A file descriptor for writing ``path``, created 0600 (never through the umask, so it is
    never readable by others even for a moment); an existing file is tightened to 0600."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    fd = os.open(path, flags, OWNER_ONLY_FILE)
    os.fchmod(fd, OWNER_ONLY_FILE)
    return fd


def airflow_password_file(settings: Settings) -> Path:
    """Where the Airflow UI's password is (JSON: user -> password), readable only by the owner."""
    return settings.airflow_home / "simple_auth_manager_passwords.json.generated"


def ensure_airflow_password(settings: Settings) -> Path:
    """Write the admin's password into :func:`airflow_password_file` (0600) before Airflow does.

    Airflow's simple auth manager creates that file through the umask (0644: any local user
    reads it) and prints every password it generates to the api-server's log. A user it
    finds in the file already gets neither, so the password is generated here, once, and
    kept across restarts."""
    owner_only_dir(settings.airflow_home)
    path = airflow_password_file(settings)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, OWNER_ONLY_FILE)
    os.fchmod(fd, OWNER_ONLY_FILE)
    with os.fdopen(fd, "r+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # Airflow's api-server workers lock it the same way
        text = f.read().strip()
        try:
            passwords = json.loads(text) if text else {}
        except json.JSONDecodeError as err:
            raise ConfigError(
                f"{path} is not JSON ({err}); remove it to get a new password"
            ) from err
        if AIRFLOW_USER not in passwords:
            alphabet = string.ascii_letters + string.digits
            passwords[AIRFLOW_USER] = "".join(secrets.choice(alphabet) for _ in range(20))
            f.seek(0)
            f.truncate()
            f.write(json.dumps(passwords) + "\n")
    return path


@dataclass
class DagRunResult:
    dag_id: str
    seconds: float
    log_path: Path


def airflow_env(settings: Settings) -> dict[str, str]:
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(settings.airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_DIR),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY": os.environ.get(
            "AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY", "5"
        ),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": os.environ.get(
            "AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING"
        ),
        "AIRFLOW__API__HOST": "127.0.0.1",
        # the password file is ours (ensure_airflow_password), task logs are the owner's only
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(airflow_password_file(settings)),
        "AIRFLOW__LOGGING__FILE_TASK_HANDLER_NEW_FILE_PERMISSIONS": oct(OWNER_ONLY_FILE),
        "AIRFLOW__LOGGING__FILE_TASK_HANDLER_NEW_FOLDER_PERMISSIONS": oct(OWNER_ONLY_DIR),
        **settings.to_env(),
        "PYTHONWARNINGS": "ignore",
        "BENTOML_DO_NOT_TRACK": "True",
    }
    if settings.profile == "cluster":  # PostgreSQL metadata, CeleryExecutor (reelrank.cluster)
        from reelrank.cluster import airflow_env as cluster_env

        env = {**cluster_env(settings), **env}  # an AIRFLOW__* set in the environment wins
    return env


def _airflow() -> str:
    return str(Path(sys.executable).parent / "airflow")


def migrate(settings: Settings) -> None:
    """Create or upgrade the metadata DB (idempotent, about 3 s), in an Airflow home only its
    owner can read, with the UI's password already in its 0600 file."""
    ensure_airflow_password(settings)
    out = subprocess.run(
        [_airflow(), "db", "migrate"],
        env=airflow_env(settings),
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise DagRunFailed(f"airflow db migrate failed:\n{out.stdout[-2000:]}{out.stderr[-4000:]}")


def _wait(
    proc: subprocess.Popen[bytes],
    log_path: Path,
    follower: TaskLogFollower | None,
    on_progress: Callable[[DagProgress], None] | None,
    deadline: float,
) -> int:
    """Wait for the run, following its log when someone listens; kill it at the deadline."""
    if follower is None or on_progress is None:
        return proc.wait(timeout=max(deadline - time.perf_counter(), 0.0))
    with open(log_path, errors="replace") as reader:
        while True:
            try:
                rc: int | None = proc.wait(timeout=POLL_S)
            except subprocess.TimeoutExpired:
                rc = None
            follower.feed(reader.read())  # reports every task start and end to on_progress
            if rc is not None:
                return rc
            if time.perf_counter() > deadline:
                raise subprocess.TimeoutExpired(proc.args, 0)


def run_dag(
    settings: Settings,
    dag_id: str,
    conf: Mapping[str, object] | None = None,
    timeout_s: float = 1800,
    on_progress: Callable[[DagProgress], None] | None = None,
) -> DagRunResult:
    """One real DAG run with ``airflow dags test``; raises :class:`DagRunFailed` with the
    log's tail on failure. ``on_progress`` is called whenever a task starts or ends."""
    log_dir = owner_only_dir(settings.airflow_home / "runs")
    log_path = log_dir / f"{dag_id}.log"
    cmd = [_airflow(), "dags", "test", dag_id]
    if conf:
        cmd += ["--conf", json.dumps(conf)]
    env = airflow_env(settings)
    # INFO is the level at which ``dags test`` names each task as it starts and ends: the
    # log says what ran, and progress can follow it (an explicit setting wins)
    env["AIRFLOW__LOGGING__LOGGING_LEVEL"] = os.environ.get(
        "AIRFLOW__LOGGING__LOGGING_LEVEL", "INFO"
    )
    follower = TaskLogFollower(dag_id, dag_task_ids(dag_id), on_progress) if on_progress else None
    if follower is not None and on_progress is not None:
        on_progress(follower.state)
    t0 = time.perf_counter()
    with os.fdopen(open_owner_only(log_path, append=False), "wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            rc = _wait(proc, log_path, follower, on_progress, t0 + timeout_s)
        except BaseException:  # the deadline, or Ctrl-C: never leave the run behind
            proc.kill()
            proc.wait()
            raise
    seconds = time.perf_counter() - t0
    text = log_path.read_text(errors="replace")
    if rc != 0 or "DagRun failed" in text:
        task, error = _failure_details(text)
        if follower is not None and follower.state.failed:
            task = follower.state.failed[-1]
        raise DagRunFailed(
            f"DAG {dag_id} failed (log: {log_path}):\n{text[-4000:]}",
            dag_id=dag_id,
            log_path=log_path,
            task=task,
            error=error,
        )
    return DagRunResult(dag_id, seconds, log_path)
