"""Settings read from the environment, in one place."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DATABASE_URL = "sqlite:///tallybook.db"


@dataclass(frozen=True)
class Settings:
    database_url: str

    @classmethod
    def from_env(cls) -> Settings:
        return cls(database_url=os.environ.get("TALLYBOOK_DATABASE_URL", DEFAULT_DATABASE_URL))


def normalise_database_url(url: str) -> str:
    """Accept plain postgresql:// URLs and use the psycopg 3 driver for them."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def einvoice_reference_folder() -> Path:
    """Where the official e-invoice schemas and rules are: TALLYBOOK_EINVOICE_REFERENCE, else
    ../shared/reference/einvoice next to the repository."""
    configured = os.environ.get("TALLYBOOK_EINVOICE_REFERENCE")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "einvoice"


def sqlite_path(url: str) -> Path | None:
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///") :])
    return None


# -- distribution: SMTP, the outbox's retries, webhook secrets (services.email, .outbox,
# .webhooks) ----------------------------------------------------------------------------------


def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name}: {raw!r} is not a number") from None


@dataclass(frozen=True)
class SmtpSettings:
    """Where e-mails go. The password comes from the environment only, never the database."""

    host: str | None
    port: int
    security: str  # starttls | tls | none
    username: str | None
    password: str | None
    timeout_seconds: float
    # The sender when the organisation has not set its own `email_from`.
    default_from: str | None

    @classmethod
    def from_env(cls) -> SmtpSettings:
        security = os.environ.get("TALLYBOOK_SMTP_SECURITY", "starttls").strip().lower()
        if security not in ("starttls", "tls", "none"):
            raise ValueError(f"TALLYBOOK_SMTP_SECURITY: {security!r} is not starttls, tls or none")
        default_port = {"starttls": 587, "tls": 465, "none": 25}[security]
        return cls(
            host=os.environ.get("TALLYBOOK_SMTP_HOST") or None,
            port=int(_env_number("TALLYBOOK_SMTP_PORT", default_port)),
            security=security,
            username=os.environ.get("TALLYBOOK_SMTP_USERNAME") or None,
            password=os.environ.get("TALLYBOOK_SMTP_PASSWORD") or None,
            timeout_seconds=_env_number("TALLYBOOK_SMTP_TIMEOUT", 30.0),
            default_from=os.environ.get("TALLYBOOK_SMTP_FROM") or None,
        )


@dataclass(frozen=True)
class DeliverySettings:
    """How the outbox retries: backoff base and cap, attempts before giving up, how long a
    claimed delivery may stay `sending` before it is presumed lost, the webhook timeout, and
    how often the worker sweeps the outbox."""

    backoff_seconds: float
    backoff_cap_seconds: float
    max_attempts: int
    lease_seconds: float
    webhook_timeout_seconds: float
    sweep_seconds: int

    @classmethod
    def from_env(cls) -> DeliverySettings:
        return cls(
            backoff_seconds=_env_number("TALLYBOOK_DELIVERY_BACKOFF_SECONDS", 60.0),
            backoff_cap_seconds=_env_number("TALLYBOOK_DELIVERY_BACKOFF_CAP_SECONDS", 21600.0),
            max_attempts=int(_env_number("TALLYBOOK_DELIVERY_MAX_ATTEMPTS", 8)),
            lease_seconds=_env_number("TALLYBOOK_DELIVERY_LEASE_SECONDS", 900.0),
            webhook_timeout_seconds=_env_number("TALLYBOOK_WEBHOOK_TIMEOUT_SECONDS", 10.0),
            sweep_seconds=max(1, min(59, int(_env_number("TALLYBOOK_WORKER_SWEEP_SECONDS", 5)))),
        )


def secret_keys() -> list[str]:
    """TALLYBOOK_SECRET_KEY: Fernet keys, comma-separated, the first one encrypting (the others
    still decrypt, for rotation). Empty: secrets cannot be stored."""
    raw = os.environ.get("TALLYBOOK_SECRET_KEY", "")
    return [part.strip() for part in raw.split(",") if part.strip()]


DEFAULT_PUBLIC_URL = "http://127.0.0.1:8000"


def public_url() -> str:
    """TALLYBOOK_PUBLIC_URL: where customers reach this server (customer portal links are
    built on it), without a trailing slash."""
    url = (os.environ.get("TALLYBOOK_PUBLIC_URL") or DEFAULT_PUBLIC_URL).strip().rstrip("/")
    if not url.startswith(("http://", "https://")) or "?" in url or "#" in url:
        raise ValueError(f"TALLYBOOK_PUBLIC_URL: {url!r} is not an http(s) base URL")
    return url
