"""The embedded state store: one SQLite file, shared by every thread and process that opens it.

The file runs in WAL mode with a busy timeout, so readers never block writers and concurrent
writers from several processes wait for each other instead of failing. Every write appends a
row to the ``changes`` table in the same transaction; each store object with subscribers runs
one background thread that reads new rows (at once after a write of its own, otherwise every
50 ms) and calls the subscribers in sequence order. The table keeps the last
:data:`CHANGES_KEPT` rows; a subscriber that falls further behind gets ``Change("resync", "")``.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson

from clipper_core.exceptions import (
    ClipperError,
    ConflictError,
    NotFoundError,
    StorageError,
    ValidationError,
)
from clipper_core.hookspecs import hookimpl
from clipper_core.store.api import Change, StateStore, Subscription
from clipper_core.types import Application, InputType, ModelVersion, Replica

log = logging.getLogger(__name__)

#: Rows of the change feed kept in the file (older ones are pruned on write).
CHANGES_KEPT = 10_000
#: How often a subscribed store looks for changes written by other processes.
POLL_INTERVAL_S = 0.05
#: How long a write waits for another process's write transaction to finish.
BUSY_TIMEOUT_S = 30.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS applications (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    input_type INTEGER NOT NULL,
    default_output TEXT NOT NULL,
    latency_slo_micros INTEGER NOT NULL,
    policy TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS links (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    app_name TEXT NOT NULL,
    model_name TEXT NOT NULL,
    UNIQUE (app_name, model_name)
);
CREATE TABLE IF NOT EXISTS model_versions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    input_type INTEGER NOT NULL,
    labels TEXT NOT NULL,
    image TEXT NOT NULL,
    batch_size INTEGER NOT NULL,
    model_data_path TEXT NOT NULL,
    UNIQUE (name, version)
);
CREATE TABLE IF NOT EXISTS current_versions (
    name TEXT PRIMARY KEY,
    version TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS activations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    UNIQUE (name, version)
);
CREATE TABLE IF NOT EXISTS replicas (
    model_name TEXT NOT NULL,
    model_version TEXT NOT NULL,
    replica_id INTEGER NOT NULL,
    input_type INTEGER NOT NULL,
    frontend_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (model_name, model_version, replica_id)
);
CREATE TABLE IF NOT EXISTS replica_ids (
    model_name TEXT NOT NULL,
    model_version TEXT NOT NULL,
    next_id INTEGER NOT NULL,
    PRIMARY KEY (model_name, model_version)
);
CREATE TABLE IF NOT EXISTS policy_states (
    app_name TEXT NOT NULL,
    key TEXT NOT NULL,
    state TEXT NOT NULL,
    PRIMARY KEY (app_name, key)
);
CREATE TABLE IF NOT EXISTS traffic (
    model_name TEXT PRIMARY KEY,
    traffic TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    name TEXT NOT NULL
);
"""


def path_from_url(url: str) -> Path:
    """``sqlite:///abs/path/state.db`` -> ``/abs/path/state.db``."""
    prefix = "sqlite:///"
    rest = url[len(prefix):].lstrip("/")
    if not url.startswith(prefix) or not rest:
        msg = (
            f"Invalid SQLite store URL {url!r}. Expected sqlite:///<absolute path>, "
            "e.g. sqlite:///var/lib/clipper/state.db"
        )
        raise ValidationError(msg)
    return Path("/" + rest)


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                           check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


