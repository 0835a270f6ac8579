"""fewer index insertions per string and reference row

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25

`:exact` string searches go through the normalized value's index (docs/search.md), and the
index of a reference's url holds only the rows that have one: each string written costs one
random index insertion less, and most references none in the url index.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_URL = "ix_search_reference_type_param_url"
_EXACT = "ix_search_string_type_param_value_exact"
_HAS_URL = sa.text("url IS NOT NULL")


def upgrade() -> None:
    op.drop_index(op.f(_EXACT), table_name="search_string")
    op.drop_index(op.f(_URL), table_name="search_reference")
    op.create_index(
        op.f(_URL),
        "search_reference",
        ["type", "param", "url"],
        sqlite_where=_HAS_URL,
        postgresql_where=_HAS_URL,
    )


def downgrade() -> None:
    op.drop_index(op.f(_URL), table_name="search_reference")
    op.create_index(op.f(_URL), "search_reference", ["type", "param", "url"])
    op.create_index(op.f(_EXACT), "search_string", ["type", "param", "value_exact"])
