"""Settings of the HL7 v2 door, read from FHIR_HL7V2_* environment variables (docs/hl7v2.md).
The database and the FHIR side come from the server's own settings (DATABASE_URL, FHIR_*)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Hl7v2Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FHIR_HL7V2_", extra="ignore")

    retention_days: int = Field(
        default=365,
        ge=0,
        description="Days a received message and its ACK stay in the journal (0: forever).",
    )
    ack_application: str = Field(
        default="",
        description="MSH-3 of the ACKs; empty: the receiving application of each message "
        "(its MSH-5).",
    )
    ack_facility: str = Field(
        default="",
        description="MSH-4 of the ACKs; empty: the receiving facility of each message (MSH-6).",
    )
    authorities: str = Field(
        default="",
        description="Identifier systems of assigning authorities that are not OIDs: "
        "comma-separated key=system pairs, the key a universal id or namespace id.",
    )
    tls_cert: Path | None = Field(
        default=None, description="PEM certificate chain of the MLLP listener (enables TLS)."
    )
    tls_key: Path | None = Field(default=None, description="PEM private key of tls_cert.")
    tls_client_ca: Path | None = Field(
        default=None,
        description="PEM bundle of the authorities of client certificates: when set, every "
        "MLLP client must present a certificate they signed.",
    )
    client_id: str = Field(
        default="hl7v2-mllp",
        description="The system client the MLLP listener acts for, in the audit trail: its "
        "senders get the hospital role.",
    )
    max_message_bytes: int = Field(
        default=32 * 1024 * 1024,
        description="Largest message accepted (a discharge letter with its PDF is megabytes).",
    )
    workers: int = Field(
        default=8, ge=1, description="Threads running messages through the engine (MLLP)."
    )
