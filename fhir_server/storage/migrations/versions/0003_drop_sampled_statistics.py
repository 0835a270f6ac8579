"""drop sampled SQLite statistics

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24

Earlier versions ran a sampled ANALYZE (`analysis_limit`) every hour on SQLite. Its estimates
(every prefix of an index "1001 rows") led the planner to walk all of a type's index rows for
each candidate. Queries are now written so that SQLite's own rules pick the right index
(docs/performance.md); its statistics go, and no longer come back.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE IF EXISTS sqlite_stat1")
        op.execute("DROP TABLE IF EXISTS sqlite_stat4")


def downgrade() -> None:
    """Nothing to restore: statistics are a cache of the planner."""
