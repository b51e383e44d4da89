"""The sandbox's Microsoft server: identity platform (v2.0 token endpoint) and the Graph calls the sync makes.

Served from one origin: `/{tenant}/v2.0/.well-known/openid-configuration` and `/{tenant}/oauth2/v2.0/token`
as on login.microsoftonline.com, `/v1.0/...` and `/beta/...` as on graph.microsoft.com.

Behaviour follows the real services where the sync depends on it:
- tokens are opaque, bound to one tenant and expire (`runtime.token_lifetime_s`); Graph has no tenant in its
  URLs, so the token alone decides whose data is read;
- `client_credentials` works only in tenants where the app is consented (`consented` in the estate);
  `refresh_token` (the Secure Application Model) exchanges the partner's refresh token for a token in the
  partner tenant or any customer tenant where the app is consented (else AADSTS65001) and returns a new
  refresh token; a token for an unconsented tenant that exists anyway (consent withdrawn by a reset) gets
  Graph's 401 `Authorization_IdentityNotFound`;
- errors use Microsoft's shapes: `{"error", "error_description": "AADSTS...", "error_codes"}` from identity,
  `{"error": {"code", "message", "innerError"}}` from Graph;
- Graph collections page with `$top` (1-999, default 100; GDAP relationships up to 300) and an absolute
  `@odata.nextLink` carrying `$skiptoken`; `$select` of an unknown property is a 400; v1.0 users return only
  Graph's default property set unless `$select`ed, beta users return every stored property;
- faults from the shared runtime: per-tenant throttling (429 + Retry-After), revoked consent (403 on Graph,
  refused token requests), a users nextLink pointing to a foreign host, users paging that repeats each
  page's last user on the next page (`repeated_paging_tenants`), users answers without some
  properties (`omit_user_properties`, or the tenant's sandbox-only estate field
  `sandbox_omit_user_properties`), as real Graph sometimes answers even when they were `$select`ed.

The model is replaced as a whole by `app.state.load_m365(m365)` (used on sandbox reset);
`app.state.export_m365()` returns the estate "m365" object currently served.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from halo_sync_pipeline.sandbox.credentials import SandboxCredentials
from halo_sync_pipeline.sandbox.runtime import JSONResponse, SandboxMiddleware, SandboxRuntime, bearer

GRAPH_VERSIONS = ("v1.0", "beta")
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 999
MAX_GDAP_PAGE_SIZE = 300  # documented limit of $top on delegatedAdminRelationships
REFRESH_TOKEN_LIFETIME_S = 90 * 24 * 3600.0
# Stable namespace for ids the estate does not carry (contract ids, GDAP ids, the partner admin's object id).
_SANDBOX_NAMESPACE = uuid.UUID("5b1f3c1e-6a0e-4c55-9f1e-0c1d2b3a4f50")

# Graph's default user properties on v1.0 (returned when no $select is given).
DEFAULT_USER_PROPERTIES = (
    "businessPhones", "displayName", "givenName", "id", "jobTitle", "mail", "mobilePhone",
    "officeLocation", "preferredLanguage", "surname", "userPrincipalName",
)  # fmt: skip
USER_PROPERTIES = frozenset(DEFAULT_USER_PROPERTIES) | {
    "aboutMe", "accountEnabled", "ageGroup", "assignedLicenses", "assignedPlans", "birthday", "city",
    "companyName", "consentProvidedForMinor", "country", "createdDateTime", "creationType", "deletedDateTime",
    "department", "employeeHireDate", "employeeId", "employeeLeaveDateTime", "employeeOrgData", "employeeType",
    "externalUserState", "externalUserStateChangeDateTime", "faxNumber", "hireDate", "identities",
    "imAddresses", "interests", "isResourceAccount", "lastPasswordChangeDateTime",
    "legalAgeGroupClassification", "licenseAssignmentStates", "mailboxSettings", "mailNickname", "mySite",
    "onPremisesDistinguishedName", "onPremisesDomainName", "onPremisesExtensionAttributes",
    "onPremisesImmutableId", "onPremisesLastSyncDateTime", "onPremisesProvisioningErrors",
    "onPremisesSamAccountName", "onPremisesSecurityIdentifier", "onPremisesSyncEnabled",
    "onPremisesUserPrincipalName", "otherMails", "passwordPolicies", "passwordProfile", "pastProjects",
    "postalCode", "preferredDataLocation", "preferredName", "provisionedPlans", "proxyAddresses",
    "responsibilities", "schools", "securityIdentifier", "showInAddressList", "signInActivity",
    "signInSessionsValidFromDateTime", "skills", "state", "streetAddress", "usageLocation", "userType",
}  # fmt: skip
DOMAIN_PROPERTIES = frozenset({
    "authenticationType", "availabilityStatus", "id", "isAdminManaged", "isDefault", "isInitial", "isRoot",
    "isVerified", "passwordNotificationWindowInDays", "passwordValidityPeriodInDays", "state", "supportedServices",
})  # fmt: skip
CONTRACT_PROPERTIES = frozenset(
    {"id", "contractType", "customerId", "defaultDomainName", "displayName", "deletedDateTime"}
)
GDAP_PROPERTIES = frozenset({
    "id", "displayName", "duration", "customer", "accessDetails", "status", "autoExtendDuration",
    "createdDateTime", "lastModifiedDateTime", "activatedDateTime", "endDateTime",
})  # fmt: skip
GDAP_STATUSES = frozenset({
    "activating", "active", "approvalPending", "approved", "created", "expired", "expiring", "terminated",
    "terminating", "terminationRequested",
})  # fmt: skip
# Role granted in every sandbox GDAP relationship: Directory Readers.
_DIRECTORY_READERS_ROLE = "88d8e3e3-8f55-4a1e-953a-9b9898b8876b"


# ---------------------------------------------------------------------------------------------------------------
# Model


@dataclass(frozen=True)
class M365Tenant:
    tenant_id: str  # lower-case GUID
    display_name: str
    default_domain: str
    consented: bool
    gdap_status: str | None  # None: the partner has no GDAP relationship with this customer
    domains: tuple[dict[str, Any], ...]
    users: tuple[dict[str, Any], ...]
    omit_user_properties: frozenset[str] = frozenset()  # sandbox-only: left out of every users answer


@dataclass(frozen=True)
class M365Model:
    partner_tenant_id: str
    tenants: dict[str, M365Tenant]  # by lower-case tenant id, in estate order
    tenant_by_domain: dict[str, str]  # lower-case domain name -> tenant id

    @classmethod
    def from_estate(cls, m365: dict[str, Any]) -> M365Model:
        partner = str(m365["partner_tenant_id"]).lower()
        tenants: dict[str, M365Tenant] = {}
        by_domain: dict[str, str] = {}
        for index, raw in enumerate(m365.get("tenants", [])):
            tenant = _tenant_from_estate(index, raw)
            if tenant.tenant_id in tenants or tenant.tenant_id == partner:
                raise ValueError(f"m365.tenants[{index}] (customerId {tenant.tenant_id}): duplicate tenant id")
            tenants[tenant.tenant_id] = tenant
            for domain in tenant.domains:
                if domain["isVerified"]:  # sign-in resolves verified domains only
                    by_domain[domain["id"].lower()] = tenant.tenant_id
            by_domain.setdefault(tenant.default_domain.lower(), tenant.tenant_id)
        return cls(partner, tenants, by_domain)

    def resolve(self, tenant_ref: str) -> str | None:
        """The tenant id for a path segment that is a tenant GUID or one of a tenant's domain names."""
        ref = tenant_ref.lower()
        if ref == self.partner_tenant_id or ref in self.tenants:
            return ref
        return self.tenant_by_domain.get(ref)


