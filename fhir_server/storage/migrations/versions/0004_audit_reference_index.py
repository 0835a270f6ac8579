"""the audit trail's references in a table of their own

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24

Every access writes an AuditEvent naming each patient concerned, so that the audit trail soon
holds most rows of the reference index. Its rows move to `search_audit_reference`, with the
one index its searches need (docs/engine-and-storage.md).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = (
    "target_type, target_id, url, identifier_system, identifier_value, "
    "resource_pk, type, param, composite"
)


def upgrade() -> None:
    key = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "search_audit_reference",
        sa.Column("target_type", sa.String(length=64), nullable=True),
        sa.Column("target_id", sa.String(length=64), nullable=True),
        sa.Column("url", sa.String(length=512), nullable=True),
        sa.Column("identifier_system", sa.String(length=255), nullable=True),
        sa.Column("identifier_value", sa.String(length=255), nullable=True),
        sa.Column("pk", key, autoincrement=True, nullable=False),
        sa.Column("resource_pk", key, nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("param", sa.String(length=100), nullable=False),
        sa.Column("composite", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["resource_pk"],
            ["resource.pk"],
            name=op.f("fk_search_audit_reference_resource_pk_resource"),
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_search_audit_reference")),
    )
    op.execute(
        f"INSERT INTO search_audit_reference ({_COLUMNS}) "
        f"SELECT {_COLUMNS} FROM search_reference WHERE type = 'AuditEvent'"
    )
    op.execute("DELETE FROM search_reference WHERE type = 'AuditEvent'")
    op.create_index(
        op.f("ix_search_audit_reference_resource_pk"), "search_audit_reference", ["resource_pk"]
    )
    op.create_index(
        op.f("ix_search_audit_reference_target_id_target_type"),
        "search_audit_reference",
        ["target_id", "target_type"],
    )


def downgrade() -> None:
    op.execute(
        f"INSERT INTO search_reference ({_COLUMNS}) SELECT {_COLUMNS} FROM search_audit_reference"
    )
    op.drop_table("search_audit_reference")
