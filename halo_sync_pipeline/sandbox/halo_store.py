"""Halo state of the sandbox in SQLite, under Halo's own table and column names.

Saved report SQL (the seed's, e.g. `SELECT ... FROM USERS LEFT JOIN site ON usite = ssitenum ...`)
runs directly on these tables, and the REST endpoints read and write the same tables, so the
report mirror is always consistent with what REST writes. A client's main site is the site with
SIsInvoiceSite = 1; a user's client is the client of its site. Each user custom field (CF...) is a
column of USERS, added when a new name first appears.

One connection guarded by a lock serves every thread; report SQL runs on its own read-only
connection with an authorizer that allows reads only.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

DB_FILE = "halo.sqlite3"
CUSTOM_FIELD_NAME = re.compile(r"^CF[A-Za-z0-9_]{1,100}$")
# User custom fields the sandbox's Halo defines even when no user has a value yet: the seed's setup
# step creates the keep-active field, and its column must exist for the contacts report to run.
DEFINED_USER_CUSTOM_FIELDS = ("CFM365SyncKeepActive",)

_TABLES = """
CREATE TABLE AREA (Aarea INTEGER PRIMARY KEY, aareadesc TEXT NOT NULL, AWebsite TEXT,
                   AIsInactive INTEGER NOT NULL DEFAULT 0);
CREATE TABLE SITE (Ssitenum INTEGER PRIMARY KEY, sarea INTEGER NOT NULL, sdesc TEXT NOT NULL,
                   SIsInvoiceSite INTEGER NOT NULL DEFAULT 0);
CREATE INDEX SITE_sarea ON SITE (sarea);
CREATE TABLE ADDRESSSTORE (ASid INTEGER PRIMARY KEY, ASSiteID INTEGER NOT NULL UNIQUE, ASLine1 TEXT);
CREATE TABLE USERS (Uid INTEGER PRIMARY KEY, uusername TEXT NOT NULL, Usite INTEGER NOT NULL,
                    uFirstName TEXT, uLastName TEXT, uemail TEXT, uemail2 TEXT, uemail3 TEXT, uextn TEXT,
                    umobile TEXT, ufax TEXT, utitle TEXT, UAzureOID TEXT, uinactive INTEGER NOT NULL DEFAULT 0);
CREATE INDEX USERS_Usite ON USERS (Usite);
CREATE TABLE AREAAZURETENANT (AATid INTEGER PRIMARY KEY, AATarea INTEGER NOT NULL, AATtenantid TEXT NOT NULL,
                              AATtenantname TEXT);
