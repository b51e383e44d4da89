"""Deterministic, realistic sandbox estates that exercise every company-matching path and contact situation.

`generate_estate(tenants, users_per_tenant, seed)` returns an estate (see estate.schema.json) whose Halo and
Microsoft 365 halves overlap the way a real MSP's do: most customer tenants are mapped to their Halo company
by tenant id, some only by name, website or contacts' email domains, a few ambiguously or not at all; most
users have a linked contact, some are new, left, disabled, guests, shared mailboxes or admin accounts, and
Halo holds contacts that are gone from Microsoft 365, kept active on purpose, or catch-alls ("General User").
It also plants the messy records real estates hold: companies two tenants claim or mapped to a tenant that left,
inactive mapped companies, mappings under a non-partner Azure AD connection (every estate carries
`halo.azure_connections`: the partner connection and a single-tenant one), several invoice sites, contacts
carrying another tenant's user id, people found by mail or alias rather than UPN, keep-active values spelled
otherwise, non-GUID ids, records without a name, Graph answers without assignedLicenses
(`sandbox_omit_user_properties`) and directory values no Halo field should take as they are.

Every record planted for a situation is listed in the estate's top-level `_generator` record
(`{"seed", "tenants", "users_per_tenant", "situations": {name: [ids]}}`; situations.toml says what each name
means and which kind of id it lists), so tests can find and count them (`describe_coverage`).
The first MIN_TENANTS_FOR_FULL_COVERAGE tenants are planned so that every situation appears at least once;
the rest are drawn at random in realistic proportions.

Only `random.Random(seed)` is used (GUIDs included), so one seed always gives the same estate.

Regenerate the committed example estate with:
    halo-sync-sandbox generate --tenants 17 --users-per-tenant 8 --seed 7 --pretty \\
        > halo_sync_pipeline/sandbox/example_estate.json
"""

from __future__ import annotations

import math
import random
import tomllib
import uuid
from dataclasses import dataclass, field
from importlib import resources
from itertools import accumulate
from typing import Any

KEEP_ACTIVE_FIELD = "CFM365SyncKeepActive"
KEEP_ACTIVE_VALUE = "2"
KEEP_ACTIVE_VARIANTS = (" 2 ", "02", "2.0")  # the keep-active value as people type it into Halo
GENERAL_USER_NAME = "General User"
# Halo's Azure AD connections in every generated estate: the partner connection the sync maps tenants under,
# and a single-tenant connection whose entries the tenant-id write-back must keep.
PARTNER_CONNECTION_ID = 1
SINGLE_TENANT_CONNECTION_ID = 2
AZURE_CONNECTIONS = (
    {"id": PARTNER_CONNECTION_ID, "name": "Microsoft Partner", "type": 2},
    {"id": SINGLE_TENANT_CONNECTION_ID, "name": "Lantern IT Azure AD", "type": 1},
)
NOT_A_GUID_OID = "n/a"
NOT_A_GUID_TENANT_ID = "not-a-guid"
DIRTY_DISPLAY_NAME_LENGTH = 5000


def _load_situations() -> dict[str, tuple[str, str]]:
    """name -> (kind of id its list holds, what was planted), from the catalogue `situations.toml`."""
    catalogue = tomllib.loads(resources.files(__package__).joinpath("situations.toml").read_text("utf-8"))
    constants = {
        "KEEP_ACTIVE_FIELD": KEEP_ACTIVE_FIELD,
        "KEEP_ACTIVE_VALUE": KEEP_ACTIVE_VALUE,
        "KEEP_ACTIVE_VARIANTS": ", ".join(map(repr, KEEP_ACTIVE_VARIANTS)),
        "GENERAL_USER_NAME": GENERAL_USER_NAME,
        "NOT_A_GUID_OID": NOT_A_GUID_OID,
        "NOT_A_GUID_TENANT_ID": NOT_A_GUID_TENANT_ID,
        "DIRTY_DISPLAY_NAME_LENGTH": DIRTY_DISPLAY_NAME_LENGTH,
    }
    return {name: (entry["lists"], entry["planted"].format(**constants)) for name, entry in catalogue.items()}


SITUATIONS = _load_situations()

MATCH_PATHS = ("tenant_id", "name", "default_domain_website", "verified_domain_website", "contact_email_domain",
               "ambiguous_name", "no_candidate", "conflict_mapped_elsewhere", "conflict_two_unmapped",
               "mapped_company_inactive")  # fmt: skip
_MATCH_SITUATION = {
    "tenant_id": "match_tenant_id", "name": "match_name", "default_domain_website": "match_default_domain_website",
    "verified_domain_website": "match_verified_domain_website", "contact_email_domain": "match_contact_email_domain",
    "ambiguous_name": "unmatched_ambiguous_name", "no_candidate": "unmatched_no_candidate",
    "conflict_mapped_elsewhere": "conflict_mapped_elsewhere", "conflict_two_unmapped": "conflict_two_unmapped",
    "mapped_company_inactive": "mapped_company_inactive",
}  # fmt: skip
# conflict_two_unmapped is drawn once per pair of tenants (the next tenant completes the pair).
_MATCH_WEIGHTS = (0.60, 0.14, 0.08, 0.05, 0.05, 0.02, 0.06, 0.008, 0.005, 0.005)
# Tenants whose users the pipeline cannot read: planned contact situations are not spent on them.
_FAILING_EXTRAS = frozenset({"not_consented", "licences_omitted"})
# Companies that must not receive another tenant's person (their own counts and guard are planted exactly).
_UNHOMELY_EXTRAS = _FAILING_EXTRAS | {"mass_deactivation", "tenant_shares_company"}
_HOME_MATCHES = frozenset({"tenant_id", "name", "default_domain_website", "verified_domain_website"})

# The first tenants, planned so that every tenant-level situation appears: (match path, extra situations).
_PLANNED_TENANTS: tuple[tuple[str, frozenset[str]], ...] = (
    ("tenant_id", frozenset({"admin_in_domain_name", "several_invoice_sites", "mapping_tenant_not_guid"})),
    ("name", frozenset({"inactive_duplicate_company", "write_back_keeps_entries"})),
    ("default_domain_website", frozenset({"gdap_expired"})),
    ("verified_domain_website", frozenset({"default_domain_onmicrosoft"})),
    ("contact_email_domain", frozenset({"gdap_terminated"})),
    ("ambiguous_name", frozenset()),
    ("no_candidate", frozenset({"gdap_missing"})),
    ("tenant_id", frozenset({"client_without_site"})),
    ("tenant_id", frozenset({"tenant_shares_company"})),
    ("tenant_id", frozenset({"mass_deactivation"})),
    ("tenant_id", frozenset({"not_consented", "unverified_domain"})),
    ("conflict_mapped_elsewhere", frozenset()),
    ("conflict_two_unmapped", frozenset()),
    ("conflict_two_unmapped", frozenset()),  # completes the pair
    ("mapped_company_inactive", frozenset()),
    ("tenant_id", frozenset({"licences_omitted"})),
    ("default_domain_website", frozenset({"website_host_starts_with_www"})),  # last: takes every planned leftover
)
MIN_TENANTS_FOR_FULL_COVERAGE = len(_PLANNED_TENANTS)

