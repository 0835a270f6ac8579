"""the index backlog: resources whose index rows are written behind

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24

The server's own records (AuditEvents) are indexed after their write, in batches: each row
here is one of them not indexed yet (docs/engine-and-storage.md, "The index backlog").
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "index_backlog",
        sa.Column(
            "resource_pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["resource_pk"], ["resource.pk"], name=op.f("fk_index_backlog_resource_pk_resource")
        ),
        sa.PrimaryKeyConstraint("resource_pk", name=op.f("pk_index_backlog")),
    )


def downgrade() -> None:
    """The backlog's resources stay without index rows: `python -m fhir_server reindex --type
    AuditEvent` writes them."""
    op.drop_table("index_backlog")