CREATE INDEX AREAAZURETENANT_AATarea ON AREAAZURETENANT (AATarea);
CREATE TABLE ANALYZERPROFILE (APid INTEGER PRIMARY KEY, APname TEXT NOT NULL, APsql TEXT NOT NULL);
"""
_TABLE_STATEMENTS = [statement.strip() for statement in _TABLES.split(";") if statement.strip()]
_TABLE_NAMES = ("AREA", "SITE", "ADDRESSSTORE", "USERS", "AREAAZURETENANT", "ANALYZERPROFILE")

# Halo REST field -> USERS column, for the plain text fields.
USER_TEXT_COLUMNS = {
    "name": "uusername", "firstname": "uFirstName", "surname": "uLastName", "emailaddress": "uemail",
    "email2": "uemail2", "email3": "uemail3", "phonenumber": "uextn", "mobilenumber": "umobile",
    "fax": "ufax", "title": "utitle", "azureoid": "UAzureOID",
}
_USER_BUILTIN_COLUMNS = frozenset(c.lower() for c in [*USER_TEXT_COLUMNS.values(), "Uid", "Usite", "uinactive"])

_USER_SELECT = """
SELECT u.*, s.sdesc AS _site_name, s.sarea AS _client_id, a.aareadesc AS _client_name
FROM USERS u JOIN SITE s ON s.Ssitenum = u.Usite JOIN AREA a ON a.Aarea = s.sarea
"""
_CLIENT_SELECT = """
SELECT a.*, (SELECT Ssitenum FROM SITE WHERE sarea = a.Aarea AND SIsInvoiceSite = 1) AS _main_site_id
FROM AREA a
"""
_SITE_SELECT = """
SELECT s.*, a.aareadesc AS _client_name, ad.ASLine1 AS _line1
FROM SITE s JOIN AREA a ON a.Aarea = s.sarea LEFT JOIN ADDRESSSTORE ad ON ad.ASSiteID = s.Ssitenum
"""


class WriteRejected(ValueError):
    """A POSTed element Halo would refuse; nothing of the request was written."""


class ReportSqlError(ValueError):
    """Report SQL that cannot run (syntax, unknown column, or anything but a read)."""


def _text_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


class HaloStore:
    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / DB_FILE
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        if not self._has_tables():
            with self._transaction() as db:
                for statement in _TABLE_STATEMENTS:
                    db.execute(statement)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _has_tables(self) -> bool:
        found = self._db.execute("SELECT count(*) FROM sqlite_master WHERE type='table' AND name='USERS'").fetchone()
        return found[0] == 1

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # ----------------------------------------------------------------- estate load / export

    def load(self, halo: dict[str, Any]) -> None:
        """Replace all Halo state (and saved reports) with an estate's validated `halo` part."""
        with self._transaction() as db:
            for table in _TABLE_NAMES:
                db.execute(f"DROP TABLE IF EXISTS {table}")
            for statement in _TABLE_STATEMENTS:
                db.execute(statement)
            self._load_rows(db, halo)

    def _load_rows(self, db: sqlite3.Connection, halo: dict[str, Any]) -> None:
        main_sites = {c["main_site_id"] for c in halo["clients"] if c.get("main_site_id") is not None}
        db.executemany(
            "INSERT INTO AREA (Aarea, aareadesc, AWebsite, AIsInactive) VALUES (?, ?, ?, ?)",
            [(c["id"], c["name"], c.get("website"), int(bool(c.get("inactive")))) for c in halo["clients"]],
        )
        db.executemany(
            "INSERT INTO AREAAZURETENANT (AATarea, AATtenantid, AATtenantname) VALUES (?, ?, ?)",
            [
                (c["id"], t["azure_tenant_id"], t.get("azure_tenant_name"))
                for c in halo["clients"]
                for t in c.get("azure_tenants", [])
            ],
        )
        sites = halo["sites"]
        db.executemany(
            "INSERT INTO SITE (Ssitenum, sarea, sdesc, SIsInvoiceSite) VALUES (?, ?, ?, ?)",
            [(s["id"], s["client_id"], s["name"], int(s["id"] in main_sites)) for s in sites],
        )
        db.executemany(
            "INSERT INTO ADDRESSSTORE (ASSiteID, ASLine1) VALUES (?, ?)", [(s["id"], s.get("line1")) for s in sites]
        )
        self._load_users(db, halo["users"])

    def _load_users(self, db: sqlite3.Connection, users: list[dict[str, Any]]) -> None:
        field_names = list(
            dict.fromkeys([*DEFINED_USER_CUSTOM_FIELDS, *(cf["name"] for u in users for cf in u.get("customfields", []))])
        )
        for name in field_names:
            self._add_custom_field_column(db, name)
        fields = list(USER_TEXT_COLUMNS)
        columns = ["Uid", "Usite", "uinactive", *(USER_TEXT_COLUMNS[f] for f in fields), *field_names]
        rows = []
        for u in users:
            custom = {cf["name"]: cf.get("value") for cf in u.get("customfields", [])}
            rows.append(
                (u["id"], u["site_id"], int(bool(u.get("inactive"))), *(u.get(f) for f in fields),
                 *(custom.get(n) for n in field_names))
            )
        quoted = ", ".join(f'"{c}"' for c in columns)
        db.executemany(f"INSERT INTO USERS ({quoted}) VALUES ({', '.join('?' * len(columns))})", rows)

    def export(self) -> dict[str, Any]:
        """All Halo state in the estate format (every optional field present, null where unset)."""
        with self._lock:
            clients = [self._client_record(r, details=True)
                       for r in self._db.execute(_CLIENT_SELECT + " ORDER BY a.Aarea")]
            sites = [self._site_record(r, estate=True) for r in self._db.execute(_SITE_SELECT + " ORDER BY s.Ssitenum")]
            custom_fields = self._custom_field_names()
            users = [self._user_record(r, custom_fields=custom_fields, estate=True)
                     for r in self._db.execute(_USER_SELECT + " ORDER BY u.Uid")]
        return {"clients": clients, "sites": sites, "users": users}

    # ----------------------------------------------------------------- records

    def _azure_tenants(self, client_id: int) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT AATtenantid, AATtenantname FROM AREAAZURETENANT WHERE AATarea = ? ORDER BY AATid", (client_id,)
        )
        return [{"azure_tenant_id": r[0], "azure_tenant_name": r[1]} for r in rows]

    def _client_record(self, row: sqlite3.Row, *, details: bool) -> dict[str, Any]:
        record = {
            "id": row["Aarea"], "name": row["aareadesc"], "website": row["AWebsite"],
            "inactive": bool(row["AIsInactive"]), "main_site_id": row["_main_site_id"],
        }
        if details:
            record["azure_tenants"] = self._azure_tenants(row["Aarea"])
        return record

    def _site_record(self, row: sqlite3.Row, *, estate: bool = False) -> dict[str, Any]:
        record = {"id": row["Ssitenum"], "client_id": row["sarea"], "name": row["sdesc"], "line1": row["_line1"]}
        if not estate:
            record |= {"client_name": row["_client_name"], "isinvoicesite": bool(row["SIsInvoiceSite"])}
        return record

    def _user_record(self, row: sqlite3.Row, *, custom_fields: list[str] | None, estate: bool = False) -> dict[str, Any]:
        """A user as the API shows it; with `custom_fields` (the CF column names) its customfields too."""
        record: dict[str, Any] = {"id": row["Uid"], "site_id": row["Usite"]}
        if not estate:
            record |= {"site_name": row["_site_name"], "client_id": row["_client_id"],
                       "client_name": row["_client_name"]}
        record |= {field: row[column] for field, column in USER_TEXT_COLUMNS.items()}
        record["inactive"] = bool(row["uinactive"])
        if custom_fields is not None:
            record["customfields"] = [{"name": n, "value": row[n]} for n in custom_fields if row[n] is not None]
        return record

    def _custom_field_names(self) -> list[str]:
        return [r[1] for r in self._db.execute("PRAGMA table_info(USERS)") if r[1].lower() not in _USER_BUILTIN_COLUMNS]

    def _add_custom_field_column(self, db: sqlite3.Connection, name: str) -> str:
        """The USERS column of custom field `name`, added if new (SQLite names are case-insensitive)."""
        existing = {n.lower(): n for n in self._custom_field_names()}
        if name.lower() in existing:
            return existing[name.lower()]
        if not CUSTOM_FIELD_NAME.match(name):
            raise WriteRejected(f"custom field name {name!r} is not a Halo custom field name (CF...)")
        db.execute(f'ALTER TABLE USERS ADD COLUMN "{name}"')  # no type: values keep the type they were sent with
        return name

    # ----------------------------------------------------------------- reads

    def clients(self, *, include_inactive: bool) -> list[dict[str, Any]]:
        where = "" if include_inactive else " WHERE a.AIsInactive = 0"
        with self._lock:
            rows = self._db.execute(_CLIENT_SELECT + where + " ORDER BY a.Aarea").fetchall()
            return [self._client_record(r, details=False) for r in rows]

    def client(self, client_id: int, *, details: bool) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute(_CLIENT_SELECT + " WHERE a.Aarea = ?", (client_id,)).fetchone()
            return None if row is None else self._client_record(row, details=details)

    def sites(self, *, client_id: int | None) -> list[dict[str, Any]]:
        where, args = (" WHERE s.sarea = ?", (client_id,)) if client_id else ("", ())
        with self._lock:
            rows = self._db.execute(_SITE_SELECT + where + " ORDER BY s.Ssitenum", args).fetchall()
            return [self._site_record(r) for r in rows]

    def users(self, *, include_inactive: bool, client_id: int | None, site_id: int | None) -> list[dict[str, Any]]:
        conditions, args = [], []
        if not include_inactive:
            conditions.append("u.uinactive = 0")
        if client_id:
            conditions.append("s.sarea = ?")
            args.append(client_id)
        if site_id:
            conditions.append("u.Usite = ?")
            args.append(site_id)
        where = (" WHERE " + " AND ".join(conditions)) if conditions else ""
        with self._lock:
            rows = self._db.execute(_USER_SELECT + where + " ORDER BY u.Uid", args).fetchall()
            return [self._user_record(r, custom_fields=None) for r in rows]

    def user(self, user_id: int, *, details: bool) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute(_USER_SELECT + " WHERE u.Uid = ?", (user_id,)).fetchone()
            custom_fields = self._custom_field_names() if details else None
            return None if row is None else self._user_record(row, custom_fields=custom_fields)

    def tenant_mappings(self) -> list[dict[str, Any]]:
        """The type-2 Azure AD connection's client mappings, from the clients' azure tenants."""
        with self._lock:
            rows = self._db.execute(
                "SELECT t.AATtenantid, t.AATtenantname, a.Aarea, a.aareadesc FROM AREAAZURETENANT t "
                "JOIN AREA a ON a.Aarea = t.AATarea ORDER BY t.AATid"
            )
            return [
                {"azure_tenant_id": r[0], "azure_tenant_name": r[1], "client_id": r[2], "client_name": r[3]}
                for r in rows
            ]

    # ----------------------------------------------------------------- writes

    def upsert_clients(self, elements: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Halo semantics: non-zero id updates the given fields, id 0/absent creates. All or nothing."""
        with self._transaction() as db:
            ids = [self._upsert_client(db, i, e) for i, e in enumerate(elements)]
            return [self.client(client_id, details=True) for client_id in ids]

    def upsert_users(self, elements: list[dict[str, Any]]) -> list[dict[str, Any]]:
        with self._transaction() as db:
            ids = [self._upsert_user(db, i, e) for i, e in enumerate(elements)]
            return [self.user(user_id, details=True) for user_id in ids]

    def _upsert_client(self, db: sqlite3.Connection, index: int, element: dict[str, Any]) -> int:
        client_id = element.get("id") or 0
        if client_id:
            if db.execute("SELECT 1 FROM AREA WHERE Aarea = ?", (client_id,)).fetchone() is None:
                raise WriteRejected(f"element [{index}]: no client with id {client_id}")
        else:
            if not element.get("name"):
                raise WriteRejected(f"element [{index}]: a new client needs a name")
            client_id = db.execute("SELECT coalesce(max(Aarea), 0) + 1 FROM AREA").fetchone()[0]
            db.execute("INSERT INTO AREA (Aarea, aareadesc) VALUES (?, ?)", (client_id, element["name"]))
        updates = {column: value for field, column, value in (
            ("name", "aareadesc", element.get("name")),
            ("website", "AWebsite", element.get("website")),
            ("inactive", "AIsInactive", int(bool(element.get("inactive")))),
        ) if field in element}
        if "aareadesc" in updates and not updates["aareadesc"]:
            raise WriteRejected(f"element [{index}] (id {client_id}): name cannot be empty")
        self._update(db, "AREA", "Aarea", client_id, updates)
        if element.get("main_site_id"):
            self._set_main_site(db, index, client_id, element["main_site_id"])
        if element.get("azure_tenants") is not None:
            self._replace_azure_tenants(db, index, client_id, element["azure_tenants"])
        return client_id

    def _set_main_site(self, db: sqlite3.Connection, index: int, client_id: int, site_id: int) -> None:
        found = db.execute("SELECT sarea FROM SITE WHERE Ssitenum = ?", (site_id,)).fetchone()
        if found is None or found[0] != client_id:
            raise WriteRejected(f"element [{index}] (id {client_id}): main_site_id {site_id} is not a site of it")
        db.execute("UPDATE SITE SET SIsInvoiceSite = (Ssitenum = ?) WHERE sarea = ?", (site_id, client_id))

    def _replace_azure_tenants(self, db: sqlite3.Connection, index: int, client_id: int, tenants: list[Any]) -> None:
        rows = []
        for j, tenant in enumerate(tenants):
            tenant_id = tenant.get("azure_tenant_id")
            if not _is_guid(tenant_id):
                raise WriteRejected(
                    f"element [{index}] (id {client_id}): azure_tenants[{j}].azure_tenant_id {tenant_id!r} is not a GUID"
                )
            rows.append((client_id, tenant_id, tenant.get("azure_tenant_name")))
        db.execute("DELETE FROM AREAAZURETENANT WHERE AATarea = ?", (client_id,))
        db.executemany("INSERT INTO AREAAZURETENANT (AATarea, AATtenantid, AATtenantname) VALUES (?, ?, ?)", rows)

    def _upsert_user(self, db: sqlite3.Connection, index: int, element: dict[str, Any]) -> int:
        user_id = element.get("id") or 0
        label = f"element [{index}]" + (f" (id {user_id})" if user_id else "")
        site_id = self._site_of_user_element(db, label, element)
        updates: dict[str, Any] = {
            column: _text_or_none(element[field]) for field, column in USER_TEXT_COLUMNS.items() if field in element
        }
        if "inactive" in element:
            updates["uinactive"] = int(bool(element["inactive"]))
        if site_id is not None:
            updates["Usite"] = site_id
        if user_id:
            if db.execute("SELECT 1 FROM USERS WHERE Uid = ?", (user_id,)).fetchone() is None:
                raise WriteRejected(f"{label}: no user with id {user_id}")
        else:
            if site_id is None:
                raise WriteRejected(f"{label}: a new user needs a site_id (or a client_id with a main site)")
            updates.setdefault("uusername", " ".join(
                p for p in (element.get("firstname"), element.get("surname")) if p) or None)
            user_id = db.execute("SELECT coalesce(max(Uid), 0) + 1 FROM USERS").fetchone()[0]
            db.execute("INSERT INTO USERS (Uid, uusername, Usite) VALUES (?, '', ?)", (user_id, site_id))
        if "uusername" in updates and not updates["uusername"]:
            raise WriteRejected(f"{label}: name cannot be empty")
        for j, field in enumerate(element.get("customfields") or []):
            name, value = field.get("name"), field.get("value")
            if not name:
                raise WriteRejected(f"{label}: customfields[{j}] has no name")
            if isinstance(value, dict | list):
                raise WriteRejected(f"{label}: customfields[{j}] ({name}): value must be text, a number or a boolean")
            try:
                updates[self._add_custom_field_column(db, name)] = value
            except WriteRejected as exc:
                raise WriteRejected(f"{label}: customfields[{j}]: {exc}") from None
        self._update(db, "USERS", "Uid", user_id, updates)
        return user_id

    def _site_of_user_element(self, db: sqlite3.Connection, label: str, element: dict[str, Any]) -> int | None:
        """The site a user element puts the user on; None when it does not say."""
        site = element.get("site_id")
        if site:
            if site != int(site):
                raise WriteRejected(f"{label}: site_id {site} is not a whole number")
            found = db.execute("SELECT sarea FROM SITE WHERE Ssitenum = ?", (int(site),)).fetchone()
            if found is None:
                raise WriteRejected(f"{label}: site_id {int(site)} does not exist")
            if element.get("client_id") and element["client_id"] != found[0]:
                raise WriteRejected(f"{label}: site_id {int(site)} belongs to client {found[0]}, "
                                    f"not client_id {element['client_id']}")
            return int(site)
        if element.get("client_id") and not element.get("id"):
            main = db.execute("SELECT Ssitenum FROM SITE WHERE sarea = ? AND SIsInvoiceSite = 1",
                              (element["client_id"],)).fetchone()
            if main is None:
                raise WriteRejected(f"{label}: client_id {element['client_id']} has no main site to put the user on")
            return main[0]
        return None

    @staticmethod
    def _update(db: sqlite3.Connection, table: str, key: str, key_value: int, updates: dict[str, Any]) -> None:
        if updates:
            assignments = ", ".join(f'"{column}" = ?' for column in updates)
            db.execute(f"UPDATE {table} SET {assignments} WHERE {key} = ?", (*updates.values(), key_value))

    # ----------------------------------------------------------------- reports

    def reports(self, search: str | None) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT APid, APname FROM ANALYZERPROFILE WHERE instr(lower(APname), lower(?)) > 0 ORDER BY APid",
                (search or "",),
            )
            return [{"id": r[0], "name": r[1]} for r in rows]

    def report(self, report_id: int) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT APid, APname, APsql FROM ANALYZERPROFILE WHERE APid = ?", (report_id,))
            found = row.fetchone()
            return None if found is None else {"id": found[0], "name": found[1], "sql": found[2]}

    def save_reports(self, elements: list[dict[str, Any]]) -> list[dict[str, Any]]:
        with self._transaction() as db:
            ids = []
            for index, element in enumerate(elements):
                report_id = element.get("id") or 0
                if report_id:
                    if db.execute("SELECT 1 FROM ANALYZERPROFILE WHERE APid = ?", (report_id,)).fetchone() is None:
                        raise WriteRejected(f"element [{index}]: no report with id {report_id}")
                    updates = {c: element[f] for f, c in (("name", "APname"), ("sql", "APsql")) if element.get(f)}
                    self._update(db, "ANALYZERPROFILE", "APid", report_id, updates)
                else:
                    if not element.get("name") or not element.get("sql"):
                        raise WriteRejected(f"element [{index}]: a new report needs a name and sql")
                    report_id = db.execute(
                        "INSERT INTO ANALYZERPROFILE (APname, APsql) VALUES (?, ?)", (element["name"], element["sql"])
                    ).lastrowid
                ids.append(report_id)
            return [self.report(report_id) for report_id in ids]

    def run_report_sql(self, sql: str) -> list[dict[str, Any]]:
        """Rows of a read-only query; ReportSqlError for anything else or SQL that fails."""
        if not re.match(r"\s*(SELECT|WITH)\b", sql, re.IGNORECASE):
            raise ReportSqlError("only a SELECT (or WITH ... SELECT) statement can be a report")
        db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            db.set_authorizer(_read_only_authorizer)
            cursor = db.execute(sql)
            names = [d[0] for d in cursor.description or []]
            return [dict(zip(names, row, strict=True)) for row in cursor]
        except sqlite3.Error as exc:
            raise ReportSqlError(str(exc)) from None
        finally:
            db.close()


_READ_ACTIONS = frozenset({sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE})


def _read_only_authorizer(action: int, *_: Any) -> int:
    return sqlite3.SQLITE_OK if action in _READ_ACTIONS else sqlite3.SQLITE_DENY


def _is_guid(value: Any) -> bool:
    try:
        uuid.UUID(value)
    except (TypeError, ValueError, AttributeError):
        return False
    return isinstance(value, str) and len(value.strip("{}")) == 36
