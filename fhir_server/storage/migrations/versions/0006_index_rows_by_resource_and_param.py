"""a resource's token, reference and date rows indexed by parameter and value

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24

What a search checks per candidate (a status, the patients a resource belongs to, the date it
sorts on) is read from the index on `resource_pk` alone once that index carries the parameter
and its values; it replaces the index on `resource_pk` of those three tables.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = {
    "search_token": ["resource_pk", "param", "code"],
    "search_reference": ["resource_pk", "param", "target_type", "target_id"],
    "search_date": ["resource_pk", "param", "low", "high"],
}


def upgrade() -> None:
    for table, columns in _COLUMNS.items():
        op.create_index(op.f(f"ix_{table}_{'_'.join(columns)}"), table, columns)
        op.drop_index(op.f(f"ix_{table}_resource_pk"), table_name=table)


def downgrade() -> None:
    for table, columns in _COLUMNS.items():
        op.create_index(op.f(f"ix_{table}_resource_pk"), table, ["resource_pk"])
        op.drop_index(op.f(f"ix_{table}_{'_'.join(columns)}"), table_name=table)
