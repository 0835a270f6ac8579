"""an AuditEvent's Patient entities indexed once

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24

R4 defines an AuditEvent's `patient` as its agents' and its entities' Patients; searches on
`patient` now read the Patient rows of `entity` too (`fhir_server.search.extract.SHARED_ROWS`),
and the rows of `patient` that repeat one of them go.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "DELETE FROM search_audit_reference WHERE param = 'patient' AND target_type = 'Patient' "
        "AND EXISTS (SELECT 1 FROM search_audit_reference e "
        "WHERE e.resource_pk = search_audit_reference.resource_pk AND e.param = 'entity' "
        "AND e.target_type = 'Patient' AND e.target_id = search_audit_reference.target_id)"
    )


def downgrade() -> None:
    """The rows come back with `python -m fhir_server reindex --type AuditEvent`."""