# The other tenants' extra situations come from draws of one random number each: a draw lists
# (situation, bound) by rising bound, and the number picks the first situation whose bound it is under, if any.
_Draw = tuple[tuple[str, float], ...]
_GDAP_STATE_DRAW: _Draw = (("gdap_expired", 0.03), ("gdap_terminated", 0.05), ("gdap_missing", 0.08))
_EXTRA_DRAWS_BY_MATCH: dict[str, tuple[_Draw, ...]] = {
    "tenant_id": (
        (("client_without_site", 0.005), ("tenant_shares_company", 0.01), ("mass_deactivation", 0.015),
         ("licences_omitted", 0.02)),
        (("several_invoice_sites", 0.02), ("mapping_tenant_not_guid", 0.03)),
    ),
    "name": ((("inactive_duplicate_company", 0.1), ("write_back_keeps_entries", 0.15)),),
}  # fmt: skip


def _drawn(number: float, draw: _Draw) -> tuple[str, ...]:
    """The situation `number` (from rng.random()) picks in `draw`: one, or none above the last bound."""
    return next(((situation,) for situation, bound in draw if number < bound), ())


# User roles: (kind of Microsoft 365 account, kind of Halo contact planted for it or None).
_ROLES: dict[str, tuple[str, str | None]] = {
    "linked": ("member", "linked"),
    "create": ("member", None),
    "create_at_site_address": ("member", None),
    "create_at_tied_site_address": ("member", None),
    "pair_unlinked": ("member", "unlinked_email"),
    "pair_stale_oid": ("member", "stale_oid_email"),
    "reactivate": ("member", "inactive_linked"),
    "ambiguous_email": ("member", "two_unlinked_email"),
    "leaver_unlicensed": ("unlicensed", "linked"),
    "leaver_disabled": ("disabled", "linked"),
    "leaver_guest": ("guest", "linked"),
    "guest": ("guest", None),
    "shared_mailbox": ("shared", None),
    "admin_account": ("admin", None),
    "admin_with_contact": ("admin_unlicensed", "linked"),
    "disabled_no_contact": ("disabled", None),
    "pair_by_mail": ("member_mail_differs", "unlinked_mail"),
    "pair_by_alias": ("member_aliased", "unlinked_alias"),
    "ambiguous_by_aliases": ("member_aliased", "mail_and_alias"),
    "moved_person": ("member", None),  # its contact is planted in another company
    "owned_by_other": ("member", "linked"),  # plus a contact in another company with its id
    "linked_oid_braced": ("member", "linked_braced"),
    "oid_not_guid": ("member", "not_guid_oid_email"),
    "create_dirty": ("member_dirty", None),
}
_MEMBER_KINDS = frozenset({"member", "member_mail_differs", "member_aliased", "member_dirty"})
# Roles that need a contact in another tenant's company, and what they become while there is none.
_OTHER_COMPANY_ROLES = {"moved_person": "create", "owned_by_other": "linked"}
# Roles whose situation lists the user (the others list the contacts planted for it).
_USER_TAGGED_ROLES = frozenset({"pair_by_mail", "pair_by_alias", "ambiguous_by_aliases", "moved_person"})
_ROLE_WEIGHTS = {
    "linked": 0.62, "create": 0.09, "create_at_site_address": 0.03, "create_at_tied_site_address": 0.004,
    "pair_unlinked": 0.04, "pair_stale_oid": 0.01, "reactivate": 0.02, "ambiguous_email": 0.005,
    "leaver_unlicensed": 0.03, "leaver_disabled": 0.03, "leaver_guest": 0.005, "guest": 0.035,
    "shared_mailbox": 0.04, "admin_account": 0.02, "admin_with_contact": 0.005, "disabled_no_contact": 0.02,
    "pair_by_mail": 0.01, "pair_by_alias": 0.01, "ambiguous_by_aliases": 0.002, "moved_person": 0.002,
    "owned_by_other": 0.002, "linked_oid_braced": 0.003, "oid_not_guid": 0.002, "create_dirty": 0.001,
}  # fmt: skip
_ROLE_NAMES = tuple(_ROLE_WEIGHTS)
_ROLE_CUM_WEIGHTS = tuple(accumulate(_ROLE_WEIGHTS.values()))
_ROLE_SITUATION = {
    "linked": "linked", "create": "create_new_contact", "create_at_site_address": "create_at_site_address",
    "create_at_tied_site_address": "create_at_tied_site_address", "pair_unlinked": "pair_unlinked_same_email",
    "pair_stale_oid": "pair_stale_azureoid", "reactivate": "reactivate_inactive", "ambiguous_email": "ambiguous_email",
    "leaver_unlicensed": "leaver_unlicensed", "leaver_disabled": "leaver_disabled", "leaver_guest": "leaver_guest",
    "guest": "guest_user", "shared_mailbox": "shared_mailbox_unlicensed", "admin_account": "admin_account",
    "admin_with_contact": "admin_contact_untouched", "disabled_no_contact": "disabled_user",
    "pair_by_mail": "upn_differs_from_mail", "pair_by_alias": "pair_by_proxy_alias",
    "ambiguous_by_aliases": "ambiguous_by_aliases", "moved_person": "moved_person",
    "owned_by_other": "contact_owned_by_other_tenant", "linked_oid_braced": "contact_oid_braced",
    "oid_not_guid": "contact_oid_not_guid", "create_dirty": "dirty_m365_values",
}  # fmt: skip
# User situations that are about the account alone, whatever company (if any) the tenant maps to.
_ACCOUNT_SITUATIONS = frozenset({"guest_user", "shared_mailbox_unlicensed", "admin_account", "disabled_user"})
# Contacts planted without a user: situation -> expected count per user of the tenant (plus one at random).
_CONTACT_ONLY_RATES = {
    "gone_from_m365": 0.04, "keep_active": 0.01, "keep_active_other_value": 0.005, "no_contact_details": 0.02,
    "external_email_contact": 0.02, "inactive_contact_gone": 0.03, "keep_active_variants": 0.003,
}  # fmt: skip
GENERAL_USER_SHARE = 0.35  # of companies that have a "General User" contact
TENANTS_PER_NAMELESS_SET = 100  # one company, one site and one contact without a name per this many tenants

