"""A small synchronous client for the parts of the Halo PSA API the sync uses.

Reads come back as plain records with one shape whatever the read path:

- companies: id, name, website, inactive, main_site_id
- contacts:  id, client_id, site_id, name, firstname, surname, emailaddress, email2, email3,
             phonenumber, mobilenumber, title, azureoid, inactive, keep_active
- sites:     id, client_id, name, line1, is_main
- tenant mappings (`tenant_mappings()`): id (the azure_tenants entry id), details_id (its Azure AD
             connection), azure_tenant_id, azure_tenant_name, client_id, client_name
- Azure AD connections (`azure_connections()`): id, name, type

In reports mode (the default, like the seed) each is one saved SQL report, so a full read is a
constant number of requests whatever the estate size. The report SQL aliases Halo's table columns
to the names above. In REST mode (API apps without reporting rights) the list endpoints are paged
and their records normalised into the same shape. List rows carry Halo's list models (Users_List:
the object id as `azure_id`, no email2/email3; Site_List: `delivery_address_line1`, no invoice-site
flag, so the main site comes from the companies' main_site_id); the detail names (`azureoid`, `line1`)
are accepted too. The keep-active custom field is not on list rows either, so it costs one
`GET /api/Users/{id}?includedetails=true` per *active* contact; that answer also fills in the active
contacts' email2/email3 (inactive contacts have none in REST mode).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import httpx

from .auth import HaloAuth, HaloSession
from .connection import USER_AGENT, ssl_verify
from .errors import HaloApiError, HaloAuthError, HaloReportError, HaloWriteError, short_detail
from .halo_reports import SavedReport, companies_report_sql, contacts_report_sql, sites_report_sql
from .json_body import response_json
from .request_counts import RequestCounts, counting_hooks
from .retry import RetryableStatus, RetryPolicy, gave_up, raise_for_retryable
from .secret_scrubber import SecretScrubber

UpsertEndpoint = Literal["Users", "Client"]
PARTNER_CONNECTION_TYPE = 2  # Halo's Azure AD connection type "Microsoft Partner"


class HaloClient:
    """Halo API over a small pool of HTTPS connections, with client-credentials tokens and retries.

    `transport` is the seam for tests (e.g. `httpx.MockTransport`). Not meant for concurrent use from
    several threads, apart from `company_details` and `upsert` (the apply reads companies and sends
    batches a few at a time, up to `max_connections`) and the request counters. `timeout`,
    `retry_policy`, `page_size`, `write_batch_size` and `max_connections` have no defaults here:
    `HaloResource` is their one source.
    """

    def __init__(
        self,
        base_url: str,
        client_id: str,
        client_secret: str,
        tenant: str | None,
        *,
        verify: str | bool = True,
        timeout: float,
        retry_policy: RetryPolicy,
        transport: httpx.BaseTransport | None = None,
        reports_mode: bool = True,
        page_size: int,
        write_batch_size: int,
        max_connections: int,
        contact_details_limit: int = 5000,
        session: HaloSession | None = None,
    ) -> None:
        if not base_url.startswith(("https://", "http://")):
            raise ValueError(f"Halo base_url must be an http(s) URL, got {base_url!r}")
        if page_size < 1 or write_batch_size < 1 or max_connections < 1:
            raise ValueError("page_size, write_batch_size and max_connections must be >= 1")
        if not client_id or not client_secret:
            raise ValueError("Halo client_id and client_secret are required")
        # HALO_URL may be given with or without the resource server's /api suffix.
        root = base_url.rstrip("/")
        self.base_url = root[: -len("/api")] if root.endswith("/api") else root
        self.client_id = client_id
        self._client_secret = client_secret
        self.tenant = tenant or None
        self.reports_mode = reports_mode
        self.page_size = page_size
        self.write_batch_size = write_batch_size
        self.contact_details_limit = contact_details_limit
        self.retry_policy = retry_policy
        self.request_counts = RequestCounts()
        self._scrub = SecretScrubber(client_secret)
        self._session = session or HaloSession()
        self._auth = HaloAuth(self._session, self._fetch_token, self._scrub)
        self._report_ids: dict[str, int] = {}
        # Messages naming the Azure AD records the last connection/mapping read skipped (not an object, no id).
        self.skipped_records: list[str] = []
        self._http = httpx.Client(
            base_url=self.base_url,
            verify=ssl_verify(verify),
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            transport=transport,
            follow_redirects=False,
            event_hooks=counting_hooks(self.request_counts),
        )

    def __repr__(self) -> str:
        return f"HaloClient(base_url={self.base_url!r}, client_id={self.client_id!r}, tenant={self.tenant!r}, client_secret=***)"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> HaloClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- tokens ---------------------------------------------------------------------------------

    def _discover_auth_url(self) -> str:
        if self._session.auth_url is None:
            response = self._send_with_retries("GET", "/api/authinfo", authenticated=False)
            info = self._json(response, "GET /api/authinfo") if response.status_code == 200 else {}
            auth_url = info.get("auth_url") if isinstance(info, dict) else None
            # An instance without authinfo serves its authorisation server under /auth (Halo's default).
            self._session.auth_url = str(auth_url).rstrip("/") if auth_url else f"{self.base_url}/auth"
        return self._session.auth_url

    def _fetch_token(self) -> tuple[str, Any]:
        """A new client-credentials token and its `expires_in`, for `HaloAuth`."""
        token_url = f"{self._discover_auth_url()}/token"
        params = {"tenant": self.tenant} if self.tenant else None
        form = {
            "grant_type": "client_credentials",
            "client_id": self.client_id,
            "client_secret": self._client_secret,
            "scope": "all",
        }
        path = httpx.URL(token_url).path
        response = self._send_with_retries("POST", token_url, params=params, data=form, authenticated=False)
        body = self._answer(response, f"Halo token request (POST {path})", "POST", path, error=HaloAuthError)
        token = body.get("access_token") if isinstance(body, dict) else None
        if not token:
            raise HaloAuthError(f"Halo token response (POST {path}) has no access_token", method="POST", path=path)
        return str(token), body.get("expires_in")

    # --- requests -------------------------------------------------------------------------------

    def _send_with_retries(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        data: dict[str, str] | None = None,
        authenticated: bool = True,
        write: bool = False,
    ) -> httpx.Response:
        """Send with back-off on 429/5xx/connection errors; `HaloAuth` renews the token once on a 401."""
        path = httpx.URL(url).path

        def attempt() -> httpx.Response:
            request = self._http.build_request(method, url, params=params, json=json, data=data)
            response = self._http.send(request, auth=self._auth if authenticated else None)
            raise_for_retryable(response, method, path, lambda: self._message(response))
            return response

        policy = self.retry_policy.for_writes() if write else self.retry_policy
        try:
            return policy.call(attempt)
        except (RetryableStatus, httpx.TransportError) as exc:
            raise gave_up(
                exc, HaloApiError, f"Halo {method} {path}", method=method, path=path, scrub=self._scrub
            ) from None

    def _message(self, response: httpx.Response) -> str:
        """Halo's explanation from an error response, short and scrubbed of secrets."""
        try:
            body = response_json(response)
        except ValueError:
            body = None
        if isinstance(body, dict):
            for key in ("error_description", "message", "Message", "error", "detail", "title"):
                if body.get(key):
                    return self._scrub(short_detail(str(body[key])))
        return self._scrub(short_detail(response.text)) or response.reason_phrase

    def _get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return self._answer(self._send_with_retries("GET", path, params=params), f"Halo GET {path}", "GET", path)

    def _answer(
        self, response: httpx.Response, what: str, method: str, path: str, *, error: type[HaloApiError] = HaloApiError
    ) -> Any:
        """The JSON of a 200 answer to `what`; any other status raises `error` with Halo's own message."""
        if response.status_code != 200:
            raise error(
                f"{what} answered {response.status_code}: {self._message(response)}",
                status_code=response.status_code,
                method=method,
                path=path,
            )
        return self._json(response, f"{method} {path}")

    # --- reports --------------------------------------------------------------------------------

    def _report_id(self, report: SavedReport) -> int:
        if report.name in self._report_ids:
            return self._report_ids[report.name]
        found = self._get("/api/Report", {"search": report.name})
        candidates = found.get("reports", []) if isinstance(found, dict) else found
        for candidate in candidates or []:
            if isinstance(candidate, dict) and candidate.get("name") == report.name:
                self._report_ids[report.name] = int(candidate["id"])
                return self._report_ids[report.name]
        response = self._send_with_retries(
            "POST", "/api/Report", json=[{"name": report.name, "sql": report.sql}], write=True
        )
        if response.status_code not in (200, 201):
            raise HaloReportError(
                f"Halo refused to create report {report.name!r} ({response.status_code}): {self._message(response)}",
                status_code=response.status_code,
                method="POST",
                path="/api/Report",
            )
        created = self._json(response, "POST /api/Report")
        record = created[0] if isinstance(created, list) and created else created
        if not isinstance(record, dict) or not record.get("id"):
            raise HaloReportError(f"Halo's answer to creating report {report.name!r} has no id", path="/api/Report")
        self._report_ids[report.name] = int(record["id"])
        return self._report_ids[report.name]

    def load_report(self, report: SavedReport) -> list[dict[str, Any]]:
        """The rows of a saved report (found by name or created once), run with `loadreport=true`."""
        report_id = self._report_id(report)
        body = self._get(f"/api/Report/{report_id}", {"loadreport": "true"})
        loaded = body.get("report") if isinstance(body, dict) else None
        if not isinstance(loaded, dict):
            raise HaloReportError(f"Halo report {report.name!r} (id {report_id}): answer has no 'report' object")
        if loaded.get("load_error"):
            raise HaloReportError(
                f"Halo report {report.name!r} (id {report_id}) failed to load: {self._scrub(short_detail(str(loaded['load_error'])))}"
            )
        rows = loaded.get("rows")
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise HaloReportError(f"Halo report {report.name!r} (id {report_id}): 'rows' is not a list of objects")
        return rows

    # --- REST paging ----------------------------------------------------------------------------

    def _pages(self, path: str, key: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        page_no = 1
        seen = 0
        while True:
            body = self._get(path, {**params, "pageinate": "true", "page_size": self.page_size, "page_no": page_no})
            if not isinstance(body, dict) or not isinstance(body.get(key), list):
                raise HaloApiError(
                    f"Halo GET {path} page {page_no}: answer has no '{key}' list", method="GET", path=path
                )
            records = body[key]
            yield from records
            seen += len(records)
            total = body.get("record_count")
            if not records or len(records) < self.page_size or (isinstance(total, int) and seen >= total):
                return
            page_no += 1

    # --- reads ----------------------------------------------------------------------------------

    def companies(self) -> list[dict[str, Any]]:
        """Every Halo client (company), active and inactive."""
        if self.reports_mode:
            return self.load_report(SavedReport("companies", companies_report_sql()))
        return [_company_from_rest(c) for c in self._pages("/api/Client", "clients", {"includeinactive": "true"})]

    def sites(self) -> list[dict[str, Any]]:
        """Every Halo site with its address line 1 and whether it is its company's invoice (main) site."""
        if self.reports_mode:
            return self.load_report(SavedReport("sites", sites_report_sql()))
        sites = list(self._pages("/api/Site", "sites", {"includeinactive": "true"}))
        main_sites: dict[Any, Any] = {}
        if any("isinvoicesite" not in s for s in sites):  # older answers lack the flag: ask the companies
            main_sites = {c["id"]: c.get("main_site_id") for c in self.companies()}
        return [_site_from_rest(s, main_sites) for s in sites]

    def contacts(self, keep_active_field: str) -> list[dict[str, Any]]:
        """Every Halo user (contact), active and inactive, with the keep-active custom field's value."""
        if self.reports_mode:
            return self.load_report(
                SavedReport(f"contacts {keep_active_field}", contacts_report_sql(keep_active_field))
            )
        records = [_contact_from_rest(u) for u in self._pages("/api/Users", "users", {"includeinactive": "true"})]
        active = [r for r in records if not _truthy(r.get("inactive"))]
        if len(active) > self.contact_details_limit:
            raise HaloApiError(
                f"REST mode would need {len(active)} contact detail requests (limit {self.contact_details_limit}); "
                "use reports mode (HALO_USE_REPORTS=true, needs the read:reporting permission)"
            )
        # Inactive contacts are never deactivated again, so their keep-active flag is not needed.
        for record in active:
            details = self._get(f"/api/Users/{record['id']}", {"includedetails": "true"})
            record["keep_active"] = _custom_field(details, keep_active_field)
            _fill_from_details(record, details)
        return records

    def company_details(self, company_id: int) -> dict[str, Any]:
        """`GET /api/Client/{id}?includedetails=true`: the client's detail record, with its azure_tenants."""
        path = f"/api/Client/{int(company_id)}"
        record = self._get(path, {"includedetails": "true"})
        if not isinstance(record, dict):
            raise HaloApiError(f"Halo GET {path}: answer is not a record", method="GET", path=path)
        return record

    def azure_connections(self, type_: int = PARTNER_CONNECTION_TYPE) -> list[dict[str, Any]]:
        """The Azure AD connections of one type (2 = Microsoft Partner) as {id, name, type}.

        A listed record that is not an object or has no id is skipped and named in `skipped_records`.
        """
        self.skipped_records = []
        return self._connections(type_)

    def partner_connections_and_mappings(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The type-2 connections and their client mappings, for one list request plus one per connection.

        Mappings are {id, details_id, azure_tenant_id, azure_tenant_name, client_id, client_name}: `id` is
        the azure_tenants entry's own id, `details_id` its connection (the connection read when Halo
        leaves it out). A record that is not an object or has no id is skipped, not fatal: its message
        is in `skipped_records` (reset by each call), so one odd record never hides every mapping.
        """
        self.skipped_records = []
        connections = self._connections(PARTNER_CONNECTION_TYPE)
        mappings: list[dict[str, Any]] = []
        for connection in connections:
            path = f"/api/azureadconnection/{connection['id']}"
            details = self._get(path, {"includedetails": "true", "includetenants": "true"})
            found = details.get("mappings_client") if isinstance(details, dict) else None
            for index, record in enumerate(found or []):
                if _has_id(record):
                    mappings.append(_mapping_from_rest(record, connection["id"]))
                else:
                    self._skip(f"{path} mappings_client[{index}]", record)
        return connections, mappings

    def tenant_mappings(self) -> list[dict[str, Any]]:
        """The type-2 connections' client mappings (see `partner_connections_and_mappings`)."""
        return self.partner_connections_and_mappings()[1]

    def _connections(self, type_: int) -> list[dict[str, Any]]:
        listed = self._get("/api/azureadconnection", {"type": type_})
        records = listed.get("azureadconnections", listed.get("records", [])) if isinstance(listed, dict) else listed
        connections = []
        for index, record in enumerate(records or []):
            if _has_id(record):
                connections.append({"id": record["id"], "name": record.get("name"), "type": record.get("type", type_)})
            else:
                self._skip(f"/api/azureadconnection record [{index}]", record)
        return connections

    def _skip(self, where: str, record: Any) -> None:
        why = "has no id" if isinstance(record, dict) else "is not an object"
        self.skipped_records.append(f"Halo {where} {why}, skipped: {self._scrub(short_detail(str(record)))}")

    # --- writes ---------------------------------------------------------------------------------

    def upsert(self, endpoint: UpsertEndpoint, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """POST `bodies` as one JSON array to /api/{endpoint}; the saved records, in order.

        Batching and isolating a bad record are the caller's job (see write_engine.py); a batch larger than
        `write_batch_size` is refused rather than split here, so one call is one request.
        """
        if endpoint not in ("Users", "Client"):
            raise ValueError(f"upsert endpoint must be 'Users' or 'Client', got {endpoint!r}")
        if not bodies:
            return []
        if len(bodies) > self.write_batch_size:
            raise ValueError(f"upsert batch of {len(bodies)} exceeds write_batch_size {self.write_batch_size}")
        path = f"/api/{endpoint}"
        try:
            response = self._send_with_retries("POST", path, json=bodies, write=True)
        except HaloApiError as exc:
            raise HaloWriteError(str(exc), status_code=exc.status_code, halo_message=str(exc), path=path) from None
        if response.status_code >= 400:
            message = self._message(response)
            raise HaloWriteError(
                f"Halo POST {path} refused a batch of {len(bodies)} ({response.status_code}): {message}",
                status_code=response.status_code,
                halo_message=message,
                path=path,
            )
        saved = self._json(response, f"POST {path}")
        records = saved if isinstance(saved, list) else [saved]
        if not all(isinstance(r, dict) for r in records):
            raise HaloWriteError(
                f"Halo POST {path}: answer is not a record or a list of records",
                status_code=response.status_code,
                halo_message="",
                path=path,
            )
        return records

    def _json(self, response: httpx.Response, what: str) -> Any:
        try:
            return response_json(response)
        except ValueError:
            raise HaloApiError(
                f"Halo {what}: answer is not JSON ({self._scrub(short_detail(response.text))[:80]})"
            ) from None


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value)


def _custom_field(details: Any, name: str) -> Any:
    fields = details.get("customfields") if isinstance(details, dict) else None
    for field in fields or []:
        if isinstance(field, dict) and str(field.get("name", "")).lower() == name.lower():
            return field.get("value")
    return None


def _has_id(record: Any) -> bool:
    return isinstance(record, dict) and record.get("id") not in (None, "")


def _mapping_from_rest(record: dict[str, Any], connection_id: Any) -> dict[str, Any]:
    details_id = record.get("details_id")
    return {
        "id": record["id"],
        "details_id": connection_id if details_id is None else details_id,
        "azure_tenant_id": record.get("azure_tenant_id"),
        "azure_tenant_name": record.get("azure_tenant_name"),
        "client_id": record.get("client_id"),
        "client_name": record.get("client_name"),
    }


def _first_present(record: dict[str, Any], *names: str) -> Any:
    """The value under the first of `names` the record has (list model name first, then the detail name)."""
    return next((record[name] for name in names if name in record), None)


def _fill_from_details(contact: dict[str, Any], details: Any) -> None:
    """Fields a Users_List row lacks, from the contact's detail record."""
    if not isinstance(details, dict):
        return
    for field in ("email2", "email3", "azureoid"):
        if contact.get(field) is None and details.get(field) is not None:
            contact[field] = details[field]


def _company_from_rest(client: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": client.get("id"),
        "name": client.get("name"),
        "website": client.get("website"),
        "inactive": client.get("inactive", False),
        "main_site_id": client.get("main_site_id"),
    }


def _site_from_rest(site: dict[str, Any], main_sites: dict[Any, Any]) -> dict[str, Any]:
    line1 = _first_present(site, "delivery_address_line1", "line1")
    if line1 is None:
        for address_key in ("delivery_address", "invoice_address"):
            address = site.get(address_key)
            if isinstance(address, dict) and address.get("line1"):
                line1 = address["line1"]
                break
    return {
        "id": site.get("id"),
        "client_id": site.get("client_id"),
        "name": site.get("name"),
        "line1": line1,
        "is_main": site["isinvoicesite"]
        if "isinvoicesite" in site
        else main_sites.get(site.get("client_id")) == site.get("id"),
    }


def _contact_from_rest(user: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": user.get("id"),
        "client_id": user.get("client_id"),
        "site_id": user.get("site_id"),
        "name": user.get("name"),
        "firstname": user.get("firstname"),
        "surname": user.get("surname"),
        "emailaddress": user.get("emailaddress"),
        "email2": user.get("email2"),
        "email3": user.get("email3"),
        "phonenumber": user.get("phonenumber"),
        "mobilenumber": user.get("mobilenumber"),
        "title": user.get("title"),
        "azureoid": _first_present(user, "azure_id", "azureoid"),
        "inactive": user.get("inactive", False),
        "keep_active": None,
    }