def _tenant_from_estate(index: int, raw: dict[str, Any]) -> M365Tenant:
    label = f"m365.tenants[{index}] (customerId {raw.get('customerId')!r})"
    try:
        tenant_id = str(uuid.UUID(str(raw["customerId"])))
        gdap_status = raw.get("gdapStatus", "active")
        if gdap_status is not None and gdap_status not in GDAP_STATUSES:
            raise ValueError(f"gdapStatus {gdap_status!r} is not one of {sorted(GDAP_STATUSES)} or null")
        domains = tuple(_domain_from_estate(d) for d in raw.get("domains", []))
        users = tuple(raw.get("users", []))
        for position, user in enumerate(users):
            if not user.get("id"):
                raise ValueError(f"users[{position}] has no id")
        omitted = user_property_names(raw.get("sandbox_omit_user_properties", []), "sandbox_omit_user_properties")
        return M365Tenant(
            tenant_id=tenant_id,
            display_name=str(raw["displayName"]),
            default_domain=str(raw["defaultDomainName"]),
            consented=bool(raw.get("consented", True)),
            gdap_status=gdap_status,
            domains=domains,
            users=users,
            omit_user_properties=omitted,
        )
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        raise ValueError(f"{label}: {exc}") from None


def user_property_names(names: Any, field: str) -> frozenset[str]:
    """Graph user property names in their canonical spelling; an unknown one is refused (a typo would omit nothing)."""
    if not isinstance(names, list | tuple | set | frozenset) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"{field} must be a list of user property names, got {names!r}")
    canonical = {name.lower(): name for name in USER_PROPERTIES}
    unknown = sorted(n for n in names if n.lower() not in canonical)
    if unknown:
        raise ValueError(f"{field}: {unknown} are not properties of microsoft.graph.user")
    return frozenset(canonical[n.lower()] for n in names)