_FIRST_NAMES = [
    "Olivia",
    "Amelia",
    "Isla",
    "Ava",
    "Mia",
    "Ivy",
    "Lily",
    "Isabella",
    "Rosie",
    "Sophia",
    "Grace",
    "Willow",
    "Freya",
    "Florence",
    "Emily",
    "Ella",
    "Poppy",
    "Evie",
    "Elsie",
    "Charlotte",
    "Evelyn",
    "Sienna",
    "Sofia",
    "Daisy",
    "Alice",
    "Harper",
    "Matilda",
    "Ruby",
    "Emilia",
    "Maya",
    "Noah",
    "Oliver",
    "George",
    "Arthur",
    "Leo",
    "Muhammad",
    "Harry",
    "Oscar",
    "Archie",
    "Henry",
    "Theodore",
    "Freddie",
    "Jack",
    "Charlie",
    "Theo",
    "Alfie",
    "Jacob",
    "Thomas",
    "Finley",
    "Arlo",
    "William",
    "Lucas",
    "Roman",
    "Tommy",
    "Isaac",
    "Teddy",
    "Alexander",
    "Luca",
    "Edward",
    "James",
    "Joshua",
    "Albie",
    "Elijah",
    "Max",
    "Mohammed",
    "Reuben",
    "Mason",
    "Sebastian",
    "Rory",
    "Jude",
    "Louie",
    "Benjamin",
    "Ethan",
    "Adam",
    "Hunter",
    "Zachary",
    "Ezra",
    "Hugo",
    "Arjun",
    "Priya",
    "Aisha",
    "Chen",
    "Wei",
    "Mei",
    "Hiroshi",
    "Yuki",
    "Sven",
    "Ingrid",
    "Lars",
    "Astrid",
    "Pierre",
    "Chloe",
    "Mateo",
    "Lucia",
    "Diego",
    "Carmen",
    "Kofi",
    "Amara",
    "Tariq",
    "Leila",
    "Siobhan",
    "Niamh",
    "Ciaran",
    "Aoife",
]
_SURNAMES = [
    "Smith",
    "Jones",
    "Taylor",
    "Brown",
    "Williams",
    "Wilson",
    "Johnson",
    "Davies",
    "Robinson",
    "Wright",
    "Thompson",
    "Evans",
    "Walker",
    "White",
    "Roberts",
    "Green",
    "Hall",
    "Wood",
    "Jackson",
    "Clarke",
    "Patel",
    "Khan",
    "Lewis",
    "James",
    "Phillips",
    "Mason",
    "Mitchell",
    "Rose",
    "Davis",
    "Rodriguez",
    "Cox",
    "Alexander",
    "Morris",
    "King",
    "Lee",
    "Baker",
    "Harris",
    "Martin",
    "Cooper",
    "Ward",
    "Turner",
    "Hill",
    "Moore",
    "Clark",
    "Young",
    "Allen",
    "Scott",
    "Edwards",
    "Hughes",
    "Kelly",
    "Price",
    "Bennett",
    "Griffiths",
    "Lloyd",
    "Morgan",
    "Bell",
    "Murphy",
    "Campbell",
    "Stewart",
    "Anderson",
    "Murray",
    "Reid",
    "Fraser",
    "Hamilton",
    "Graham",
    "Kennedy",
    "Ross",
    "Watson",
    "Gray",
    "Shaw",
    "Chapman",
    "Mills",
    "Hunt",
    "Wells",
    "Palmer",
    "Marshall",
    "Fox",
    "Owen",
    "Webb",
    "Ellis",
    "Russell",
    "Harvey",
    "Ali",
    "Hussain",
    "Singh",
    "Kaur",
    "Nguyen",
    "Wong",
    "Tanaka",
    "Larsen",
    "Nielsen",
    "Dubois",
    "Moreau",
    "Garcia",
    "Fernandez",
    "Okafor",
    "Mensah",
    "Byrne",
    "Doyle",
]
_NAME_WORDS = [
    "Northwind",
    "Contoso",
    "Fabrikam",
    "Tailspin",
    "Adatum",
    "Litware",
    "Proseware",
    "Woodgrove",
    "Fourth",
    "Coffee",
    "Alpine",
    "Blue",
    "Yonder",
    "Wingtip",
    "Lucerne",
    "Margie",
    "Trey",
    "Humongous",
    "Wide",
    "World",
    "Graphic",
    "Tide",
    "Southridge",
    "Bellows",
    "Coho",
    "Vanarsdel",
    "Lamna",
    "Relecloud",
    "Maple",
    "Cedar",
    "Harbour",
    "Granite",
    "Copper",
    "Silver",
    "Oak",
    "Willow",
    "Falcon",
    "Kestrel",
    "Heron",
    "Summit",
    "Riverside",
    "Meadow",
    "Thistle",
    "Beacon",
    "Anchor",
    "Compass",
    "Lantern",
    "Orchard",
    "Quarry",
    "Ridge",
    "Valley",
    "Harrow",
    "Bramble",
    "Foxglove",
    "Juniper",
    "Marlin",
    "Osprey",
    "Pinnacle",
]
_BUSINESS_WORDS = [
    "Traders",
    "Consulting",
    "Logistics",
    "Engineering",
    "Dental",
    "Legal",
    "Accountants",
    "Architects",
    "Surveyors",
    "Builders",
    "Foods",
    "Motors",
    "Health",
    "Partners",
    "Solutions",
    "Systems",
    "Studios",
    "Print",
    "Media",
    "Marine",
    "Energy",
    "Farms",
    "Estates",
    "Insurance",
    "Finance",
    "Electrical",
    "Plumbing",
    "Veterinary",
    "Pharmacy",
    "Design",
    "Security",
    "Recruitment",
    "Hotels",
    "Catering",
    "Travel",
    "Textiles",
    "Joinery",
    "Labs",
]
_LEGAL_SUFFIXES = ("Ltd", "Limited", "LLP", "plc", "Inc", "GmbH", "LLC", "")
_TLDS = ("com", "co.uk", "net", "org", "io", "uk", "eu", "de")
_STREETS = [
    "High",
    "Station",
    "Church",
    "Park",
    "Victoria",
    "Green",
    "Manor",
    "Kings",
    "Queens",
    "Mill",
    "Bridge",
    "London",
    "York",
    "Albert",
    "Market",
    "Castle",
    "Chapel",
    "Springfield",
    "Windsor",
    "Grange",
    "Orchard",
    "Richmond",
    "Cedar",
    "Elm",
    "Oak",
    "Meadow",
    "Riverside",
    "Harbour",
    "Abbey",
]
_STREET_TYPES = ("Street", "Road", "Lane", "Avenue", "Way", "Close", "Drive", "Court", "Place", "Parade")
_CITIES = ("Leeds", "Bristol", "Manchester", "Glasgow", "Cardiff", "York", "Norwich", "Belfast", "Oxford", "Exeter")
_JOB_TITLES = (
    "Director", "Office Manager", "Accountant", "Sales Executive", "Engineer", "Project Manager", "Receptionist",
    "Administrator", "Consultant", "Analyst", "Operations Manager", "Designer", "Marketing Manager", "Technician",
)  # fmt: skip
_SHARED_MAILBOXES = ("info", "sales", "accounts", "reception", "support", "office", "hr", "enquiries", "bookings")
_ADMIN_LOCALS = ("admin", "it.admin", "sysadmin", "administrator", "m365admin", "admin.backup")
_FREEMAIL = ("gmail.com", "outlook.com", "hotmail.co.uk", "yahoo.com", "icloud.com", "btinternet.com")
_SKUS = (
    "cbdc14ab-d96c-4c30-b9f4-6ada7cdc1d46",  # Microsoft 365 Business Premium
    "f245ecc8-75af-4f8e-b61f-27d8114de5f3",  # Microsoft 365 Business Standard
    "3b555118-da6a-4418-894f-7df1e2096870",  # Microsoft 365 Business Basic
    "6fd2c87f-b296-42f0-b197-1e91e994b900",  # Office 365 E3
    "4b9405b0-7788-4568-add1-99614e613b69",  # Exchange Online (Plan 1)
)
_WEBSITE_FORMS = (
    "https://www.{d}/contact-us", "https://www.{d}/", "http://www.{d}", "www.{d}", "https://{d}/?utm_source=halo",
    "HTTPS://WWW.{D}/About/", "{d}.", "http://{d}:8080/home",
)  # fmt: skip