class SQLiteStore(StateStore):
    """State in one SQLite file; see the module docstring for the change feed."""

    name = "sqlite"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._closed = False
        self._conn = _connect(self.path)
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.executescript(_SCHEMA)
        columns = {row[1] for row in self._conn.execute("PRAGMA table_info(applications)")}
        if "policy_params" not in columns:  # a file written before policies had parameters
            self._conn.execute("ALTER TABLE applications ADD COLUMN policy_params TEXT NOT NULL "
                               "DEFAULT '{}'")
        self._subscribers: list[Subscription] = []
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._poller: threading.Thread | None = None

    @classmethod
    def from_url(cls, url: str) -> SQLiteStore:
        return cls(path_from_url(url))

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r})"

    # -- plumbing -----------------------------------------------------------------------
    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Cursor]:
        """One write transaction (taken at once, so it never fails to upgrade a read lock)."""
        with self._lock:
            self._check_open()
            cur = self._conn.cursor()
            try:
                cur.execute("BEGIN IMMEDIATE")
                try:
                    yield cur
                    cur.execute("COMMIT")
                except BaseException:
                    self._rollback()
                    raise
            except sqlite3.OperationalError as exc:
                msg = (f"The state store {self.path} cannot write ({exc}); nothing was changed. "
                       "Free disk space or fix the file system, then retry")
                raise StorageError(msg) from exc
        self._wake.set()

    def _rollback(self) -> None:
        """End a failed transaction; SQLite may have rolled it back already (I/O errors)."""
        with contextlib.suppress(sqlite3.OperationalError):
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")

    def _check_open(self) -> None:
        if self._closed:
            msg = f"{self!r} is closed; open the store again"
            raise ClipperError(msg)

    def _read(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple]:
        with self._lock:
            self._check_open()
            return self._conn.execute(sql, params).fetchall()

    @staticmethod
    def _changed(cur: sqlite3.Cursor, kind: str, name: str) -> None:
        cur.execute("INSERT INTO changes (kind, name) VALUES (?, ?)", (kind, name))
        seq = cur.lastrowid or 0
        if seq % 100 == 0:
            cur.execute("DELETE FROM changes WHERE seq <= ?", (seq - CHANGES_KEPT,))

    # -- applications -------------------------------------------------------------------
    def add_application(self, app: Application) -> None:
        with self._write() as cur:
            try:
                cur.execute(
                    "INSERT INTO applications (name, input_type, default_output, "
                    "latency_slo_micros, policy, policy_params) VALUES (?, ?, ?, ?, ?, ?)",
                    (app.name, int(app.input_type), app.default_output,
                     app.latency_slo_micros, app.policy, app.policy_params))
            except sqlite3.IntegrityError:
                raise ConflictError(f"application '{app.name}' already exists") from None
            self._changed(cur, "application", app.name)

    def delete_application(self, name: str) -> None:
        with self._write() as cur:
            cur.execute("DELETE FROM applications WHERE name = ?", (name,))
            if cur.rowcount == 0:
                raise NotFoundError(f"Application '{name}' does not exist")
            self._changed(cur, "application", name)
            cur.execute("DELETE FROM policy_states WHERE app_name = ?", (name,))
            cur.execute("DELETE FROM links WHERE app_name = ?", (name,))
            if cur.rowcount:
                self._changed(cur, "link", name)

    def get_application(self, name: str) -> Application | None:
        rows = self._read(f"SELECT {_APP_COLUMNS} FROM applications WHERE name = ?", (name,))
        return _application(rows[0]) if rows else None

    def list_applications(self) -> list[Application]:
        rows = self._read(f"SELECT {_APP_COLUMNS} FROM applications ORDER BY seq")
        return [_application(row) for row in rows]

    # -- selection policies ---------------------------------------------------------------
    def set_selection_policy(self, app_name: str, policy: str, params: str) -> None:
        with self._write() as cur:
            cur.execute("UPDATE applications SET policy = ?, policy_params = ? WHERE name = ?",
                        (policy, params, app_name))
            if cur.rowcount == 0:
                raise NotFoundError(f"Application '{app_name}' does not exist")
            cur.execute("DELETE FROM policy_states WHERE app_name = ?", (app_name,))
            self._changed(cur, "application", app_name)

    def put_policy_state(self, app_name: str, key: str, state: str) -> None:
        with self._write() as cur:
            cur.execute("INSERT OR REPLACE INTO policy_states (app_name, key, state) "
                        "VALUES (?, ?, ?)", (app_name, key, state))
            self._changed(cur, "policy_state", app_name)

    def get_policy_states(self, app_name: str) -> dict[str, str]:
        rows = self._read("SELECT key, state FROM policy_states WHERE app_name = ?",
                          (app_name,))
        return dict(rows)

    # -- traffic between versions ---------------------------------------------------------
    def set_traffic(self, model_name: str, traffic: str | None) -> None:
        with self._write() as cur:
            if traffic is None:
                cur.execute("DELETE FROM traffic WHERE model_name = ?", (model_name,))
            else:
                cur.execute("INSERT OR REPLACE INTO traffic (model_name, traffic) VALUES (?, ?)",
                            (model_name, traffic))
            self._changed(cur, "model", model_name)

    def get_traffic(self, model_name: str) -> str | None:
        rows = self._read("SELECT traffic FROM traffic WHERE model_name = ?", (model_name,))
        return rows[0][0] if rows else None

    # -- links --------------------------------------------------------------------------
    def add_link(self, app_name: str, model_name: str) -> None:
        with self._write() as cur:
            if not cur.execute("SELECT 1 FROM applications WHERE name = ?",
                               (app_name,)).fetchone():
                raise NotFoundError(f"No app with name '{app_name}' exists.")
            try:
                cur.execute("INSERT INTO links (app_name, model_name) VALUES (?, ?)",
                            (app_name, model_name))
            except sqlite3.IntegrityError:
                msg = f"The model with name '{model_name}' is already linked to '{app_name}'"
                raise ConflictError(msg) from None
            self._changed(cur, "link", app_name)

    def delete_link(self, app_name: str, model_name: str) -> None:
        with self._write() as cur:
            cur.execute("DELETE FROM links WHERE app_name = ? AND model_name = ?",
                        (app_name, model_name))
            if cur.rowcount == 0:
                msg = (f"Cannot remove nonexistent link between app {app_name} "
                       f"and model {model_name}")
                raise NotFoundError(msg)
            self._changed(cur, "link", app_name)

    def get_links(self, app_name: str) -> list[str]:
        rows = self._read("SELECT model_name FROM links WHERE app_name = ? ORDER BY seq",
                          (app_name,))
        return [row[0] for row in rows]

    def apps_linked_to(self, model_name: str) -> list[str]:
        rows = self._read("SELECT app_name FROM links WHERE model_name = ? ORDER BY seq",
                          (model_name,))
        return [row[0] for row in rows]

    # -- model versions -----------------------------------------------------------------
    def add_model_version(self, model: ModelVersion) -> None:
        with self._write() as cur:
            try:
                cur.execute(
                    "INSERT INTO model_versions (name, version, input_type, labels, image, "
                    "batch_size, model_data_path) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (model.name, model.version, int(model.input_type),
                     orjson.dumps(list(model.labels)).decode(), model.image,
                     model.batch_size, model.model_data_path))
            except sqlite3.IntegrityError:
                msg = (f"model with name '{model.name}' and version '{model.version}' "
                       "already exists")
                raise ConflictError(msg) from None
            self._activate(cur, model.name, model.version)

    def get_model_version(self, name: str, version: str) -> ModelVersion | None:
        rows = self._read(f"SELECT {_MODEL_COLUMNS} FROM model_versions "
                          "WHERE name = ? AND version = ?", (name, version))
        return _model(rows[0]) if rows else None

    def list_model_versions(self, name: str | None = None) -> list[ModelVersion]:
        if name is None:
            rows = self._read(f"SELECT {_MODEL_COLUMNS} FROM model_versions ORDER BY seq")
        else:
            rows = self._read(f"SELECT {_MODEL_COLUMNS} FROM model_versions WHERE name = ? "
                              "ORDER BY seq", (name,))
        return [_model(row) for row in rows]

    def set_current_version(self, name: str, version: str) -> None:
        with self._write() as cur:
            if not cur.execute("SELECT 1 FROM model_versions WHERE name = ? AND version = ?",
                               (name, version)).fetchone():
                msg = f"Cannot set non-existent version '{version}' for model with name '{name}'"
                raise NotFoundError(msg)
            self._activate(cur, name, version)

    def _activate(self, cur: sqlite3.Cursor, name: str, version: str) -> None:
        cur.execute("INSERT OR REPLACE INTO current_versions (name, version) VALUES (?, ?)",
                    (name, version))
        cur.execute("DELETE FROM activations WHERE name = ? AND version = ?", (name, version))
        cur.execute("INSERT INTO activations (name, version) VALUES (?, ?)", (name, version))
        self._changed(cur, "model", name)

    def get_current_version(self, name: str) -> str | None:
        rows = self._read("SELECT version FROM current_versions WHERE name = ?", (name,))
        return rows[0][0] if rows else None

    def activation_order(self, name: str) -> list[str]:
        rows = self._read("SELECT version FROM activations WHERE name = ? ORDER BY seq DESC",
                          (name,))
        return [row[0] for row in rows]

    def delete_model_version(self, name: str, version: str) -> None:
        with self._write() as cur:
            cur.execute("DELETE FROM model_versions WHERE name = ? AND version = ?",
                        (name, version))
            if cur.rowcount == 0:
                msg = f"model with name '{name}' and version '{version}' does not exist"
                raise NotFoundError(msg)
            cur.execute("DELETE FROM current_versions WHERE name = ? AND version = ?",
                        (name, version))
            cur.execute("DELETE FROM activations WHERE name = ? AND version = ?",
                        (name, version))
            self._changed(cur, "model", name)

    # -- replicas -----------------------------------------------------------------------
    def add_replica(self, replica: Replica) -> None:
        with self._write() as cur:
            cur.execute(
                "INSERT OR REPLACE INTO replicas (model_name, model_version, replica_id, "
                "input_type, frontend_id, seq) VALUES (?, ?, ?, ?, ?, "
                "(SELECT coalesce(max(seq), 0) + 1 FROM replicas))",
                (replica.model_name, replica.model_version, replica.replica_id,
                 int(replica.input_type), replica.frontend_id))
            self._changed(cur, "replica", replica.model_name)

    def remove_replica(self, replica: Replica) -> None:
        with self._write() as cur:
            cur.execute("DELETE FROM replicas WHERE model_name = ? AND model_version = ? "
                        "AND replica_id = ?",
                        (replica.model_name, replica.model_version, replica.replica_id))
            if cur.rowcount:
                self._changed(cur, "replica", replica.model_name)

    def list_replicas(self) -> list[Replica]:
        rows = self._read("SELECT model_name, model_version, replica_id, input_type, "
                          "frontend_id FROM replicas ORDER BY seq")
        return [Replica(m, v, i, InputType(t), f) for m, v, i, t, f in rows]

    def clear_replicas(self, frontend_id: str) -> None:
        with self._write() as cur:
            models = cur.execute("SELECT DISTINCT model_name FROM replicas "
                                 "WHERE frontend_id = ? ORDER BY model_name",
                                 (frontend_id,)).fetchall()
            cur.execute("DELETE FROM replicas WHERE frontend_id = ?", (frontend_id,))
            for (model_name,) in models:
                self._changed(cur, "replica", model_name)

    def next_replica_id(self, model_name: str, model_version: str) -> int:
        with self._write() as cur:
            row = cur.execute(
                "INSERT INTO replica_ids (model_name, model_version, next_id) VALUES (?, ?, 1) "
                "ON CONFLICT (model_name, model_version) DO UPDATE SET next_id = next_id + 1 "
                "RETURNING next_id", (model_name, model_version)).fetchone()
        return int(row[0]) - 1

    # -- change feed --------------------------------------------------------------------
    def subscribe(self, callback: Callable[[Change], None]) -> Subscription:
        sub = Subscription(callback, self._unsubscribe)
        with self._lock:
            self._check_open()
            self._subscribers.append(sub)
            if self._poller is None:
                start = self._read("SELECT coalesce(max(seq), 0) FROM changes")[0][0]
                self._poller = threading.Thread(target=self._poll, args=(start,),
                                                name=f"clipper-sqlite-feed-{self.path.name}",
                                                daemon=True)
                self._poller.start()
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subscribers:
                self._subscribers.remove(sub)

    def _poll(self, last: int) -> None:
        conn = _connect(self.path)
        try:
            while not self._stopping.is_set():
                self._wake.wait(POLL_INTERVAL_S)
                self._wake.clear()
                if self._stopping.is_set():
                    break
                try:
                    rows = conn.execute("SELECT seq, kind, name FROM changes WHERE seq > ? "
                                        "ORDER BY seq", (last,)).fetchall()
                except sqlite3.Error:
                    log.exception("reading the change feed of %s failed; retrying", self.path)
                    continue
                if rows and rows[0][0] > last + 1:
                    self._deliver(Change("resync", ""))
                for seq, kind, name in rows:
                    last = seq
                    self._deliver(Change(kind, name))
        finally:
            conn.close()

    def _deliver(self, change: Change) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for sub in subscribers:
            try:
                sub.callback(change)
            except Exception:
                log.exception("a change-feed subscriber of %s failed on %r", self.path, change)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._subscribers.clear()
            poller = self._poller
        self._stopping.set()
        self._wake.set()
        if poller is not None and poller is not threading.current_thread():
            poller.join()
        with self._lock:
            self._conn.close()


_APP_COLUMNS = "name, input_type, default_output, latency_slo_micros, policy, policy_params"
_MODEL_COLUMNS = "name, version, input_type, labels, image, batch_size, model_data_path"


def _application(row: tuple) -> Application:
    name, input_type, default_output, slo, policy, params = row
    return Application(name, InputType(input_type), default_output, slo, policy, params)


def _model(row: tuple) -> ModelVersion:
    name, version, input_type, labels, image, batch_size, data_path = row
    return ModelVersion(name, version, InputType(input_type), tuple(orjson.loads(labels)),
                        image, batch_size, data_path)


@hookimpl
def clipper_register_stores() -> list[type[StateStore]]:
    return [SQLiteStore]
