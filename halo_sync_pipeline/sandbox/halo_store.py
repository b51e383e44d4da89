"""Halo state of the sandbox in SQLite, under Halo's own table and column names.

Saved report SQL (the seed's, e.g. `SELECT ... FROM USERS LEFT JOIN site ON usite = ssitenum ...`)
runs directly on these tables, and the REST endpoints read and write the same tables, so the
report mirror is always consistent with what REST writes. A client's main site is its site with
SIsInvoiceSite = 1 (the lowest such site id: messy Halo databases flag several); a user's client is
the client of its site. Each user custom field (CF...) is a column of USERS, added when a new name
first appears. Azure AD connections are rows of AZUREADDETAILS; a client's azure_tenants entries are
rows of AREAAZURETENANT (AATid the entry id, AATdetailsid its connection).

Names and ids are stored as the estate gives them, odd ones included (no name, azureoid "n/a"):
real Halo databases hold such records and the pipeline must meet them. Writes are checked as Halo
checks them.

One connection guarded by a lock serves every thread; report SQL runs on its own read-only
connection with an authorizer that allows reads only.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from halo_sync_pipeline.sandbox.estate import PARTNER_CONNECTION_TYPE, azure_connections, default_details_id

DB_FILE = "halo.sqlite3"
CUSTOM_FIELD_NAME = re.compile(r"^CF[A-Za-z0-9_]{1,100}$")
# User custom fields the sandbox's Halo defines even when no user has a value yet: the seed's setup
# step creates the keep-active field, and its column must exist for the contacts report to run.
DEFINED_USER_CUSTOM_FIELDS = ("CFM365SyncKeepActive",)

_TABLES = """
CREATE TABLE AREA (Aarea INTEGER PRIMARY KEY, aareadesc TEXT, AWebsite TEXT,
                   AIsInactive INTEGER NOT NULL DEFAULT 0);
CREATE TABLE SITE (Ssitenum INTEGER PRIMARY KEY, sarea INTEGER NOT NULL, sdesc TEXT,
                   SIsInvoiceSite INTEGER NOT NULL DEFAULT 0);
CREATE INDEX SITE_sarea ON SITE (sarea);
CREATE TABLE ADDRESSSTORE (ASid INTEGER PRIMARY KEY, ASSiteID INTEGER NOT NULL UNIQUE, ASLine1 TEXT);
CREATE TABLE USERS (Uid INTEGER PRIMARY KEY, uusername TEXT, Usite INTEGER NOT NULL,
                    uFirstName TEXT, uLastName TEXT, uemail TEXT, uemail2 TEXT, uemail3 TEXT, uextn TEXT,
                    umobile TEXT, ufax TEXT, utitle TEXT, UAzureOID TEXT, uinactive INTEGER NOT NULL DEFAULT 0);
CREATE INDEX USERS_Usite ON USERS (Usite);
CREATE TABLE AZUREADDETAILS (AADid INTEGER PRIMARY KEY, AADname TEXT, AADtype INTEGER NOT NULL);
CREATE TABLE AREAAZURETENANT (AATid INTEGER PRIMARY KEY AUTOINCREMENT, AATarea INTEGER NOT NULL, AATtenantid TEXT NOT NULL,
                              AATtenantname TEXT, AATdetailsid INTEGER);
