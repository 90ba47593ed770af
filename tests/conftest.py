"""Test set-up: every database test runs on SQLite and on PostgreSQL.

PostgreSQL comes from TALLYBOOK_TEST_POSTGRES_URL, else the local server on 127.0.0.1:5432,
else a throwaway cluster started from the PostgreSQL binaries if they are installed. Where none
is possible the PostgreSQL half is skipped with a loud message, and with CI=true it fails.
Each test session gets its own fresh database; each test its own organisation.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tallybook.db.engine import upgrade_database
from tallybook.services.base import Actor, Database, Role
from tallybook.services.organizations import create_organization

SERVER_URL = os.environ.get(
    "TALLYBOOK_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
IN_CI = os.environ.get("CI", "").lower() == "true"


def _reachable(url: str) -> bool:
    try:
        engine = create_engine(
            url.replace("postgresql://", "postgresql+psycopg://"),
            connect_args={"connect_timeout": 3},
        )
        with engine.connect() as connection:
            connection.execute(text("select 1"))
        engine.dispose()
        return True
    except Exception:  # noqa: BLE001 - any failure means "not here"
        return False


def _throwaway_cluster() -> tuple[str, subprocess.Popen[bytes], Path] | None:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), reverse=True)
    initdb = shutil.which("initdb") or (str(candidates[0]) if candidates else None)
    if initdb is None:
        return None
    bindir = Path(initdb).parent
    workdir = Path(tempfile.mkdtemp(prefix="tallybook-pg-"))
    user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if user:
        shutil.chown(workdir, "postgres")
    subprocess.run(
        [*user, initdb, "-D", str(workdir / "data"), "-A", "trust", "-U", "postgres"],
        check=True,
        capture_output=True,
    )
    port = 55432
    process = subprocess.Popen(
        [
            *user,
            str(bindir / "postgres"),
            "-D",
            str(workdir / "data"),
            "-p",
            str(port),
            "-k",
            str(workdir),
            "-c",
            "listen_addresses=127.0.0.1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    for _ in range(50):
        if _reachable(url):
            return url, process, workdir
        time.sleep(0.2)
    process.terminate()
    return None


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str | None]:
    if _reachable(SERVER_URL):
        yield SERVER_URL
        return
    started = _throwaway_cluster()
    if started is None:
        message = (
            f"PostgreSQL is not reachable at {SERVER_URL} and no PostgreSQL binaries were "
            "found: THE POSTGRESQL HALF OF THE SUITE IS SKIPPED"
        )
        if IN_CI:
            pytest.fail(message + " (CI=true makes this a failure)")
        warnings.warn(message, stacklevel=1)
        print("\n" + "!" * 80 + "\n" + message + "\n" + "!" * 80)
        yield None
        return
    url, process, workdir = started
    yield url
    process.terminate()
    process.wait(timeout=30)
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url(postgres_server: str | None) -> Iterator[str | None]:
    if postgres_server is None:
        yield None
        return
    name = f"tallybook_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(
        postgres_server.replace("postgresql://", "postgresql+psycopg://"),
        isolation_level="AUTOCOMMIT",
    )
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = postgres_server.rsplit("/", 1)[0] + "/" + name
    upgrade_database(url)
    yield url
    with admin.connect() as connection:
        connection.execute(
            text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
        )
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'tallybook.db'}"
    upgrade_database(url)
    return url


_databases: dict[str, Database] = {}


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest) -> Database:
    """A migrated database of each backend (shared by the session; tests use their own org)."""
    if request.param == "sqlite":
        url = request.getfixturevalue("sqlite_url")
    else:
        url = request.getfixturevalue("postgres_url")
        if url is None:
            pytest.skip("PostgreSQL unavailable (see the loud message above)")
    if url not in _databases:
        _databases[url] = Database(url)
    return _databases[url]


@pytest.fixture
def postgres_db(request: pytest.FixtureRequest) -> Database:
    url = request.getfixturevalue("postgres_url")
    if url is None:
        pytest.skip("PostgreSQL unavailable (see the loud message above)")
    if url not in _databases:
        _databases[url] = Database(url)
    return _databases[url]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    for database in _databases.values():
        database.dispose()
    _databases.clear()


@pytest.fixture
def admin(db: Database) -> Actor:
    org, key = create_organization(db, "Acme Billing GmbH", "EUR", timezone="Europe/Berlin")
    return Actor(org.id, key.id, Role.ADMIN)


def make_org(db: Database, **settings: object) -> Actor:
    org, key = create_organization(
        db, "Test Org", "USD", timezone="UTC", settings=dict(settings) if settings else None
    )
    return Actor(org.id, key.id, Role.ADMIN)