@dataclass
class _Tenant:
    plan_match: str
    extras: frozenset[str]
    tenant_id: str
    display_name: str
    slug: str
    primary_domain: str  # the vanity domain users sign in with
    default_domain: str
    domains: list[dict[str, Any]]
    users: list[dict[str, Any]] = field(default_factory=list)
    locals: set[str] = field(default_factory=set)  # mailbox names used by users and planted contacts
    addresses: set[str] = field(default_factory=set)  # every UPN, mail and smtp alias of its users (lower case)

    @property
    def verified_domains(self) -> list[str]:
        return [d["id"] for d in self.domains if d["isVerified"]]


@dataclass
class _Planned:
    """Roles and contact-only situations still to plant once before drawing at random."""

    roles: list[str]
    contacts: list[str]


@dataclass
class _Client:
    record: dict[str, Any]
    sites: list[dict[str, Any]]

    @property
    def client_id(self) -> int:
        return int(self.record["id"])


class _EstateBuilder:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.clients: list[dict[str, Any]] = []
        self.sites: list[dict[str, Any]] = []
        self.contacts: list[dict[str, Any]] = []
        self.situations: dict[str, list[Any]] = {name: [] for name in SITUATIONS}
        self._names: set[str] = set()  # normalised company names in use
        self._slugs: set[str] = set()
        self._domains: set[str] = set()
        # Healthy matched companies (one tenant, with sites) that can hold another tenant's person.
        self.homes: list[tuple[_Tenant, _Client]] = []
        self._open_pair: _Client | None = None  # conflict_two_unmapped company waiting for its second tenant

    # --- small helpers ---------------------------------------------------------------------------------------

    def guid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def tag(self, situation: str, record_id: Any) -> None:
        self.situations[situation].append(record_id)

    def _claim_name(self, name: str) -> str:
        """`name`, or `name` with a number, such that no other company normalises to the same text."""
        candidate, n = name, 2
        while _normalise(candidate) in self._names:
            candidate, n = f"{name} {n}", n + 1
        self._names.add(_normalise(candidate))
        return candidate

    def _claim_domain(self, domain: str) -> str:
        if domain in self._domains:
            raise AssertionError(f"generator bug: domain {domain} planted twice")
        self._domains.add(domain)
        return domain

    def _address(self, taken: set[str]) -> str:
        while True:
            rng = self.rng
            line1 = f"{rng.randint(1, 250)} {rng.choice(_STREETS)} {rng.choice(_STREET_TYPES)}"
            if line1.lower() not in taken:
                taken.add(line1.lower())
                return line1

    def _phone(self) -> str:
        return f"+44 20 7946 {self.rng.randint(0, 999):04d}"  # Ofcom's range reserved for drama

    def _mobile(self) -> str:
        return f"+44 7700 900{self.rng.randint(0, 999):03d}"

    # --- tenants ---------------------------------------------------------------------------------------------

    def tenant_sizes(self, tenants: int, users_per_tenant: int) -> list[int]:
        """Log-normal (a few big tenants, many small ones), scaled so the mean is users_per_tenant."""
        sigma = 1.0
        raw = [self.rng.lognormvariate(0.0, sigma) for _ in range(tenants)]
        scale = users_per_tenant * tenants / sum(raw)
        return [max(1, round(r * scale)) for r in raw]

    def plan(self, index: int, tenants: int) -> tuple[str, frozenset[str]]:
        if index < len(_PLANNED_TENANTS):
            match, planned = _PLANNED_TENANTS[index]
            if match == "conflict_two_unmapped" and self._open_pair is None and index == tenants - 1:
                return "name", planned  # no tenant left to complete the pair
            return match, planned
        rng = self.rng
        match = rng.choices(MATCH_PATHS, weights=_MATCH_WEIGHTS)[0]
        if self._open_pair is not None:
            match = "conflict_two_unmapped"  # the second tenant of the pair
        elif match == "conflict_two_unmapped" and index == tenants - 1:
            match = "name"  # no tenant left to complete a pair
        extras: set[str] = set()
        extras.update(_drawn(rng.random(), _GDAP_STATE_DRAW))
        if rng.random() < 0.02:
            extras.add("not_consented")
        if rng.random() < 0.08 and match not in ("default_domain_website", "conflict_two_unmapped"):
            extras.add("default_domain_onmicrosoft")
        for draw in _EXTRA_DRAWS_BY_MATCH.get(match, ()):
            extras.update(_drawn(rng.random(), draw))
        return match, frozenset(extras)

    def new_tenant(self, match: str, extras: frozenset[str]) -> _Tenant:
        display, slug = self._tenant_identity(extras)
        rng = self.rng
        tld = "com" if "admin_in_domain_name" in extras else rng.choice(_TLDS)
        primary = self._claim_domain(f"{slug}.{tld}")
        initial = self._claim_domain(f"{slug}.onmicrosoft.com")
        onmicrosoft_default = "default_domain_onmicrosoft" in extras
        domains = [
            {"id": primary, "isVerified": True, "isDefault": not onmicrosoft_default},
            {"id": initial, "isVerified": True, "isDefault": onmicrosoft_default},
        ]
        wants_second_vanity = match == "verified_domain_website" and not onmicrosoft_default
        if wants_second_vanity or rng.random() < 0.3:
            extra = self._claim_domain(f"{slug}{rng.choice(('group', 'online', 'uk', 'mail'))}.{rng.choice(_TLDS)}")
            domains.append({"id": extra, "isVerified": True, "isDefault": False})
        if "unverified_domain" in extras or rng.random() < 0.15:
            domains.append({"id": self._claim_domain(f"{slug}-old.{tld}"), "isVerified": False, "isDefault": False})
            extras = extras | {"unverified_domain"}
        if rng.random() < 0.1:
            domains.append({"id": self._claim_domain(f"{slug}.mail.onmicrosoft.com"), "isVerified": True,
                            "isDefault": False})  # fmt: skip
        default = initial if onmicrosoft_default else primary
        return _Tenant(match, extras, self.guid(), display, slug, primary, default, domains)

    def _tenant_identity(self, extras: frozenset[str]) -> tuple[str, str]:
        if "admin_in_domain_name" in extras:
            candidates = [("Cloud Admins", "cloudadmins")]
        elif "website_host_starts_with_www" in extras:
            word = self.rng.choice(_NAME_WORDS)
            candidates = [(f"Worldwide Web {word}", f"www{word.lower()}")]
        else:
            candidates = []
        rng = self.rng
        while True:
            if candidates:
                core, slug = candidates.pop()
            else:
                word, business = rng.choice(_NAME_WORDS), rng.choice(_BUSINESS_WORDS)
                core, slug = f"{word} {business}", f"{word}{business}".lower()
            if slug in self._slugs:
                slug = f"{slug}{rng.randint(2, 999)}"
            if slug in self._slugs:
                continue
            display = f"{core} {rng.choice(_LEGAL_SUFFIXES)}".strip()
            if _normalise(display) in self._names:
                continue
            self._slugs.add(slug)
            self._names.add(_normalise(display))
            return display, slug

    # --- Halo companies --------------------------------------------------------------------------------------

    def new_client(self, name: str, *, website: str | None = None, inactive: bool = False,
                   tenants: tuple[_Tenant, ...] = (), sites: int = 1) -> _Client:  # fmt: skip
        record: dict[str, Any] = {
            "id": len(self.clients) + 1,
            "name": name,
            "website": website,
            "inactive": inactive,
            "main_site_id": None,
            "azure_tenants": [{"azure_tenant_id": t.tenant_id, "azure_tenant_name": t.display_name} for t in tenants],
        }
        self.clients.append(record)
        client = _Client(record, [])
        taken: set[str] = set()
        for position in range(sites):
            site = self.add_site(client, "Head Office" if position == 0 else f"{self.rng.choice(_CITIES)} Office",
                                 self._address(taken))  # fmt: skip
            if position == 0:
                record["main_site_id"] = site["id"]
        return client

    def add_site(self, client: _Client, name: str, line1: str) -> dict[str, Any]:
        site = {"id": len(self.sites) + 1, "client_id": client.client_id, "name": name, "line1": line1}
        self.sites.append(site)
        client.sites.append(site)
        return site

    def client_for(self, tenant: _Tenant, shared_with: _Client | None) -> _Client | None:
        """The Halo company the tenant's match path calls for (None: no company relates to the tenant)."""
        rng, match = self.rng, tenant.plan_match
        if "tenant_shares_company" in tenant.extras and shared_with is not None:
            shared_with.record["azure_tenants"].append(
                {"azure_tenant_id": tenant.tenant_id, "azure_tenant_name": tenant.display_name}
            )
            self.homes = [(t, c) for t, c in self.homes if c is not shared_with]  # no longer one tenant's
            return shared_with
        sites = 0 if "client_without_site" in tenant.extras else rng.choices((1, 2, 3), weights=(65, 25, 10))[0]
        if match == "tenant_id":
            website = _website(rng, tenant.primary_domain) if rng.random() < 0.5 else None
            if "several_invoice_sites" in tenant.extras:
                sites = 2
            client = self.new_client(self._altered_name(tenant.display_name), website=website, tenants=(tenant,),
                                     sites=sites)  # fmt: skip
            self._odd_company_extras(tenant, client)
            return client
        if match == "name":
            if "inactive_duplicate_company" in tenant.extras:
                self.new_client(tenant.display_name, inactive=True)
            client = self.new_client(_name_variant(rng, tenant.display_name), sites=sites)
            if "write_back_keeps_entries" in tenant.extras:
                # The customer's own directory, connected to Halo directly: not a partner mapping.
                client.record["azure_tenants"].append({
                    "azure_tenant_id": self.guid(), "azure_tenant_name": f"{tenant.display_name} (direct)",
                    "details_id": SINGLE_TENANT_CONNECTION_ID,
                })  # fmt: skip
            return client
        if match in ("conflict_mapped_elsewhere", "conflict_two_unmapped", "mapped_company_inactive"):
            self._conflict_companies(tenant)
            return None
        if match == "default_domain_website":
            return self.new_client(self._altered_name(tenant.display_name),
                                   website=_website(rng, tenant.default_domain), sites=sites)  # fmt: skip
        if match == "verified_domain_website":
            other = [d for d in tenant.verified_domains if d != tenant.default_domain and "onmicrosoft" not in d]
            return self.new_client(self._altered_name(tenant.display_name), website=_website(rng, rng.choice(other)),
                                   sites=sites)  # fmt: skip
        if match == "contact_email_domain":
            return self.new_client(self._altered_name(tenant.display_name), sites=sites)
        if match == "ambiguous_name":
            for name in (tenant.display_name, tenant.display_name.upper()):
                twin = self.new_client(name)
                self.contact(
                    twin.sites[0], *self._person(), email=f"{self._fresh_local(tenant)}@{tenant.primary_domain}"
                )
        return None

    def _odd_company_extras(self, tenant: _Tenant, client: _Client) -> None:
        """Invoice-site flags and odd tenant mappings on a tenant-id-matched company."""
        if "several_invoice_sites" in tenant.extras:
            for site in client.sites:  # both flagged; the client's main site is the lowest id
                site["isinvoicesite"] = True
            self.tag("several_invoice_sites", client.client_id)
        if "mapping_tenant_not_guid" in tenant.extras:
            client.record["azure_tenants"].append({"azure_tenant_id": NOT_A_GUID_TENANT_ID, "azure_tenant_name": None})
            self.tag("mapping_tenant_not_guid", client.client_id)

    def _conflict_companies(self, tenant: _Tenant) -> None:
        """The companies that make the tenant a conflict or leave it unmatched; it gets none of its own."""
        rng, match = self.rng, tenant.plan_match
        if match == "conflict_mapped_elsewhere":
            client = self.new_client(_name_variant(rng, tenant.display_name))
            # A tenant whose contract ended: it is not among the partner's tenants any more.
            ended = {"azure_tenant_id": self.guid(), "azure_tenant_name": tenant.display_name}
            client.record["azure_tenants"].append(ended)
        elif match == "conflict_two_unmapped":
            if self._open_pair is None:  # the first tenant reaches the company by name ...
                self._open_pair = self.new_client(_name_variant(rng, tenant.display_name))
            else:  # ... the second by website = its default domain
                self._open_pair.record["website"] = _website(rng, tenant.default_domain)
                self._open_pair = None
        else:  # mapped_company_inactive: the mapped company was retired, a new one carries the name
            self.new_client(self._altered_name(tenant.display_name), inactive=True, tenants=(tenant,))
            self.new_client(_name_variant(rng, tenant.display_name))

    def _altered_name(self, display: str) -> str:
        """A name no matching rule equates with `display` (Halo names drift from tenant names)."""
        core = display
        for suffix in _LEGAL_SUFFIXES:
            if suffix and core.endswith(f" {suffix}"):
                core = core[: -len(suffix) - 1]
        form = self.rng.choice(("{core} Group", "{core} ({city})", "{core} & Co", "The {core} Company"))
        return self._claim_name(form.format(core=core, city=self.rng.choice(_CITIES)))

    def halo_only_client(self) -> None:
        word, business = self.rng.choice(_NAME_WORDS), self.rng.choice(_BUSINESS_WORDS)
        slug = f"{word}{business}".lower()
        while slug in self._slugs:
            slug = f"{word}{business}{self.rng.randint(2, 9999)}".lower()
        self._slugs.add(slug)
        domain = self._claim_domain(f"{slug}.{self.rng.choice(_TLDS)}")
        client = self.new_client(self._claim_name(f"{word} {business}"), website=_website(self.rng, domain))
        for _ in range(self.rng.randint(1, 6)):
            first, last = self._person()
            self.contact(client.sites[0], first, last, email=f"{first}.{last}@{domain}".lower(), phone=self._phone())
        self.tag("halo_only_client", client.client_id)

    def nameless_records(self) -> None:
        """A company, a site and a contact without a name (empty, null, absent), as old Halo databases hold."""
        rng = self.rng
        client = self.new_client("")
        self.tag("missing_name", f"client:{client.client_id}")
        _, home = rng.choice(self.homes) if self.homes else (None, client)
        site = self.add_site(home, "", self._address({s["line1"].lower() for s in home.sites}))
        site["name"] = None
        self.tag("missing_name", f"site:{site['id']}")
        first, last = self._person()
        email = f"{first}.{last}@{rng.choice(_FREEMAIL)}".lower()
        contact_id = self.contact(rng.choice(home.sites), "", "", email=email, phone=self._phone())
        del self.contacts[-1]["name"]
        self.tag("missing_name", f"user:{contact_id}")

    # --- Halo contacts ---------------------------------------------------------------------------------------

    def contact(self, site: dict[str, Any], first: str | None, last: str | None, *, email: str = "",
                phone: str = "", mobile: str = "", title: str = "", azureoid: str = "", inactive: bool = False,
                email2: str = "", keep_active: str | None = None, name: str | None = None) -> int:  # fmt: skip
        record: dict[str, Any] = {
            "id": len(self.contacts) + 1,
            "site_id": site["id"],
            "name": name if name is not None else f"{first} {last}",
            "firstname": first or "",
            "surname": last or "",
            "emailaddress": email,
            "email2": email2,
            "email3": "",
            "phonenumber": phone,
            "mobilenumber": mobile,
            "title": title,
            "azureoid": azureoid,
            "inactive": inactive,
        }
        if keep_active is not None:
            record["customfields"] = [{"name": KEEP_ACTIVE_FIELD, "value": keep_active}]
        self.contacts.append(record)
        return int(record["id"])

    def _person(self) -> tuple[str, str]:
        return self.rng.choice(_FIRST_NAMES), self.rng.choice(_SURNAMES)

    def _fresh_local(self, tenant: _Tenant, wanted: str | None = None) -> str:
        """A mailbox name not yet used in the tenant (by a user or a planted contact)."""
        local = wanted or "{}.{}".format(*self._person()).lower()
        candidate, n = local, 2
        while candidate in tenant.locals:
            candidate, n = f"{local}{n}", n + 1
        tenant.locals.add(candidate)
        return candidate

    # --- Microsoft 365 users ---------------------------------------------------------------------------------

    def user(self, tenant: _Tenant, kind: str, street: str | None) -> dict[str, Any]:
        rng = self.rng
        first, last = self._person()
        licensed = kind in _MEMBER_KINDS or kind in ("disabled", "admin")
        display: str = f"{first} {last}"
        given: str | None = first
        surname: str | None = last
        if kind == "shared":
            local = self._fresh_local(tenant, rng.choice(_SHARED_MAILBOXES))
            display, given, surname, street = local.capitalize(), None, None, None
        elif kind in ("admin", "admin_unlicensed"):
            local = self._fresh_local(tenant, rng.choice(_ADMIN_LOCALS))
            display, given, surname, street = local.replace(".", " ").title(), None, None, None
        else:
            local = self._fresh_local(tenant, f"{first}.{last}".lower())
        upn = f"{local}@{tenant.primary_domain}"
        proxies = [f"SMTP:{upn}", f"smtp:{local}@{tenant.slug}.onmicrosoft.com"]
        mail: str | None = upn
        if kind == "guest":
            mail = f"{first}.{last}{rng.randint(1, 99)}@{rng.choice(_FREEMAIL)}".lower()
            upn = f"{mail.replace('@', '_')}#EXT#@{tenant.slug}.onmicrosoft.com"
            proxies = [f"SMTP:{mail}"]
        elif kind == "member_mail_differs":  # signs in with the initial domain, mails with the vanity one
            upn = f"{local}@{tenant.slug}.onmicrosoft.com"
            proxies = [f"SMTP:{mail}", f"smtp:{upn}"]
        elif kind == "member_aliased":
            proxies.append(f"smtp:{self._fresh_alias(tenant, f'{first[0]}{last}'.lower())}")
        elif kind in ("member", "disabled", "unlicensed") and (
            rng.random() < 0.35 or not self.situations["user_with_aliases"]
        ):
            aliases = [f"{first[0]}{last}@{d}".lower() for d in tenant.verified_domains if "onmicrosoft" not in d]
            # An address belongs to one mailbox: a namesake's alias is not given twice.
            proxies += [f"smtp:{a}" for a in aliases[:2] if a not in tenant.addresses]
            proxies += rng.choice(([f"sip:{upn}"], [_x500(rng, local)], []))
        record = {
            "id": self.guid(),
            "displayName": display,
            "givenName": given,
            "surname": surname,
            "userPrincipalName": upn,
            "mail": mail,
            "jobTitle": rng.choice(_JOB_TITLES) if given and rng.random() < 0.7 else None,
            "businessPhones": [self._phone()] if given and rng.random() < 0.6 else [],
            "mobilePhone": self._mobile() if given and rng.random() < 0.5 else None,
            "faxNumber": self._phone() if given and rng.random() < 0.03 else None,
            "streetAddress": street,
            "proxyAddresses": proxies,
            "assignedLicenses": [{"skuId": rng.choice(_SKUS), "disabledPlans": []}] if licensed else [],
            "accountEnabled": kind not in ("disabled", "shared"),
            "userType": "Guest" if kind == "guest" else "Member",
        }
        if kind == "member_dirty":
            _make_dirty(record)
        tenant.users.append(record)
        tenant.addresses |= {upn.lower(), (mail or "").lower()}
        tenant.addresses |= {p[5:].lower() for p in proxies if p.lower().startswith("smtp:")}
        if any(p.startswith("smtp:") and ".onmicrosoft.com" not in p for p in proxies):
            self.tag("user_with_aliases", record["id"])
        return record

    def _fresh_alias(self, tenant: _Tenant, local: str) -> str:
        """A secondary address at the tenant's last vanity domain that no user of the tenant has yet."""
        domain = [d for d in tenant.verified_domains if "onmicrosoft" not in d][-1]
        candidate, n = local, 2
        while f"{candidate}@{domain}" in tenant.addresses or candidate in tenant.locals:
            candidate, n = f"{local}{n}", n + 1
        tenant.locals.add(candidate)
        return f"{candidate}@{domain}"

    # --- one tenant's users and contacts ---------------------------------------------------------------------

    def populate(self, tenant: _Tenant, client: _Client | None, size: int, planned: _Planned, drain: bool) -> None:
        """Users of the tenant and, when its company has a site, their contacts and contact-only extras.

        Planned roles and contacts are taken first (all that are left when `drain`), so every situation appears.
        """
        rng = self.rng
        roles = rng.choices(_ROLE_NAMES, cum_weights=_ROLE_CUM_WEIGHTS, k=size)
        has_contacts = client is not None and bool(client.sites)
        elsewhere = has_contacts and any(c is not client for _, c in self.homes)
        roles = [r if elsewhere or r not in _OTHER_COMPANY_ROLES else _OTHER_COMPANY_ROLES[r] for r in roles]
        extras: list[str] = []
        if has_contacts and (drain or not tenant.extras & _FAILING_EXTRAS):
            ready = [r for r in planned.roles if elsewhere or r not in _OTHER_COMPANY_ROLES]
            forced = ready if drain else ready[: math.ceil(size / 2)]
            planned.roles[:] = [r for r in planned.roles if r not in forced]
            roles = forced + roles[len(forced) :]
            take = len(planned.contacts) if drain else min(2, len(planned.contacts))
            extras = [planned.contacts.pop(0) for _ in range(take)]
        if tenant.plan_match == "contact_email_domain" or "client_without_site" in tenant.extras:
            roles.insert(0, "linked")  # a contact at the tenant's domain; a member to create without a site
        first_contact = len(self.contacts)
        for role in roles:
            self._user_with_contact(tenant, client if has_contacts else None, role, client)
        if not has_contacts:
            return
        assert client is not None
        for situation, rate in _CONTACT_ONLY_RATES.items():
            extras += [situation] * int(size * rate + rng.random())
        if "general_user" not in extras and rng.random() < GENERAL_USER_SHARE:
            extras.append("general_user")
        for situation in extras:
            self._contact_only(tenant, client, situation)
        if "mass_deactivation" in tenant.extras:
            active = sum(1 for c in self.contacts[first_contact:] if not c["inactive"])
            for _ in range(max(11, active + 1)):  # deactivations > max(10, half the active contacts)
                self._contact_only(tenant, client, "gone_from_m365")

    def _user_with_contact(self, tenant: _Tenant, client: _Client | None, role: str, company: _Client | None) -> None:
        """One user for `role`; its contact(s) go to `client` (None: the tenant's users get no contacts)."""
        kind, contact_kind = _ROLES[role]
        user = self.user(tenant, kind, self._street_for(client, role) if kind in _MEMBER_KINDS else None)
        situation = _ROLE_SITUATION[role]
        if client is None:
            if company is not None and kind in _MEMBER_KINDS:  # matched company without a site
                self.tag("create_without_site", user["id"])
            elif situation in _ACCOUNT_SITUATIONS:
                self.tag(situation, user["id"])
            return
        contact_ids = self._contacts_for_user(client, user, contact_kind, role) if contact_kind else []
        if role in _OTHER_COMPANY_ROLES:
            contact_ids = [self._contact_elsewhere(client, user)]
        if contact_kind is None or role in _USER_TAGGED_ROLES:
            self.tag(situation, user["id"])
            return
        for contact_id in contact_ids:
            self.tag(situation, contact_id)

    def _contact_elsewhere(self, client: _Client, user: dict[str, Any]) -> int:
        """An active contact with the user's id in another tenant's company, at that tenant's domain."""
        home_tenant, home = self.rng.choice([(t, c) for t, c in self.homes if c is not client])
        first, last = user["givenName"], user["surname"]
        email = f"{self._fresh_local(home_tenant, f'{first}.{last}'.lower())}@{home_tenant.primary_domain}"
        return self.contact(home.sites[0], first, last, email=email, azureoid=user["id"], phone=self._phone())

    def _street_for(self, client: _Client | None, role: str) -> str | None:
        rng = self.rng
        if client is None or not client.sites:
            return rng.choice((None, f"{rng.randint(1, 250)} {rng.choice(_STREETS)} {rng.choice(_STREET_TYPES)}"))
        if role == "create_at_site_address":
            if len(client.sites) < 2:
                self.add_site(
                    client, f"{rng.choice(_CITIES)} Office", self._address({s["line1"].lower() for s in client.sites})
                )
            line1 = rng.choice(client.sites[1:])["line1"]
            return rng.choice((line1.upper(), f"  {line1.lower()} "))
        if role == "create_at_tied_site_address":
            return self._tied_line1(client).lower()
        roll = rng.random()
        if roll < 0.6:
            first: str | None = client.sites[0]["line1"]
            return first
        if roll < 0.75:
            any_site: str | None = rng.choice(client.sites)["line1"]
            return any_site
        return None

    def _tied_line1(self, client: _Client) -> str:
        """Line 1 shared by two sites of the client (added once)."""
        lines: list[str] = [s["line1"].lower() for s in client.sites]
        for line1 in lines:
            if lines.count(line1) > 1:
                return line1
        line1 = self._address(set(lines))
        self.add_site(client, "Warehouse", line1)
        self.add_site(client, "Warehouse (Goods In)", line1.upper())
        return line1

    def _contacts_for_user(self, client: _Client, user: dict[str, Any], contact_kind: str, role: str) -> list[int]:
        rng = self.rng
        upn = user["userPrincipalName"]
        street = (user["streetAddress"] or "").strip().lower()
        site = next((s for s in reversed(client.sites) if s["line1"].lower() == street), client.sites[0])
        phones = user["businessPhones"]
        fields = {
            "phone": phones[0] if phones else "",
            "mobile": user["mobilePhone"] or "",
            "title": user["jobTitle"] or "",
            "name": user["displayName"],
        }
        first, last = user["givenName"], user["surname"]
        if contact_kind == "linked":
            oid = user["id"]
            upper = rng.random() < 0.05 or not self.situations["linked_oid_upper_case"]
            differs = rng.random() < 0.15 or not self.situations["linked_fields_differ"]
            if differs:
                fields["phone"], fields["title"] = self._phone(), rng.choice(_JOB_TITLES)
            contact_id = self.contact(site, first, last, email=upn.lower(), azureoid=oid.upper() if upper else oid,
                                      **fields)  # fmt: skip
            if role == "linked":
                if upper:
                    self.tag("linked_oid_upper_case", contact_id)
                if differs:
                    self.tag("linked_fields_differ", contact_id)
            return [contact_id]
        if contact_kind == "inactive_linked":
            return [self.contact(site, first, last, email=upn.lower(), azureoid=user["id"], inactive=True, **fields)]
        if contact_kind == "unlinked_email":
            email = rng.choice((upn, upn.title(), f"{upn} ", f" {upn.upper()}"))
            return [self.contact(site, first, last, email=email, inactive=rng.random() < 0.3, **fields)]
        if contact_kind == "stale_oid_email":
            return [self.contact(site, first, last, email=upn.lower(), azureoid=self.guid(), **fields)]
        mail, alias = user["mail"], _aliases(user)[-1] if _aliases(user) else ""
        if contact_kind == "linked_braced":
            return [self.contact(site, first, last, email=upn.lower(), azureoid=f"{{{user['id'].upper()}}}", **fields)]
        if contact_kind == "not_guid_oid_email":
            return [self.contact(site, first, last, email=mail, azureoid=NOT_A_GUID_OID, **fields)]
        if contact_kind == "unlinked_mail":
            return [self.contact(site, first, last, email=rng.choice((mail, mail.title())), **fields)]
        if contact_kind == "unlinked_alias":
            return [self.contact(site, first, last, email=alias, **fields)]
        if contact_kind == "mail_and_alias":  # entered twice, under two of the person's addresses
            return [self.contact(site, first, last, email=mail, **fields),
                    self.contact(site, first, last, email=alias, **fields)]  # fmt: skip
        # two_unlinked_email: the same person entered twice
        return [self.contact(site, first, last, email=upn.lower(), **fields),
                self.contact(site, first, last, email=upn.title(), **fields)]  # fmt: skip

    def _contact_only(self, tenant: _Tenant, client: _Client, situation: str) -> None:
        rng = self.rng
        site = rng.choice(client.sites)
        first, last = self._person()
        if situation == "general_user":
            email = f"{self._fresh_local(tenant, 'office')}@{tenant.primary_domain}" if rng.random() < 0.5 else ""
            contact_id = self.contact(site, "General", "User", name=GENERAL_USER_NAME, email=email)
        elif situation == "no_contact_details":
            contact_id = self.contact(site, first, last)
        elif situation == "external_email_contact":
            contact_id = self.contact(site, first, last, email=f"{first}.{last}@{rng.choice(_FREEMAIL)}".lower(),
                                      phone=self._phone())  # fmt: skip
        else:  # gone from Microsoft 365, possibly kept active or already inactive
            domain = tenant.primary_domain if rng.random() < 0.8 else rng.choice(tenant.verified_domains)
            variant = KEEP_ACTIVE_VARIANTS[len(self.situations["keep_active_variants"]) % len(KEEP_ACTIVE_VARIANTS)]
            keep = {"keep_active": KEEP_ACTIVE_VALUE, "keep_active_other_value": rng.choice(("1", "0", "Yes")),
                    "keep_active_variants": variant}  # fmt: skip
            contact_id = self.contact(site, first, last, email=f"{self._fresh_local(tenant)}@{domain}",
                                      azureoid=self.guid() if rng.random() < 0.6 else "", phone=self._phone(),
                                      inactive=situation == "inactive_contact_gone",
                                      keep_active=keep.get(situation))  # fmt: skip
        self.tag(situation, contact_id)