CREATE INDEX AREAAZURETENANT_AATarea ON AREAAZURETENANT (AATarea);
CREATE TABLE ANALYZERPROFILE (APid INTEGER PRIMARY KEY, APname TEXT NOT NULL, APsql TEXT NOT NULL);
"""
_TABLE_STATEMENTS = [statement.strip() for statement in _TABLES.split(";") if statement.strip()]
_TABLE_NAMES = ("AREA", "SITE", "ADDRESSSTORE", "USERS", "AZUREADDETAILS", "AREAAZURETENANT", "ANALYZERPROFILE")

# Halo REST field -> USERS column, for the plain text fields.
USER_TEXT_COLUMNS = {
    "name": "uusername",
    "firstname": "uFirstName",
    "surname": "uLastName",
    "emailaddress": "uemail",
    "email2": "uemail2",
    "email3": "uemail3",
    "phonenumber": "uextn",
    "mobilenumber": "umobile",
    "fax": "ufax",
    "title": "utitle",
    "azureoid": "UAzureOID",
}
_USER_BUILTIN_COLUMNS = frozenset(c.lower() for c in [*USER_TEXT_COLUMNS.values(), "Uid", "Usite", "uinactive"])
# GET /api/Users list rows carry Halo's Users_List model: no email2/email3, the object id as azure_id.
_USER_LIST_FIELDS = {field: field for field in USER_TEXT_COLUMNS if field not in ("email2", "email3", "azureoid")}
_USER_LIST_FIELDS["azureoid"] = "azure_id"

_USER_SELECT = """
SELECT u.*, s.sdesc AS _site_name, s.sarea AS _client_id, a.aareadesc AS _client_name
FROM USERS u JOIN SITE s ON s.Ssitenum = u.Usite JOIN AREA a ON a.Aarea = s.sarea
"""
_CLIENT_SELECT = """
SELECT a.*, (SELECT MIN(Ssitenum) FROM SITE WHERE sarea = a.Aarea AND SIsInvoiceSite = 1) AS _main_site_id
FROM AREA a
"""
_SITE_SELECT = """
SELECT s.*, a.aareadesc AS _client_name, ad.ASLine1 AS _line1
FROM SITE s JOIN AREA a ON a.Aarea = s.sarea LEFT JOIN ADDRESSSTORE ad ON ad.ASSiteID = s.Ssitenum
"""
_AZURE_TENANT_SELECT = """
SELECT t.AATid, t.AATdetailsid, t.AATarea, t.AATtenantid, t.AATtenantname, a.aareadesc AS _client_name,
       d.AADname AS _details_name
