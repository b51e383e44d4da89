"""The secret scrubber applied to every error text and log line the clients (and alerts) produce."""

from __future__ import annotations


class SecretScrubber:
    """Replaces known secret values in any text that may reach an error message or a log line."""

    def __init__(self, *secrets: str | None) -> None:
        self._secrets = [s for s in secrets if s]

    def add(self, secret: str | None) -> None:
        if secret and secret not in self._secrets:
            self._secrets.append(secret)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def __repr__(self) -> str:
        return f"SecretScrubber({len(self._secrets)} secrets hidden)"
