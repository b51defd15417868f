"""The cluster profile's servers: which database, which Redis, which broker, from settings.

One PostgreSQL server holds four databases, named after the one in ``postgres_url``
(``reelrank`` by default): ``reelrank`` for Feast's SQL registry, ``reelrank_mlflow`` for the
MLflow tracking store, ``reelrank_airflow`` for Airflow's metadata and
``reelrank_mlflow_auth`` for the users of the MLflow UI's basic-auth app
(:func:`ensure_mlflow_auth`, when ``ui.mlflow_auth`` is on). Redis holds Feast's
online store and the serving state; Celery's broker is ``celery_broker_url`` (Redis or
RabbitMQ), Redis by default. Every URL comes from settings or the environment and may carry a
password, so they are secrets: nothing here logs or prints one (:func:`redact` shows a URL
with its password masked).
"""

from __future__ import annotations

import configparser
import logging
import os
import secrets
import string
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from reelrank.errors import ServiceUnavailable
from reelrank.settings import (
    PURPOSES,
    Settings,
    _with_database,
    database_url,
    redis_target,
)

log = logging.getLogger(__name__)


class ServerUnavailable(ServiceUnavailable, RuntimeError):
    """A server the cluster profile needs does not answer (the message says which)."""


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _libpq(url: str) -> str:
    """A SQLAlchemy URL (``postgresql+psycopg://``) as a libpq one (``postgresql://``)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(scheme="postgresql"))


def ensure_databases(settings: Settings) -> list[str]:
    """Create the profile's databases that do not exist yet; returns those created.

    Needs a role allowed to create databases; where operators create them instead, they
    already exist and nothing is done."""
    import psycopg

    created: list[str] = []
    maintenance = _libpq(_with_database(settings.postgres_url.get_secret_value(), "postgres"))
    try:
        con = psycopg.connect(maintenance, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as err:
        raise ServerUnavailable(
            f"PostgreSQL does not answer at {redact(maintenance)}: {err}".strip()
        ) from err
    with con:
        for purpose in PURPOSES:
            name = urlsplit(database_url(settings, purpose)).path.lstrip("/")
            exists = con.execute("select 1 from pg_database where datname = %s", (name,)).fetchone()
            if not exists:
                con.execute(f'create database "{name}"')
                created.append(name)
    if created:
        log.info("created databases %s", created)
    return created


def drop_databases(settings: Settings) -> None:
    """Drop the profile's databases (a test world's teardown)."""
    import psycopg

    maintenance = _libpq(_with_database(settings.postgres_url.get_secret_value(), "postgres"))
    with psycopg.connect(maintenance, autocommit=True, connect_timeout=5) as con:
        for purpose in PURPOSES:
            name = urlsplit(database_url(settings, purpose)).path.lstrip("/")
            con.execute(f'drop database if exists "{name}" with (force)')


def broker_url(settings: Settings) -> str:
    if settings.celery_broker_url is not None:
        return settings.celery_broker_url.get_secret_value()
    return settings.redis_url.get_secret_value()


def check_servers(settings: Settings) -> None:
    """Raise :class:`ServerUnavailable` naming the first server that does not answer."""
    import redis

    ensure_databases(settings)  # connects to PostgreSQL (and creates what is missing)
    target = redis_target(settings)
    try:
        redis.Redis(
            host=target.host,
            port=target.port,
            db=target.db,
            password=target.password,
            socket_connect_timeout=5,
        ).ping()
    except redis.RedisError as err:
        raise ServerUnavailable(
            f"Redis does not answer at {target.host}:{target.port}: {err}"
        ) from err


def airflow_env(settings: Settings) -> dict[str, str]:
    """Airflow's settings for the cluster profile: metadata in PostgreSQL, CeleryExecutor
    with the configured broker, Celery results in the metadata database."""
    conn = database_url(settings, "airflow")
    return {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": conn,
        # psycopg 3 drives both engines (Airflow would otherwise want asyncpg for the async one)
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": conn,
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CELERY__BROKER_URL": broker_url(settings),
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{conn}",
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(settings.celery_worker_concurrency),
    }


# -- the MLflow UI's logins ------------------------------------------------------------------
MLFLOW_ADMIN = "admin"


@dataclass(frozen=True)
class MlflowAuth:
    """MLflow's basic-auth app as ``reelrank up`` runs it: its configuration file (0600, in a
    0700 directory), which holds the admin's login and the database of users."""

    config_path: Path
    admin_user: str
    admin_password: str
    secret_key: str  # Flask's key for the login form's CSRF token, the same in every worker

    def env(self) -> dict[str, str]:
        """What ``mlflow server --app-name basic-auth`` reads."""
        return {
            "MLFLOW_AUTH_CONFIG_PATH": str(self.config_path),
            "MLFLOW_FLASK_SERVER_SECRET_KEY": self.secret_key,
        }


def mlflow_auth_config_path(settings: Settings) -> Path:
    return settings.mlflow_dir / "auth" / "basic_auth.ini"


def _password(n: int = 24) -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(n))


def ensure_mlflow_auth(settings: Settings) -> MlflowAuth:
    """Write (once; later calls keep the passwords) the basic-auth app's configuration.

    Users live in PostgreSQL (``<db>_mlflow_auth``) in the cluster profile, in a SQLite file
    (0600) beside the configuration otherwise. Anonymous requests are refused (401) and a
    user who logs in reads everything (``default_permission = READ``); only the admin, or a
    user the admin grants MANAGE on a model, moves its aliases. The admin's password is
    generated here and read from the file, never passed on a command line or printed."""
    path = mlflow_auth_config_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    old = configparser.ConfigParser(interpolation=None)
    old.read(path)
    if settings.profile == "cluster":
        database = database_url(settings, "mlflow_auth")
    else:
        db_file = path.parent / "basic_auth.db"
        os.close(os.open(db_file, os.O_WRONLY | os.O_CREAT, 0o600))
        database = f"sqlite:///{db_file}"
    config = configparser.ConfigParser(interpolation=None)
    config["mlflow"] = {
        "default_permission": "READ",
        "database_uri": database,
        "admin_username": MLFLOW_ADMIN,
        "admin_password": old.get("mlflow", "admin_password", fallback="") or _password(),
        "authorization_function": "mlflow.server.auth:authenticate_request_basic_auth",
    }
    config["reelrank"] = {
        "flask_secret_key": old.get("reelrank", "flask_secret_key", fallback="") or _password(48)
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # a file from before keeps no wider mode
    with os.fdopen(fd, "w") as f:
        config.write(f)
    return MlflowAuth(
        path,
        MLFLOW_ADMIN,
        config["mlflow"]["admin_password"],
        config["reelrank"]["flask_secret_key"],
    )
