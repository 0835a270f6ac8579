"""Server settings, read once from environment variables (documented in README.md)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of the server; each field is the upper-cased environment variable."""

    model_config = SettingsConfigDict(env_prefix="FHIR_", extra="ignore")

    database_url: str = Field(
        default=f"sqlite:///{Path('data') / 'fhir.db'}",
        validation_alias="DATABASE_URL",
        description="SQLAlchemy URL: sqlite:///path (default) or postgresql+psycopg://...",
    )
    base_url: str | None = Field(
        default=None,
        description="Public base URL of the FHIR endpoint; derived from each HTTP request when "
        "unset, and http://localhost:8080 for the other doors.",
    )
    max_body_bytes: int = Field(default=8 * 1024 * 1024, description="Largest request body.")
    default_page_size: int = Field(default=20, description="`_count` when a request sets none.")
    max_page_size: int = Field(default=500, description="Largest `_count` honoured.")
    max_transaction_entries: int = Field(default=1000, description="Largest batch/transaction.")
    timezone: str = Field(
        default="Europe/Paris",
        description="Time zone of dates and times written without one (search, due dates).",
    )
    required_profiles: str = Field(
        default=(
            "Patient=https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-patient,"
            "Practitioner=https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-practitioner,"
            "Organization=https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-organization"
        ),
        description="Profiles every write of a type must meet, besides its meta.profile: "
        "comma-separated Type=canonical pairs (empty: none).",
    )
    max_include: int = Field(default=1000, description="Most resources _include adds to a page.")
    db_pool_size: int = Field(default=10, description="Connections per worker (PostgreSQL).")
    outbox_in_process: bool = Field(
        default=True,
        description="Dispatch outbox events in the API process (embedded default); set false "
        "when `worker` processes do it.",
    )
    index_backlog_seconds: float = Field(
        default=5.0,
        description="Idle seconds after which the background work indexes the resources the "
        "server stored for itself, its AuditEvents (also when more than 10,000 wait; "
        "docs/engine-and-storage.md); a search that could read them indexes them first. "
        "0: only then.",
    )
    migrate_on_start: bool = Field(default=True, description="Apply migrations at start-up.")
    security_enabled: bool = Field(
        default=True,
        description="Authenticate every request, authorise it and audit it (docs/security.md). "
        "false: no token needed, nothing audited; for benchmarks and tests of other subsystems "
        "only.",
    )
    auth_issuer: str = Field(
        default="cpts-fhir-local",
        description="The `iss` tokens must carry: Pro Santé Connect's issuer in production; "
        "by default the server's own, which signs with its local key.",
    )
    auth_jwks: str | None = Field(
        default=None,
        description="The issuer's public keys: a JWKS file path or an https URL (cached five "
        "minutes; plain http only on localhost). Unset: the local key (`auth_local_key`).",
    )
    auth_local_key: Path = Field(
        default=Path("data") / "auth-signing-key.pem",
        description="The server's own signing key (EC P-256, PEM), created on first use: signs "
        "the tokens of `python -m fhir_server token` and of the client-credentials endpoint.",
    )
    auth_audience: str = Field(
        default="cpts-fhir", description="The `aud` every token must be issued for."
    )
    auth_algorithms: str = Field(
        default="ES256,RS256,PS256", description="Signature algorithms accepted (never none)."
    )
    auth_role_claim: str = Field(
        default="role",
        description="The claim holding the caller's roles (space-separated string or list); a "
        "dotted path reaches into nested objects (`realm_access.roles`).",
    )
    auth_clients: Path | None = Field(
        default=None,
        description="JSON file of the system clients allowed the client-credentials grant "
        "(docs/security.md).",
    )
    auth_token_lifetime: int = Field(default=3600, description="Seconds a local token lasts.")


@lru_cache
def get_settings() -> Settings:
    return Settings()