FROM AREAAZURETENANT t JOIN AREA a ON a.Aarea = t.AATarea LEFT JOIN AZUREADDETAILS d ON d.AADid = t.AATdetailsid
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
        else:
            self._add_azure_connections_to_old_state()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _has_tables(self) -> bool:
        found = self._db.execute("SELECT count(*) FROM sqlite_master WHERE type='table' AND name='USERS'").fetchone()
        return bool(found[0] == 1)

    def _add_azure_connections_to_old_state(self) -> None:
        """A state folder from before Azure AD connections were stored resumes with the default one."""
        columns = {r[1].lower() for r in self._db.execute("PRAGMA table_info(AREAAZURETENANT)")}
        if "aatdetailsid" in columns:
            return
        defaults = azure_connections({})
        with self._transaction() as db:
            db.execute(
                "CREATE TABLE AZUREADDETAILS (AADid INTEGER PRIMARY KEY, AADname TEXT, AADtype INTEGER NOT NULL)"
            )
            self._insert_connections(db, defaults)
            db.execute("ALTER TABLE AREAAZURETENANT ADD COLUMN AATdetailsid INTEGER")
            db.execute("UPDATE AREAAZURETENANT SET AATdetailsid = ?", (default_details_id(defaults),))

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
        db.executemany(
            "INSERT INTO AREA (Aarea, aareadesc, AWebsite, AIsInactive) VALUES (?, ?, ?, ?)",
            [(c["id"], c.get("name"), c.get("website"), int(bool(c.get("inactive")))) for c in halo["clients"]],
        )
        connections = azure_connections(halo)
        self._insert_connections(db, connections)
        self._load_azure_tenants(db, halo["clients"], default_details_id(connections))
        sites = halo["sites"]
        db.executemany(
            "INSERT INTO SITE (Ssitenum, sarea, sdesc, SIsInvoiceSite) VALUES (?, ?, ?, ?)",
            [(s["id"], s["client_id"], s.get("name"), int(invoice)) for s, invoice in _invoice_flags(halo)],
        )
        db.executemany(
            "INSERT INTO ADDRESSSTORE (ASSiteID, ASLine1) VALUES (?, ?)", [(s["id"], s.get("line1")) for s in sites]
        )
        self._load_users(db, halo["users"])

    @staticmethod
    def _insert_connections(db: sqlite3.Connection, connections: list[dict[str, Any]]) -> None:
        db.executemany(
            "INSERT INTO AZUREADDETAILS (AADid, AADname, AADtype) VALUES (?, ?, ?)",
            [(c["id"], c["name"], c["type"]) for c in connections],
        )

    @staticmethod
    def _load_azure_tenants(db: sqlite3.Connection, clients: list[dict[str, Any]], default: int | None) -> None:
        entries = [
            (t.get("id"), c["id"], t["azure_tenant_id"], t.get("azure_tenant_name"), t.get("details_id", default))
            for c in clients
            for t in c.get("azure_tenants", [])
        ]
        # Entries with their own id first, so an id SQLite picks for the others never takes one of theirs.
        entries.sort(key=lambda e: e[0] is None)
        db.executemany(
            "INSERT INTO AREAAZURETENANT (AATid, AATarea, AATtenantid, AATtenantname, AATdetailsid) VALUES (?, ?, ?, ?, ?)",
            entries,
        )

    def _load_users(self, db: sqlite3.Connection, users: list[dict[str, Any]]) -> None:
        field_names = list(
            dict.fromkeys(
                [*DEFINED_USER_CUSTOM_FIELDS, *(cf["name"] for u in users for cf in u.get("customfields", []))]
            )
        )
        for name in field_names:
            self._add_custom_field_column(db, name)
        fields = list(USER_TEXT_COLUMNS)
        columns = ["Uid", "Usite", "uinactive", *(USER_TEXT_COLUMNS[f] for f in fields), *field_names]
        rows = []
        for u in users:
            custom = {cf["name"]: cf.get("value") for cf in u.get("customfields", [])}
            rows.append(
                (
                    u["id"],
                    u["site_id"],
                    int(bool(u.get("inactive"))),
                    *(u.get(f) for f in fields),
                    *(custom.get(n) for n in field_names),
                )
            )
        quoted = ", ".join(f'"{c}"' for c in columns)
        db.executemany(f"INSERT INTO USERS ({quoted}) VALUES ({', '.join('?' * len(columns))})", rows)

    def export(self) -> dict[str, Any]:
        """All Halo state in the estate format (every optional field present, null where unset)."""
        with self._lock:
            clients = [
                self._client_record(r, details=True, estate=True)
                for r in self._db.execute(_CLIENT_SELECT + " ORDER BY a.Aarea")
            ]
            sites = [self._site_record(r, estate=True) for r in self._db.execute(_SITE_SELECT + " ORDER BY s.Ssitenum")]
            custom_fields = self._custom_field_names()
            users = [
                self._user_record(r, custom_fields=custom_fields, estate=True)
                for r in self._db.execute(_USER_SELECT + " ORDER BY u.Uid")
            ]
            connections = self.azure_connections(type_=None)
        return {"clients": clients, "sites": sites, "users": users, "azure_connections": connections}

    # ----------------------------------------------------------------- records

    def _azure_tenants(self, client_id: int, *, estate: bool) -> list[dict[str, Any]]:
        rows = self._db.execute(_AZURE_TENANT_SELECT + " WHERE t.AATarea = ? ORDER BY t.AATid", (client_id,))
        return [_estate_azure_tenant(r) if estate else _area_azure_tenant(r) for r in rows]

    def _client_record(self, row: sqlite3.Row, *, details: bool, estate: bool = False) -> dict[str, Any]:
        record = {
            "id": row["Aarea"],
            "name": row["aareadesc"],
            "website": row["AWebsite"],
            "inactive": bool(row["AIsInactive"]),
            "main_site_id": row["_main_site_id"],
        }
        if details:
            record["azure_tenants"] = self._azure_tenants(row["Aarea"], estate=estate)
        return record

    def _site_record(self, row: sqlite3.Row, *, estate: bool = False) -> dict[str, Any]:
        """A site in the estate format, or as a GET /api/Site list row (Halo's Site_List model)."""
        if estate:
            return {
                "id": row["Ssitenum"],
                "client_id": row["sarea"],
                "name": row["sdesc"],
                "line1": row["_line1"],
                "isinvoicesite": bool(row["SIsInvoiceSite"]),
            }
        return {
            "id": row["Ssitenum"],
            "client_id": row["sarea"],
            "client_name": row["_client_name"],
            "name": row["sdesc"],
            "delivery_address_line1": row["_line1"],
        }

    def _user_record(
        self, row: sqlite3.Row, *, custom_fields: list[str] | None, estate: bool = False, list_row: bool = False
    ) -> dict[str, Any]:
        """A user as the API shows it; with `custom_fields` (the CF column names) its customfields too.

        `list_row`: as a GET /api/Users list row, under the Users_List model's names and fields.
        """
        record: dict[str, Any] = {"id": row["Uid"], "site_id": row["Usite"]}
        if not estate:
            record |= {
                "site_name": row["_site_name"],
                "client_id": row["_client_id"],
                "client_name": row["_client_name"],
            }
        if list_row:
            record |= {name: row[USER_TEXT_COLUMNS[field]] for field, name in _USER_LIST_FIELDS.items()}
        else:
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
            return [self._user_record(r, custom_fields=None, list_row=True) for r in rows]

    def user(self, user_id: int, *, details: bool) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute(_USER_SELECT + " WHERE u.Uid = ?", (user_id,)).fetchone()
            custom_fields = self._custom_field_names() if details else None
            return None if row is None else self._user_record(row, custom_fields=custom_fields)

    def azure_connections(self, *, type_: int | None) -> list[dict[str, Any]]:
        """The Azure AD connections (of one type when given), as {id, name, type}."""
        where, args = (" WHERE AADtype = ?", (type_,)) if type_ is not None else ("", ())
        with self._lock:
            rows = self._db.execute(f"SELECT AADid, AADname, AADtype FROM AZUREADDETAILS{where} ORDER BY AADid", args)
            return [{"id": r[0], "name": r[1], "type": r[2]} for r in rows]

    def azure_connection(self, connection_id: int) -> dict[str, Any] | None:
        return next((c for c in self.azure_connections(type_=None) if c["id"] == connection_id), None)

    def tenant_mappings(self, details_id: int) -> list[dict[str, Any]]:
        """The client mappings of one Azure AD connection: the azure_tenants entries that belong to it."""
        with self._lock:
            rows = self._db.execute(_AZURE_TENANT_SELECT + " WHERE t.AATdetailsid = ? ORDER BY t.AATid", (details_id,))
            return [
                {
                    "id": r["AATid"],
                    "details_id": r["AATdetailsid"],
                    "azure_tenant_id": r["AATtenantid"],
                    "azure_tenant_name": r["AATtenantname"],
                    "client_id": r["AATarea"],
                    "client_name": r["_client_name"],
                }
                for r in rows
            ]

    # ----------------------------------------------------------------- writes

    def upsert_clients(self, elements: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Halo semantics: non-zero id updates the given fields, id 0/absent creates. All or nothing."""
        with self._transaction() as db:
            ids = [self._upsert_client(db, i, e) for i, e in enumerate(elements)]
            return [_saved(self.client(client_id, details=True), client_id) for client_id in ids]

    def upsert_users(self, elements: list[dict[str, Any]]) -> list[dict[str, Any]]:
        with self._transaction() as db:
            ids = [self._upsert_user(db, i, e) for i, e in enumerate(elements)]
            return [_saved(self.user(user_id, details=True), user_id) for user_id in ids]

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
        updates = {
            column: value
            for field, column, value in (
                ("name", "aareadesc", element.get("name")),
                ("website", "AWebsite", element.get("website")),
                ("inactive", "AIsInactive", int(bool(element.get("inactive")))),
            )
            if field in element
        }
        if "aareadesc" in updates and not updates["aareadesc"]:
            raise WriteRejected(f"element [{index}] (id {client_id}): name cannot be empty")
        self._update(db, "AREA", "Aarea", client_id, updates)
        if element.get("main_site_id"):
            self._set_main_site(db, index, client_id, element["main_site_id"])
        if element.get("azure_tenants") is not None:
            self._write_azure_tenants(db, f"element [{index}] (id {client_id})", client_id, element["azure_tenants"])
        return client_id

    def _set_main_site(self, db: sqlite3.Connection, index: int, client_id: int, site_id: int) -> None:
        found = db.execute("SELECT sarea FROM SITE WHERE Ssitenum = ?", (site_id,)).fetchone()
        if found is None or found[0] != client_id:
            raise WriteRejected(f"element [{index}] (id {client_id}): main_site_id {site_id} is not a site of it")
        db.execute("UPDATE SITE SET SIsInvoiceSite = (Ssitenum = ?) WHERE sarea = ?", (site_id, client_id))

    def _write_azure_tenants(self, db: sqlite3.Connection, label: str, client_id: int, entries: list[Any]) -> None:
        """The harsh reading of Halo: the body's list is the client's whole new list of entries.

        An entry with an id updates that entry (the fields it gives); one without id is added (to the
        first type-2 connection unless it names one); every entry of the client missing from the list
        is removed. A write that means to keep an entry must send it, best with its id.
        """
        stored = dict(
            db.execute("SELECT AATid, AATtenantid FROM AREAAZURETENANT WHERE AATarea = ?", (client_id,)).fetchall()
        )
        existing = set(stored)
        connections = dict(db.execute("SELECT AADid, AADtype FROM AZUREADDETAILS ORDER BY AADid").fetchall())
        default = next((cid for cid, ctype in connections.items() if ctype == PARTNER_CONNECTION_TYPE), None)
        updates: dict[int, dict[str, Any]] = {}
        added: list[tuple[Any, ...]] = []
        for j, entry in enumerate(entries):
            where = f"{label}: azure_tenants[{j}]"
            if not isinstance(entry, dict):
                raise WriteRejected(f"{where} is not an object")
            entry_id, details_id = entry.get("id") or 0, entry.get("details_id")
            # An update may leave the tenant id out or send it back unchanged (it is kept, even an odd
            # legacy value); whatever is newly written must be a GUID.
            changes_tenant = not entry_id or (
                "azure_tenant_id" in entry and entry["azure_tenant_id"] != stored.get(entry_id)
            )
            if changes_tenant and not _is_guid(entry.get("azure_tenant_id")):
                raise WriteRejected(f"{where}.azure_tenant_id {entry.get('azure_tenant_id')!r} is not a GUID")
            if details_id is not None and details_id not in connections:
                raise WriteRejected(f"{where}: details_id {details_id} is not an Azure AD connection")
            if entry_id:
                if entry_id not in existing or entry_id in updates:
                    twice = " (listed twice)" if entry_id in updates else ""
                    raise WriteRejected(f"{where}: id {entry_id} is not an azure_tenants entry of this client{twice}")
                updates[entry_id] = {
                    column: entry[field]
                    for field, column in _AZURE_TENANT_COLUMNS.items()
                    if field in entry and not (field == "details_id" and entry[field] is None)
                }
                continue
            if details_id is None and default is None:
                raise WriteRejected(f"{where}: no details_id and no type-{PARTNER_CONNECTION_TYPE} connection")
            added.append((client_id, entry["azure_tenant_id"], entry.get("azure_tenant_name"), details_id or default))
        db.executemany("DELETE FROM AREAAZURETENANT WHERE AATid = ?", [(i,) for i in existing - set(updates)])
        for entry_id, columns in updates.items():
            self._update(db, "AREAAZURETENANT", "AATid", entry_id, columns)
        db.executemany(
            "INSERT INTO AREAAZURETENANT (AATarea, AATtenantid, AATtenantname, AATdetailsid) VALUES (?, ?, ?, ?)", added
        )

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
            updates.setdefault(
                "uusername", " ".join(p for p in (element.get("firstname"), element.get("surname")) if p) or None
            )
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
                raise WriteRejected(
                    f"{label}: site_id {int(site)} belongs to client {found[0]}, not client_id {element['client_id']}"
                )
            return int(site)
        if element.get("client_id") and not element.get("id"):
            main = db.execute(
                "SELECT Ssitenum FROM SITE WHERE sarea = ? AND SIsInvoiceSite = 1", (element["client_id"],)
            ).fetchone()
            if main is None:
                raise WriteRejected(f"{label}: client_id {element['client_id']} has no main site to put the user on")
            return int(main[0])
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
            return [_saved(self.report(int(report_id or 0)), report_id) for report_id in ids]

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


# azure_tenants entry field -> AREAAZURETENANT column, for updates of an entry by its id.
_AZURE_TENANT_COLUMNS = {
    "azure_tenant_id": "AATtenantid",
    "azure_tenant_name": "AATtenantname",
    "details_id": "AATdetailsid",
}


def _invoice_flags(halo: dict[str, Any]) -> Iterator[tuple[dict[str, Any], bool]]:
    """Each site with whether it is an invoice site: by the client's own site flags when any of its
    sites carries one (several may be set, as in messy Halo databases), else by its main_site_id."""
    main_sites = {c["main_site_id"] for c in halo["clients"] if c.get("main_site_id") is not None}
    flagged_clients = {s["client_id"] for s in halo["sites"] if s.get("isinvoicesite") is not None}
    for site in halo["sites"]:
        if site["client_id"] in flagged_clients:
            yield site, bool(site.get("isinvoicesite"))
        else:
            yield site, site["id"] in main_sites


# Halo's AreaAzureTenant model (an azure_tenants entry as GET /api/Client/{id} shows it): field -> column.
_AREA_AZURE_TENANT = {"id": "AATid", "details_id": "AATdetailsid", "details_name": "_details_name",
                      "client_id": "AATarea", "client_name": "_client_name", "azure_tenant_id": "AATtenantid",
                      "azure_tenant_name": "AATtenantname"}  # fmt: skip
_ESTATE_AZURE_TENANT_FIELDS = ("id", "details_id", "azure_tenant_id", "azure_tenant_name")


def _area_azure_tenant(row: sqlite3.Row, fields: Iterable[str] = _AREA_AZURE_TENANT) -> dict[str, Any]:
    return {field: row[_AREA_AZURE_TENANT[field]] for field in fields}


def _estate_azure_tenant(row: sqlite3.Row) -> dict[str, Any]:
    return _area_azure_tenant(row, _ESTATE_AZURE_TENANT_FIELDS)


_READ_ACTIONS = frozenset(
    {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
)


def _read_only_authorizer(action: int, *_: Any) -> int:
    return sqlite3.SQLITE_OK if action in _READ_ACTIONS else sqlite3.SQLITE_DENY


def _is_guid(value: Any) -> bool:
    try:
        uuid.UUID(value)
    except (TypeError, ValueError, AttributeError):
        return False
    return isinstance(value, str) and len(value.strip("{}")) == 36


def _saved(record: dict[str, Any] | None, record_id: object) -> dict[str, Any]:
    # A record just written in this transaction is always there; anything else is a sandbox bug.
    if record is None:
        raise RuntimeError(f"sandbox: record {record_id!r} vanished right after it was written")
    return record
