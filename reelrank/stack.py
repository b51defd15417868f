"""``reelrank up | down | status``: the whole stack on 127.0.0.1, started and stopped by pid.

``up`` starts, each in a process group of its own, with its log under ``<home>/logs/``:

- Airflow: ``api-server`` (the UI and ``/api/v2``), ``scheduler`` (LocalExecutor),
  ``dag-processor`` and ``triggerer``, on the project's metadata DB; the DAGs are
  unpaused through the API once the dag-processor has parsed them; in the cluster profile
  the scheduler hands tasks to Celery and a ``celery worker`` runs them;
- the MLflow UI on the project's tracking store and artifact root;
- the Feast UI (``feast ui``) on the project's registry, and Evidently's UI (``evidently ui``)
  on the drift checks' workspace (``<home>/evidently``);
- the BentoML service with the registry's champion (skipped, with a message, before there
  is one).

Each process's pid goes to ``<home>/run/<name>.pid``; ``down`` stops exactly those process
groups (SIGTERM, then SIGKILL after a grace period), their children included, and removes the
pid files. ``status`` says which run and answer, and which model versions serve.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from features.store import write_repo_yaml
from reelrank.airflow_runner import (
    AIRFLOW_USER,
    PROJECT_ROOT,
    airflow_env,
    airflow_password_file,
    migrate,
    open_owner_only,
    owner_only_dir,
)
from reelrank.errors import ServiceExited, ServiceTimeout
from reelrank.settings import Settings, move_secrets_to_file

DAG_IDS = (
    "reelrank_features",
    "reelrank_training",
    "reelrank_deploy",
    "reelrank_monitoring",
    "reelrank_experiment",
)


@dataclass(frozen=True)
class Service:
    name: str
    argv: list[str]
    env: dict[str, str]
    health: str | None  # a URL that answers 200 when the service is up
    url: str | None  # what a person opens
    # run by `start`, not by `status`: writes the private files the service reads (0600) and
    # returns its environment
    setup: Callable[[dict[str, str]], dict[str, str]] | None = None


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def run_dir(settings: Settings) -> Path:
    return settings.home / "run"


def log_dir(settings: Settings) -> Path:
    return settings.home / "logs"


def stack_airflow_env(settings: Settings) -> dict[str, str]:
    """Airflow's environment for long-running components: LocalExecutor (CeleryExecutor in
    the cluster profile), the API and the execution API on 127.0.0.1, new DAGs unpaused."""
    port = settings.ui.airflow_port
    env = airflow_env(settings)
    return {
        **env,
        # the cluster profile's CeleryExecutor comes with airflow_env (reelrank.cluster)
        "AIRFLOW__CORE__EXECUTOR": env.get("AIRFLOW__CORE__EXECUTOR", "LocalExecutor"),
        "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{AIRFLOW_USER}:admin",
        # INFO: a task's log says what it did (day, rows, the gate's and the drift check's
        # verdicts, why it skipped); at WARNING a skipped task's log is empty
        "AIRFLOW__LOGGING__LOGGING_LEVEL": os.environ.get(
            "AIRFLOW__LOGGING__LOGGING_LEVEL", "INFO"
        ),
    }


def _ui(name: str, port: int, health: str, *argv: str) -> Service:
    """A UI that takes ``--host``/``--port`` (Feast's, Evidently's) on 127.0.0.1."""
    url = f"http://127.0.0.1:{port}"
    args = [_bin(argv[0]), *argv[1:], "--host", "127.0.0.1", "--port", str(port)]
    return Service(name, args, {**os.environ, "DO_NOT_TRACK": "1"}, url + health, url)


def services(settings: Settings, serve: bool = True) -> list[Service]:
    af = stack_airflow_env(settings)
    ap, mp, sp = settings.ui.airflow_port, settings.ui.mlflow_port, settings.serving.port
    airflow_url = f"http://127.0.0.1:{ap}"
    out = [
        Service(
            "airflow-api-server",
            [_bin("airflow"), "api-server", "--host", "127.0.0.1", "--port", str(ap)],
            af,
            f"{airflow_url}/api/v2/monitor/health",
            airflow_url,
        ),
        Service("airflow-scheduler", [_bin("airflow"), "scheduler"], af, None, None),
        Service("airflow-dag-processor", [_bin("airflow"), "dag-processor"], af, None, None),
        Service("airflow-triggerer", [_bin("airflow"), "triggerer"], af, None, None),
    ]
    if af["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor":
        # the worker that runs the tasks; on a real cluster, as many as the load needs
        out.append(
            Service(
                "airflow-celery-worker",
                [
                    _bin("airflow"),
                    "celery",
                    "worker",
                    "--concurrency",
                    str(settings.celery_worker_concurrency),
                    "--without-mingle",
                    "--without-gossip",
                ],
                af,
                None,
                None,
            )
        )
    mlflow_argv = [_bin("mlflow"), "server", "--host", "127.0.0.1", "--port", str(mp)]
    mlflow_setup: Callable[[dict[str, str]], dict[str, str]] | None = None
    if settings.ui.mlflow_auth:  # logins and permissions (reelrank.cluster.ensure_mlflow_auth)
        from reelrank.cluster import ensure_mlflow_auth

        def with_logins(env: dict[str, str]) -> dict[str, str]:
            return {**env, **ensure_mlflow_auth(settings).env()}

        mlflow_argv += ["--app-name", "basic-auth"]
        mlflow_setup = with_logins

    out += [
        Service(
            "mlflow-ui",
            [*mlflow_argv, "--workers", "1"],
            {
                **os.environ,
                **settings.to_env(),
                # through the environment, not argv: the store URL may carry a password
                "MLFLOW_BACKEND_STORE_URI": settings.tracking_uri,
                "MLFLOW_DEFAULT_ARTIFACT_ROOT": settings.artifact_root,
                # MLflow's job runner (eight huey processes) serves GenAI jobs reelrank never
                # submits
                "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            },
            f"http://127.0.0.1:{mp}/health",
            f"http://127.0.0.1:{mp}",
            mlflow_setup,
        ),
        _ui(
            "feast-ui",
            settings.ui.feast_port,
            "/health",
            "feast",
            "-c",
            str(settings.home),
            "-f",
            str(settings.feast_dir / "feature_store.yaml"),
            "ui",
        ),
        _ui(
            "evidently-ui",
            settings.ui.evidently_port,
            "/api/version",
            "evidently",
            "ui",
            "--workspace",
            str(settings.evidently_dir),
        ),
    ]
    if serve:
        from serving.server import secrets_file, serve_command

        out.append(
            Service(
                "bentoml",
                serve_command("127.0.0.1", sp),
                {
                    **os.environ,
                    **settings.to_env(),
                    "BENTOML_DO_NOT_TRACK": "True",
                    "BENTOML_HOME": str(settings.serving_dir / "bentoml_home"),
                },
                f"http://127.0.0.1:{sp}/readyz",
                f"http://127.0.0.1:{sp}",
                # the secrets in a 0600 file, not in the environment circus hands out
                lambda env: move_secrets_to_file(env, secrets_file(settings, sp)),
            )
        )
    return out


# -- processes --------------------------------------------------------------------------------
def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():  # a zombie is dead for our purposes
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children, grandchildren, ...), from /proc."""
    parent: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    out: list[int] = []
    frontier = [pid]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        out += kids
        frontier += kids
    return out


