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