def _domain_from_estate(raw: dict[str, Any]) -> dict[str, Any]:
    # Graph returns every domain property; the estate carries the ones the sync reads.
    name = str(raw["id"])
    verified = bool(raw.get("isVerified", False))
    return {
        "authenticationType": "Managed",
        "availabilityStatus": None,
        "isAdminManaged": True,
        "isDefault": False,
        "isInitial": name.lower().endswith(".onmicrosoft.com") and not name.lower().endswith(".mail.onmicrosoft.com"),
        "isRoot": True,
        "isVerified": verified,
        "passwordNotificationWindowInDays": 14,
        "passwordValidityPeriodInDays": 2147483647,
        "state": None,
        "supportedServices": ["Email", "OfficeCommunicationsOnline"] if verified else [],
    } | raw


# ---------------------------------------------------------------------------------------------------------------
# Errors


class IdentityError(Exception):
    """An error answer of the token or discovery endpoint, in Microsoft's AADSTS format."""

    def __init__(self, status: int, error: str, code: int, description: str) -> None:
        super().__init__(f"{error}: AADSTS{code}")
        self.status, self.error, self.code, self.description = status, error, code, description

    def response(self) -> JSONResponse:
        now = datetime.now(UTC)
        trace_id = str(uuid.uuid4())
        return JSONResponse(
            {
                "error": self.error,
                "error_description": f"AADSTS{self.code}: {self.description} Trace ID: {trace_id} "
                f"Correlation ID: {uuid.uuid4()} Timestamp: {now:%Y-%m-%d %H:%M:%SZ}",
                "error_codes": [self.code],
                "timestamp": f"{now:%Y-%m-%d %H:%M:%SZ}",
                "trace_id": trace_id,
                "correlation_id": str(uuid.uuid4()),
                "error_uri": f"https://login.microsoftonline.com/error?code={self.code}",
            },
            status_code=self.status,
        )