def _aliases(user: dict[str, Any]) -> list[str]:
    """The user's secondary smtp: addresses at its own vanity domains."""
    return [p[5:] for p in user["proxyAddresses"] if p.startswith("smtp:") and ".onmicrosoft.com" not in p]


def _make_dirty(user: dict[str, Any]) -> None:
    """Values real directories hold: a runaway display name, a NUL, a bidi override with stray spaces."""
    first, last = user["givenName"], user["surname"]
    user["displayName"] = (f"{first} {last} " * DIRTY_DISPLAY_NAME_LENGTH)[:DIRTY_DISPLAY_NAME_LENGTH]
    user["surname"] = f"{last[:2]}\x00{last[2:]}"
    user["givenName"] = f"  \u202e{first} "


def _x500(rng: random.Random, local: str) -> str:
    return (f"x500:/o=ExchangeLabs/ou=Exchange Administrative Group (FYDIBOHF23SPDLT)/cn=Recipients/"
            f"cn={rng.getrandbits(64):016x}-{local}")  # fmt: skip


def _normalise(name: str) -> str:
    return " ".join(name.lower().split())


def _website(rng: random.Random, domain: str) -> str:
    return rng.choice(_WEBSITE_FORMS).format(d=domain, D=domain.upper())


def _name_variant(rng: random.Random, display: str) -> str:
    """The same name as far as the name rule goes: case, outer and inner spaces differ."""
    words = display.split()
    return rng.choice((
        display.upper(),
        display.lower(),
        f"  {display} ",
        "  ".join(words),
        " ".join(w.capitalize() if i % 2 else w.lower() for i, w in enumerate(words)),
    ))  # fmt: skip


