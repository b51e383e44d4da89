"""The secrets a sandbox hands out: Halo API application and the Microsoft partner app.

Generated once per state dir and persisted (credentials.json) so a resumed sandbox keeps them,
which keeps an env file written earlier valid.
"""

from __future__ import annotations

import json
import secrets
import uuid
from dataclasses import asdict, dataclass, fields

_SECRET_FIELDS = frozenset({"halo_client_secret", "m365_client_secret", "m365_refresh_token"})


@dataclass(frozen=True)
class SandboxCredentials:
    halo_client_id: str
    halo_client_secret: str
    halo_tenant: str
    m365_client_id: str
    m365_client_secret: str
    m365_refresh_token: str
    partner_tenant_id: str

    @classmethod
    def generate(cls, partner_tenant_id: str) -> SandboxCredentials:
        return cls(
            halo_client_id=str(uuid.uuid4()),
            halo_client_secret=secrets.token_urlsafe(32),
            halo_tenant="sandbox",
            m365_client_id=str(uuid.uuid4()),
            m365_client_secret=secrets.token_urlsafe(32),
            m365_refresh_token=secrets.token_urlsafe(48),
            partner_tenant_id=partner_tenant_id.lower(),
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> SandboxCredentials:
        data = json.loads(text)
        names = {f.name for f in fields(cls)}
        missing = names - set(data)
        if missing:
            raise ValueError(f"sandbox credentials file lacks {sorted(missing)}")
        return cls(**{name: str(data[name]) for name in names})

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{f.name}={'***' if f.name in _SECRET_FIELDS else repr(getattr(self, f.name))}" for f in fields(self)
        )
        return f"SandboxCredentials({shown})"

    __str__ = __repr__