def read_pids(settings: Settings) -> dict[str, int]:
    pids = {}
    for path in sorted(run_dir(settings).glob("*.pid")):
        try:
            pids[path.stem] = int(path.read_text().strip())
        except ValueError:
            path.unlink()
    return pids


def _answers(url: str | None) -> bool:
    if url is None:
        return True
    try:
        return httpx.get(url, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def start(service: Service, settings: Settings) -> int:
    """Start ``service`` in its own process group; its log (0600, in a 0700 directory) is
    its owner's only: a service may log a setting or a request."""
    owner_only_dir(log_dir(settings))
    owner_only_dir(run_dir(settings))
    env = service.env if service.setup is None else service.setup(service.env)
    with os.fdopen(open_owner_only(log_dir(settings) / f"{service.name}.log"), "ab") as log:
        proc = subprocess.Popen(
            service.argv,
            cwd=PROJECT_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: `down` stops exactly it
        )
    (run_dir(settings) / f"{service.name}.pid").write_text(str(proc.pid))
    return proc.pid


def stop_pid(pid: int, grace_s: float = 20.0) -> None:
    """SIGTERM the process group and every descendant, then SIGKILL what is left."""
    family = [pid, *descendants(pid)]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for p in family:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if p == pid:
                    os.killpg(p, sig)
                else:
                    os.kill(p, sig)
        deadline = time.monotonic() + (grace_s if sig == signal.SIGTERM else 5.0)
        while time.monotonic() < deadline and any(_alive(p) for p in family):
            time.sleep(0.2)
        if not any(_alive(p) for p in family):
            return
        family = [p for p in family if _alive(p)] + descendants(pid)


# -- Airflow API --------------------------------------------------------------------------------
def airflow_password(settings: Settings) -> str | None:
    path = airflow_password_file(settings)
    if not path.exists():
        return None
    return str(json.loads(path.read_text()).get(AIRFLOW_USER))


def airflow_token(settings: Settings) -> str:
    base = f"http://127.0.0.1:{settings.ui.airflow_port}"
    r = httpx.post(
        f"{base}/auth/token",
        json={"username": AIRFLOW_USER, "password": airflow_password(settings)},
        timeout=10,
    )
    r.raise_for_status()
    return str(r.json()["access_token"])


def airflow_dags(settings: Settings) -> dict[str, dict[str, Any]]:
    base = f"http://127.0.0.1:{settings.ui.airflow_port}/api/v2"
    headers = {"Authorization": f"Bearer {airflow_token(settings)}"}
    r = httpx.get(f"{base}/dags", headers=headers, params={"limit": 100}, timeout=10)
    r.raise_for_status()
    return {d["dag_id"]: d for d in r.json()["dags"]}


def unpause_dags(settings: Settings, timeout_s: float = 180.0) -> dict[str, bool]:
    """Wait until the dag-processor registered the DAGs, then unpause them."""
    base = f"http://127.0.0.1:{settings.ui.airflow_port}/api/v2"
    deadline = time.monotonic() + timeout_s
    dags: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        try:
            dags = airflow_dags(settings)
        except httpx.HTTPError:
            dags = {}
        if all(d in dags for d in DAG_IDS):
            break
        time.sleep(2.0)
    missing = [d for d in DAG_IDS if d not in dags]
    if missing:
        raise ServiceTimeout(f"Airflow did not register {missing} within {timeout_s:.0f}s")
    headers = {"Authorization": f"Bearer {airflow_token(settings)}"}
    for dag_id in DAG_IDS:
        if dags[dag_id].get("is_paused"):
            httpx.patch(
                f"{base}/dags/{dag_id}", headers=headers, json={"is_paused": False}, timeout=10
            ).raise_for_status()
    return {d: not v.get("is_paused") for d, v in airflow_dags(settings).items() if d in DAG_IDS}


# -- the commands ---------------------------------------------------------------------------------
@dataclass
class UpResult:
    started: dict[str, int]
    urls: dict[str, str]
    skipped: dict[str, str]
    seconds_to_ready: float
    airflow_login: str
    dags_unpaused: dict[str, bool]

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def champion_exists(settings: Settings) -> bool:
    from models.registry import CHAMPION, alias_version, client

    try:
        return alias_version(client(settings), settings.ranker_model_name, CHAMPION) is not None
    except Exception:  # an empty or missing registry: nothing to serve
        return False


def up(settings: Settings, serve: bool = True, timeout_s: float = 300.0) -> UpResult:
    """Start every service that is not running yet; wait until all of them answer."""
    t0 = time.monotonic()
    running = {n: p for n, p in read_pids(settings).items() if _alive(p)}
    skipped: dict[str, str] = {}
    if settings.profile == "cluster":
        from reelrank.cluster import check_servers

        check_servers(settings)  # PostgreSQL (its databases created) and Redis answer
    if serve and not champion_exists(settings):
        serve = False
        skipped["bentoml"] = "no champion in the registry yet: run `make demo` first"
    migrate(settings)
    write_repo_yaml(settings)  # what `feast ui` reads
    started: dict[str, int] = {}
    wanted = services(settings, serve)
    for svc in wanted:
        if svc.name in running:
            skipped[svc.name] = f"already running (pid {running[svc.name]})"
            continue
        started[svc.name] = start(svc, settings)
    deadline = t0 + timeout_s
    pending = {s.name: s for s in wanted}
    while pending and time.monotonic() < deadline:
        for name, svc in list(pending.items()):
            pid = started.get(name) or running.get(name)
            if pid is not None and not _alive(pid):
                raise ServiceExited(
                    f"{name} exited at start; see {log_dir(settings) / (name + '.log')}"
                )
            if _answers(svc.health):
                pending.pop(name)
        time.sleep(0.5)
    if pending:
        raise ServiceTimeout(f"not answering after {timeout_s:.0f}s: {sorted(pending)}")
    unpaused = unpause_dags(settings, timeout_s=max(30.0, deadline - time.monotonic()))
    password = airflow_password(settings) or "(see the api-server log)"
    return UpResult(
        started=started,
        urls={s.name: s.url for s in wanted if s.url},
        skipped=skipped,
        seconds_to_ready=round(time.monotonic() - t0, 1),
        airflow_login=f"{AIRFLOW_USER} / {password}",
        dags_unpaused=unpaused,
    )


def down(settings: Settings) -> dict[str, str]:
    """Stop every process ``up`` started (by its pid file); returns name -> what happened."""
    out = {}
    for name, pid in read_pids(settings).items():
        if _alive(pid):
            stop_pid(pid)
            out[name] = f"stopped (pid {pid})"
        else:
            out[name] = f"was not running (pid {pid})"
        (run_dir(settings) / f"{name}.pid").unlink(missing_ok=True)
    return out


def _serving_status(url: str | None) -> dict[str, Any] | None:
    """The server's own ``GET /status`` (versions served against their aliases, the online
    store's health), or None when it does not answer."""
    try:
        r = httpx.get(f"{url}/status", timeout=2.0)
        return dict(r.json()) if r.status_code in (200, 503) else None
    except (httpx.HTTPError, ValueError):
        return None


def serving_lines(doc: dict[str, Any] | None) -> list[str]:
    """What ``reelrank status`` prints of the server's ``/status``: per arm the version
    served and, where it differs, the one its alias names and why it is not served."""
    if not doc:
        return []
    out = []
    for arm, m in (doc.get("models") or {}).items():
        line = f"bentoml {arm}: serves v{m['served']}"
        if m.get("alias") != m.get("served"):
            line += f", {arm} alias is v{m['alias']}"
            if m.get("error"):
                line += f" (cannot load: {m['error']})"
        out.append(line)
    features = doc.get("features") or {}
    if features.get("failing"):
        out.append(f"bentoml: {features.get('error')}")
    return out


# as long as ``up`` waits for a service: a live process that does not answer yet is starting
STARTUP_GRACE_S = 300.0


def _age_s(pid: int) -> float | None:
    """Seconds since ``pid`` started (from /proc; None where there is no /proc)."""
    try:
        start_ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return uptime - start_ticks / os.sysconf("SC_CLK_TCK")


def _state(pid: int | None, alive: bool, answering: bool, grace_s: float) -> str:
    """answering | starting (alive, not healthy yet) | not answering | stopped | not started."""
    if pid is None:
        return "not started"
    if not alive:
        return "stopped"
    if answering:
        return "answering"
    age = _age_s(pid)
    return "starting" if age is None or age < grace_s else "not answering"


def status(settings: Settings, grace_s: float = STARTUP_GRACE_S) -> dict[str, Any]:
    """What runs (pid alive, URL answering, its ``state``) and which model versions serve.
    A live service that does not answer within ``grace_s`` of its start is "starting"."""
    from models.registry import CHALLENGER, CHAMPION, alias_version, client

    pids = read_pids(settings)
    rows: dict[str, dict[str, Any]] = {}
    for svc in services(settings):
        pid = pids.get(svc.name)
        alive = pid is not None and _alive(pid)
        answering = alive and _answers(svc.health)
        rows[svc.name] = {
            "pid": pid,
            "running": alive,
            "answering": answering,
            "state": _state(pid, alive, answering, grace_s),
            "url": svc.url,
        }
        if svc.name == "bentoml" and alive:
            rows[svc.name]["serving"] = _serving_status(svc.url)
    models: dict[str, dict[str, str | None]] = {}
    try:
        c = client(settings)
        for name in (settings.ranker_model_name, settings.retrieval_model_name):
            models[name] = {
                "champion": alias_version(c, name, CHAMPION),
                "challenger": alias_version(c, name, CHALLENGER),
            }
    except Exception as err:  # no registry yet
        models = {"error": {"registry": str(err)[:200]}}
    # where the owner reads the UI's password (the file is 0600: nobody else can)
    login = {"user": AIRFLOW_USER, "password_file": str(airflow_password_file(settings))}
    out: dict[str, Any] = {"services": rows, "models": models, "airflow_login": login}
    if settings.ui.mlflow_auth:
        from reelrank.cluster import MLFLOW_ADMIN, mlflow_auth_config_path

        path = str(mlflow_auth_config_path(settings))
        out["mlflow_login"] = {"user": MLFLOW_ADMIN, "password_file": path}
    return out