def generate_estate(tenants: int, users_per_tenant: int, seed: int) -> dict[str, Any]:
    """A deterministic estate of `tenants` customer tenants averaging `users_per_tenant` users.

    Every situation in SITUATIONS is planted at least once when tenants >= MIN_TENANTS_FOR_FULL_COVERAGE.
    """
    if tenants < 1 or users_per_tenant < 1:
        raise ValueError(f"tenants and users_per_tenant must be at least 1, got {tenants} and {users_per_tenant}")
    builder = _EstateBuilder(seed)
    partner_tenant_id = builder.guid()
    sizes = builder.tenant_sizes(tenants, users_per_tenant)
    planned = _Planned(roles=[r for r in _ROLE_NAMES if r != "linked"],
                       contacts=[*_CONTACT_ONLY_RATES, "general_user",
                                 *["keep_active_variants"] * (len(KEEP_ACTIVE_VARIANTS) - 1)])  # fmt: skip
    m365_tenants, shared_with = [], None
    for index, size in enumerate(sizes):
        match, extras = builder.plan(index, tenants)
        tenant = builder.new_tenant(match, extras)
        client = builder.client_for(tenant, shared_with)
        if client is not None and match == "tenant_id" and client.sites:
            shared_with = client
        builder.populate(tenant, client, size, planned, drain=index == MIN_TENANTS_FOR_FULL_COVERAGE - 1)
        if client is not None and match in _HOME_MATCHES and client.sites and not tenant.extras & _UNHOMELY_EXTRAS:
            builder.homes.append((tenant, client))
        m365_tenants.append(_tenant_record(builder, tenant))
    for _ in range(max(1, tenants // 10)):
        builder.halo_only_client()
    for _ in range(max(1, round(tenants / TENANTS_PER_NAMELESS_SET))):
        builder.nameless_records()
    return {
        "halo": {
            "clients": builder.clients,
            "sites": builder.sites,
            "users": builder.contacts,
            "azure_connections": [dict(c) for c in AZURE_CONNECTIONS],
        },
        "m365": {"partner_tenant_id": partner_tenant_id, "tenants": m365_tenants},
        "_generator": {
            "seed": seed,
            "tenants": tenants,
            "users_per_tenant": users_per_tenant,
            "situations": builder.situations,
        },  # fmt: skip
    }


def _tenant_record(builder: _EstateBuilder, tenant: _Tenant) -> dict[str, Any]:
    gdap: str | None = "active"
    for situation, status in (("gdap_expired", "expired"), ("gdap_terminated", "terminated"), ("gdap_missing", None)):
        if situation in tenant.extras:
            gdap = status
    for situation in ("not_consented", "default_domain_onmicrosoft", "unverified_domain", "admin_in_domain_name",
                      "client_without_site", "tenant_shares_company", "mass_deactivation", "inactive_duplicate_company",
                      "website_host_starts_with_www", "gdap_expired", "gdap_terminated", "gdap_missing",
                      "write_back_keeps_entries", "licences_omitted"):  # fmt: skip
        if situation in tenant.extras:
            builder.tag(situation, tenant.tenant_id)
    if "not_consented" in tenant.extras:
        # The sandbox refuses an unconsented tenant's tokens on both paths (app-only and the partner's
        # refresh token), so the same tenants stand for the Secure Application Model case.
        builder.tag("not_consented_sam", tenant.tenant_id)
    builder.tag(_MATCH_SITUATION[tenant.plan_match], tenant.tenant_id)
    record = {
        "customerId": tenant.tenant_id,
        "displayName": tenant.display_name,
        "defaultDomainName": tenant.default_domain,
        "consented": "not_consented" not in tenant.extras,
        "gdapStatus": gdap,
        "domains": tenant.domains,
        "users": tenant.users,
    }
    if "licences_omitted" in tenant.extras:
        record["sandbox_omit_user_properties"] = ["assignedLicenses"]  # Graph's users answers lack the property
    return record


def describe_coverage(estate: dict[str, Any]) -> dict[str, int]:
    """How many records the generator planted for each situation (0 for a situation it did not plant)."""
    record = estate.get("_generator")
    if not isinstance(record, dict) or not isinstance(record.get("situations"), dict):
        raise ValueError("the estate has no '_generator' record with 'situations': it was not made by generate_estate")
    situations = record["situations"]
    return {name: len(situations.get(name, [])) for name in SITUATIONS}