class GraphError(Exception):
    """An error answer of Graph: `{"error": {"code", "message", "innerError"}}`."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}

    def response(self) -> JSONResponse:
        request_id = str(uuid.uuid4())
        inner = {"date": f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%S}", "request-id": request_id,
                 "client-request-id": request_id}  # fmt: skip
        return JSONResponse(
            {"error": {"code": self.code, "message": self.message, "innerError": inner}},
            status_code=self.status,
            headers={"request-id": request_id, **self.headers},
        )


def _unauthenticated(message: str) -> GraphError:
    return GraphError(401, "InvalidAuthenticationToken", message,
                      {"WWW-Authenticate": 'Bearer realm="", error="invalid_token"'})  # fmt: skip


def _identity_not_found() -> GraphError:
    # What Graph answers when the app has no service principal in the token's tenant.
    return GraphError(401, "Authorization_IdentityNotFound",
                      "The identity of the calling application could not be established.")  # fmt: skip


def _denied() -> GraphError:
    return GraphError(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")


# ---------------------------------------------------------------------------------------------------------------
# Identity


@dataclass
class _Identity:
    state: Any  # app.state: model, runtime, credentials

    def openid_configuration(self, request: Request) -> Response:
        tenant_id = self._tenant(request.path_params["tenant"])
        base = _base_url(request)
        login = f"{base}/{tenant_id}"
        return JSONResponse(
            {
                "token_endpoint": f"{login}/oauth2/v2.0/token",
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "private_key_jwt",
                    "client_secret_basic",
                ],
                "jwks_uri": f"{base}/{tenant_id}/discovery/v2.0/keys",
                "response_modes_supported": ["query", "fragment", "form_post"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "issuer": f"{login}/v2.0",
                "request_uri_parameter_supported": False,
                "userinfo_endpoint": f"{base}/oidc/userinfo",
                "authorization_endpoint": f"{login}/oauth2/v2.0/authorize",
                "device_authorization_endpoint": f"{login}/oauth2/v2.0/devicecode",
                "http_logout_supported": True,
                "frontchannel_logout_supported": True,
                "end_session_endpoint": f"{login}/oauth2/v2.0/logout",
                "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nonce", "name", "tid", "oid", "ver"],
                "kerberos_endpoint": f"{login}/kerberos",
                "tenant_region_scope": "EU",
                "cloud_instance_name": "microsoftonline.com",
                "cloud_graph_host_name": "graph.windows.net",
                "msgraph_host": "graph.microsoft.com",
                "rbac_url": "https://pas.windows.net",
            }
        )

    async def token(self, request: Request) -> Response:
        tenant_id = self._tenant(request.path_params["tenant"])
        form = _form(await request.body())
        grant_type = _required(form, "grant_type")
        if grant_type not in ("client_credentials", "refresh_token"):
            raise IdentityError(400, "unsupported_grant_type", 70003,
                                "The app requested an unsupported grant type.")  # fmt: skip
        self._authenticate_client(request, form, tenant_id)
        scope = _required(form, "scope")
        if tenant_id in self.state.runtime.faults.revoked_tenants:
            raise self._not_consented(tenant_id, grant_type)
        if grant_type == "client_credentials":
            return self._client_credentials(tenant_id, scope)
        return self._refresh_token(tenant_id, scope, form)

    def _client_credentials(self, tenant_id: str, scope: str) -> Response:
        if not all(s.endswith("/.default") for s in scope.split()):
            raise IdentityError(400, "invalid_scope", 1002012,
                                f"The provided value for scope {scope} is not valid. Client credential flows must "
                                "have a scope value with /.default suffixed to the resource identifier.")  # fmt: skip
        if not self._consented(tenant_id):
            raise self._not_consented(tenant_id, "client_credentials")
        claims = {"kind": "access", "tid": tenant_id, "idtyp": "app", "appid": self.state.credentials.m365_client_id}
        return JSONResponse(self._access_token(claims))

    def _refresh_token(self, tenant_id: str, scope: str, form: dict[str, str]) -> Response:
        presented = _required(form, "refresh_token")
        credentials: SandboxCredentials = self.state.credentials
        runtime: SandboxRuntime = self.state.runtime
        issued = runtime.tokens.lookup(presented)
        is_partner_token = hmac.compare_digest(presented.encode(), credentials.m365_refresh_token.encode())
        if not is_partner_token and (issued is None or issued.get("kind") != "refresh"):
            raise IdentityError(400, "invalid_grant", 9002313, "Invalid request. Request is malformed or invalid.")
        # GDAP/DAP give the partner's admin access, but the app itself still needs consent in the customer tenant.
        if not self._consented(tenant_id):
            raise self._not_consented(tenant_id, "refresh_token")
        admin_oid = str(uuid.uuid5(_SANDBOX_NAMESPACE, f"partner-admin:{self.state.model.partner_tenant_id}"))
        claims = {"kind": "access", "tid": tenant_id, "idtyp": "user", "oid": admin_oid,
                  "appid": credentials.m365_client_id}  # fmt: skip
        body = self._access_token(claims) | {
            "scope": scope,
            "refresh_token": runtime.tokens.issue(
                {"kind": "refresh", "appid": credentials.m365_client_id, "oid": admin_oid}, REFRESH_TOKEN_LIFETIME_S
            ),
        }
        if form.get("client_info") == "1":
            body["client_info"] = _b64url(json.dumps({"uid": admin_oid, "utid": self.state.model.partner_tenant_id}))
        return JSONResponse(body)

    def _access_token(self, claims: dict[str, Any]) -> dict[str, Any]:
        runtime: SandboxRuntime = self.state.runtime
        lifetime = runtime.token_lifetime_s
        return {
            "token_type": "Bearer",
            "expires_in": math.ceil(lifetime),
            "ext_expires_in": math.ceil(lifetime),
            "access_token": runtime.tokens.issue(claims, lifetime),
        }

    def _tenant(self, tenant_ref: str) -> str:
        tenant_id: str | None = self.state.model.resolve(tenant_ref)
        if tenant_id is None:
            raise IdentityError(400, "invalid_tenant", 90002,
                                f"Tenant '{tenant_ref}' not found. Check to make sure you have the correct tenant ID "
                                "and are signing into the correct cloud.")  # fmt: skip
        return tenant_id

    def _authenticate_client(self, request: Request, form: dict[str, str], tenant_id: str) -> None:
        client_id, client_secret = _client_auth(request, form)
        credentials: SandboxCredentials = self.state.credentials
        if client_id != credentials.m365_client_id:
            raise IdentityError(400, "unauthorized_client", 700016,
                                f"Application with identifier '{client_id}' was not found in the directory "
                                f"'{tenant_id}'.")  # fmt: skip
        if not hmac.compare_digest(client_secret.encode(), credentials.m365_client_secret.encode()):
            raise IdentityError(401, "invalid_client", 7000215,
                                "Invalid client secret provided. Ensure the secret being sent in the request is the "
                                f"client secret value, not the client secret ID, for a secret added to app "
                                f"'{client_id}'.")  # fmt: skip

    def _consented(self, tenant_id: str) -> bool:
        """Whether the app is consented in the tenant (the partner tenant is the app's home: always)."""
        tenant = self.state.model.tenants.get(tenant_id)
        return tenant is None or tenant.consented

    def _not_consented(self, tenant_id: str, grant_type: str) -> IdentityError:
        app = self.state.credentials.m365_client_id
        if grant_type == "client_credentials":
            return IdentityError(400, "invalid_client", 7000229,
                                 f"The client application {app} is missing service principal in the tenant "
                                 f"{tenant_id}.")  # fmt: skip
        return IdentityError(400, "invalid_grant", 65001,
                             f"The user or administrator has not consented to use the application with ID '{app}'. "
                             "Send an interactive authorization request for this user and resource.")  # fmt: skip


def _form(body: bytes) -> dict[str, str]:
    try:
        parsed = parse_qs(body.decode(), keep_blank_values=True)
    except UnicodeDecodeError:
        raise IdentityError(400, "invalid_request", 900144, "The request body must be form-url-encoded.") from None
    return {key: values[-1] for key, values in parsed.items()}


def _required(form: dict[str, str], name: str) -> str:
    value = form.get(name, "").strip()
    if not value:
        raise IdentityError(400, "invalid_request", 900144,
                            f"The request body must contain the following parameter: '{name}'.")  # fmt: skip
    return value


def _client_auth(request: Request, form: dict[str, str]) -> tuple[str, str]:
    """client_secret_post (what msal sends) or client_secret_basic."""
    header = request.headers.get("authorization", "")
    if header[:6].lower() == "basic ":
        try:
            client_id, _, secret = base64.b64decode(header[6:]).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise IdentityError(401, "invalid_client", 7000216, "The client credentials are malformed.") from None
        return client_id, secret
    return _required(form, "client_id"), _required(form, "client_secret")


def _b64url(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


# ---------------------------------------------------------------------------------------------------------------
# Graph


@dataclass(frozen=True)
class _Collection:
    path: str  # under /v1.0 or /beta, also the @odata.context entity set
    entity_type: str  # named in $select errors
    properties: frozenset[str]
    rows: Callable[[M365Model, str], list[dict[str, Any]]]  # (model, token tenant) -> full records
    partner_only: bool = False
    max_top: int = MAX_PAGE_SIZE
    v1_default: tuple[str, ...] | None = None  # v1.0 property set without $select; None: every property
    paging_faults: bool = False  # subject to the runtime's paging faults (a foreign nextLink, a repeated record)
    omittable: bool = False  # subject to omitted user properties (estate field and runtime fault)


def _contracts(model: M365Model, _tenant_id: str) -> list[dict[str, Any]]:
    return [
        {
            "id": str(uuid.uuid5(_SANDBOX_NAMESPACE, f"contract:{t.tenant_id}")),
            "deletedDateTime": None,
            "contractType": "ResellerPartner",
            "customerId": t.tenant_id,
            "defaultDomainName": t.default_domain,
            "displayName": t.display_name,
        }
        for t in model.tenants.values()
    ]


def _gdap_relationships(model: M365Model, _tenant_id: str) -> list[dict[str, Any]]:
    return [_gdap_relationship(t) for t in model.tenants.values() if t.gdap_status is not None]


def _gdap_relationship(tenant: M365Tenant) -> dict[str, Any]:
    ended = tenant.gdap_status in ("expired", "terminated")
    return {
        "@odata.type": "#microsoft.graph.delegatedAdminRelationship",
        "id": f"{uuid.uuid5(_SANDBOX_NAMESPACE, f'gdap:{tenant.tenant_id}')}-{tenant.tenant_id}",
        "displayName": f"GDAP {tenant.display_name}"[:50],
        "duration": "P730D",
        "customer": {"tenantId": tenant.tenant_id, "displayName": tenant.display_name},
        "accessDetails": {"unifiedRoles": [{"roleDefinitionId": _DIRECTORY_READERS_ROLE}]},
        "status": tenant.gdap_status,
        "autoExtendDuration": "PT0S" if ended else "P180D",
        "createdDateTime": "2024-01-15T09:30:00Z",
        "lastModifiedDateTime": "2024-01-15T09:45:00Z",
        "activatedDateTime": "2024-01-15T09:45:00Z",
        "endDateTime": "2025-01-14T09:45:00Z" if ended else "2026-01-14T09:45:00Z",
    }


def _domains(model: M365Model, tenant_id: str) -> list[dict[str, Any]]:
    tenant = model.tenants.get(tenant_id)
    return list(tenant.domains) if tenant else []


def _users(model: M365Model, tenant_id: str) -> list[dict[str, Any]]:
    tenant = model.tenants.get(tenant_id)
    return list(tenant.users) if tenant else []


_COLLECTIONS = (
    _Collection("contracts", "microsoft.graph.contract", CONTRACT_PROPERTIES, _contracts, partner_only=True),
    _Collection("tenantRelationships/delegatedAdminRelationships", "microsoft.graph.delegatedAdminRelationship",
                GDAP_PROPERTIES, _gdap_relationships, partner_only=True, max_top=MAX_GDAP_PAGE_SIZE),
    _Collection("domains", "microsoft.graph.domain", DOMAIN_PROPERTIES, _domains),
    _Collection("users", "microsoft.graph.user", USER_PROPERTIES, _users, v1_default=DEFAULT_USER_PROPERTIES,
                paging_faults=True, omittable=True),
)  # fmt: skip


@dataclass(frozen=True)
class _Query:
    top: int
    top_given: bool
    select: tuple[str, ...] | None
    offset: int


@dataclass
class _Graph:
    state: Any

    async def collection(self, request: Request, collection: _Collection, version: str) -> Response:
        tenant_id = self._authorize(request, collection)
        query = self._query(request, collection, tenant_id)
        rows = collection.rows(self.state.model, tenant_id)
        page = rows[query.offset : query.offset + query.top]
        properties = query.select or (collection.v1_default if version == "v1.0" else None)
        omitted = self._omitted(collection, tenant_id)
        context = f"{_base_url(request)}/{version}/$metadata#{collection.path}"
        if query.select:
            context += f"({','.join(query.select)})"
        body: dict[str, Any] = {
            "@odata.context": context,
            "value": [_shape(row, properties, omitted) for row in page],
        }
        if query.offset + query.top < len(rows):
            body["@odata.nextLink"] = self._next_link(request, collection, version, query, tenant_id)
        return JSONResponse(body, headers={"request-id": str(uuid.uuid4())})

    def _authorize(self, request: Request, collection: _Collection) -> str:
        runtime: SandboxRuntime = self.state.runtime
        token = bearer(request.headers)
        if not token:
            raise _unauthenticated("Access token is empty.")
        claims = runtime.tokens.lookup(token)
        model: M365Model = self.state.model
        if claims is None or claims.get("kind") != "access":
            raise _unauthenticated("Access token validation failure. Invalid or expired token.")
        tenant_id: str = claims["tid"]
        if tenant_id != model.partner_tenant_id and tenant_id not in model.tenants:
            raise _unauthenticated("Access token validation failure. Invalid audience.")
        tenant = model.tenants.get(tenant_id)
        if tenant is not None and not tenant.consented:  # any token, app-only or delegated
            raise _identity_not_found()
        wait = runtime.graph_throttle(tenant_id)
        if wait is not None:
            raise GraphError(429, "TooManyRequests", "Too many requests. Please retry after some time.",
                             {"Retry-After": str(max(1, math.ceil(wait)))})  # fmt: skip
        revoked = tenant_id in runtime.faults.revoked_tenants
        if revoked or (collection.partner_only and tenant_id != model.partner_tenant_id):
            raise _denied()
        return tenant_id

    def _omitted(self, collection: _Collection, tenant_id: str) -> frozenset[str]:
        if not collection.omittable:
            return frozenset()
        tenant = self.state.model.tenants.get(tenant_id)
        from_estate: frozenset[str] = tenant.omit_user_properties if tenant is not None else frozenset()
        injected: frozenset[str] = self.state.runtime.faults.omit_user_properties.get(tenant_id, frozenset())
        return from_estate | injected

    def _query(self, request: Request, collection: _Collection, tenant_id: str) -> _Query:
        params = {key.lower(): value for key, value in request.query_params.items()}
        unsupported = sorted(k for k in params if k.startswith("$") and k not in ("$top", "$select", "$skiptoken"))
        if unsupported:
            raise GraphError(400, "Request_UnsupportedQuery",
                             f"The sandbox does not support the query option(s) {', '.join(unsupported)}.")  # fmt: skip
        top = _top(params.get("$top"), collection.max_top)
        select = _select(params.get("$select"), collection)
        offset = _decode_skiptoken(params["$skiptoken"], collection, tenant_id) if "$skiptoken" in params else 0
        return _Query(top if top is not None else DEFAULT_PAGE_SIZE, top is not None, select, offset)

    def _next_link(self, request: Request, collection: _Collection, version: str, query: _Query, tenant_id: str) -> str:
        base = _base_url(request)
        faults = self.state.runtime.faults
        if collection.paging_faults and tenant_id in faults.foreign_next_link_tenants:
            base = faults.foreign_host.rstrip("/")
        params: dict[str, str] = {}
        if query.top_given:
            params["$top"] = str(query.top)
        if query.select:
            params["$select"] = ",".join(query.select)
        next_offset = query.offset + query.top
        if collection.paging_faults and tenant_id in faults.repeated_paging_tenants and query.top > 1:
            next_offset -= 1  # the next page starts with this page's last record again
        params["$skiptoken"] = _encode_skiptoken(collection, tenant_id, next_offset)
        return f"{base}/{version}/{collection.path}?{urlencode(params, quote_via=quote, safe='$,')}"


def _top(raw: str | None, max_top: int) -> int | None:
    if raw is None:
        return None
    try:
        top = int(raw)
    except ValueError:
        raise GraphError(400, "BadRequest", f"Invalid value '{raw}' for query option $top.") from None
    if not 1 <= top <= max_top:
        raise GraphError(400, "Request_UnsupportedQuery",
                         f"Invalid page size specified: '{top}'. Must be between 1 and {max_top} inclusive.")  # fmt: skip
    return top


def _select(raw: str | None, collection: _Collection) -> tuple[str, ...] | None:
    if raw is None:
        return None
    canonical = {name.lower(): name for name in collection.properties}
    chosen: list[str] = []
    for name in (part.strip() for part in raw.split(",")):
        if name.lower() not in canonical:
            raise GraphError(400, "Request_BadRequest",
                             f"Could not find a property named '{name}' on type '{collection.entity_type}'.")  # fmt: skip
        if canonical[name.lower()] not in chosen:
            chosen.append(canonical[name.lower()])
    return tuple(chosen)


def _shape(row: dict[str, Any], properties: tuple[str, ...] | None, omitted: frozenset[str]) -> dict[str, Any]:
    # A selected (or v1.0 default) property the estate lacks is served as null, Graph's answer for an unset
    # property; beta serves the stored record as it is. Only an omitted property is left out.
    if properties is None:
        return {name: value for name, value in row.items() if name not in omitted}
    return {name: row.get(name) for name in properties if name not in omitted}


def _encode_skiptoken(collection: _Collection, tenant_id: str, offset: int) -> str:
    return _b64url(json.dumps([collection.path, tenant_id, offset]))


def _decode_skiptoken(token: str, collection: _Collection, tenant_id: str) -> int:
    """The offset a skiptoken of ours stands for; one from another query or tenant is refused like Graph does."""
    try:
        path, token_tenant, offset = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError, TypeError):
        path = token_tenant = offset = None
    if path != collection.path or token_tenant != tenant_id or not isinstance(offset, int) or offset < 0:
        raise GraphError(400, "Directory_ExpiredPageToken",
                         "The specified page token value has expired and can no longer be included in your request.")  # fmt: skip
    return offset


# ---------------------------------------------------------------------------------------------------------------
# App


def build_ms_app(m365: dict[str, Any], runtime: SandboxRuntime, credentials: SandboxCredentials) -> Starlette:
    """The Microsoft identity + Graph app for an estate's "m365" object, wrapped in the runtime's middleware."""
    app = Starlette(
        routes=[],
        middleware=[Middleware(SandboxMiddleware, runtime=runtime, server="ms")],
        exception_handlers={
            IdentityError: lambda _request, exc: exc.response(),
            GraphError: lambda _request, exc: exc.response(),
        },
    )
    state = app.state
    state.runtime, state.credentials = runtime, credentials
    state.model, state.m365 = M365Model.from_estate(m365), m365

    def load_m365(new_m365: dict[str, Any]) -> None:
        # Build first, then swap: a bad estate leaves the served model untouched.
        state.model, state.m365 = M365Model.from_estate(new_m365), new_m365

    state.load_m365 = load_m365
    state.export_m365 = lambda: state.m365

    identity, graph = _Identity(state), _Graph(state)
    routes = [
        Route("/{tenant}/v2.0/.well-known/openid-configuration", identity.openid_configuration, methods=["GET"]),
        Route("/{tenant}/oauth2/v2.0/token", identity.token, methods=["POST"]),
    ]
    for version in GRAPH_VERSIONS:
        routes += [
            Route(f"/{version}/{collection.path}", _collection_endpoint(graph, collection, version), methods=["GET"])
            for collection in _COLLECTIONS
        ]
        routes.append(Route(f"/{version}/{{segment:path}}", _unknown_segment, methods=["GET", "POST", "PATCH"]))
    app.router.routes.extend(routes)
    return app


def _collection_endpoint(graph: _Graph, collection: _Collection, version: str) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        return await graph.collection(request, collection, version)

    return endpoint


async def _unknown_segment(request: Request) -> Response:
    segment = request.path_params["segment"].split("/")[0]
    raise GraphError(400, "BadRequest", f"Resource not found for the segment '{segment}'.")
