"""Lists bound as one parameter (`fhir_server.storage.lists`): the same rows as `IN` and
`NOT IN`, on both backends, and one statement whatever the length of the list."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import Connection, event, insert, select

from fhir_server.server import Server
from fhir_server.storage.lists import among, id_list, key_list, not_among
from fhir_server.storage.schema import ResourceRow

RESOURCE = ResourceRow.__table__
IDS = ["a", "b", "c", "d"]


# Texts a list's encoding must carry intact: PostgreSQL's array syntax (NULL, quotes, braces,
# commas, blanks, backslashes), JSON's escapes, and more than ASCII.
ODD = ["NULL", "null", 'say "hi"', "back\\slash", "{a,b}", " padded ", "line\nbreak", "é-ü"]


@pytest.fixture
def stored(server: Server) -> Server:
    _store(server, IDS)
    return server


def _store(server: Server, ids: list[str]) -> None:
    with server.database.transaction(write=True) as conn:
        conn.execute(
            insert(RESOURCE),
            [
                {
                    "type": "Patient",
                    "id": id_,
                    "version": 1,
                    "last_updated": datetime(2026, 11, 24, tzinfo=UTC),
                    "deleted": False,
                }
                for id_ in ids
            ],
        )


def _ids(conn: Connection, *where: object) -> list[str]:
    return list(conn.execute(select(RESOURCE.c.id).where(*where).order_by("id")).scalars())


@pytest.mark.parametrize("chosen", [[], ["b"], ["a", "c", "z"], IDS])
def test_among_and_not_among_are_in_and_not_in(stored: Server, chosen: list[str]) -> None:
    with stored.database.transaction(write=False) as conn:
        assert _ids(conn, among(RESOURCE.c.id, chosen)) == [i for i in IDS if i in chosen]
        assert _ids(conn, not_among(RESOURCE.c.id, chosen)) == [i for i in IDS if i not in chosen]
        assert _ids(conn, ~among(RESOURCE.c.id, chosen)) == [i for i in IDS if i not in chosen]
        named = select(RESOURCE.c.id).where(among(RESOURCE.c.id, id_list("chosen")))
        assert sorted(conn.execute(named, {"chosen": chosen}).scalars()) == sorted(
            i for i in IDS if i in chosen
        )


def test_any_text_is_matched_as_itself(server: Server) -> None:
    _store(server, IDS + ODD)
    with server.database.transaction(write=False) as conn:
        for odd in ODD:
            assert _ids(conn, among(RESOURCE.c.id, [odd])) == [odd]
        assert set(_ids(conn, among(RESOURCE.c.id, ODD))) == set(ODD)
        assert _ids(conn, not_among(RESOURCE.c.id, [*ODD, "a"])) == ["b", "c", "d"]


def test_keys_select_by_primary_key(stored: Server) -> None:
    with stored.database.transaction(write=False) as conn:
        pks = dict(conn.execute(select(RESOURCE.c.id, RESOURCE.c.pk)).all())
        wanted = [pks["a"], pks["d"]]
        named = select(RESOURCE.c.id).where(among(RESOURCE.c.pk, key_list("pks")))
        assert sorted(conn.execute(named, {"pks": wanted}).scalars()) == ["a", "d"]
        assert _ids(conn, among(RESOURCE.c.pk, key_list(value=wanted))) == ["a", "d"]


def test_one_statement_whatever_the_length(stored: Server) -> None:
    sent: list[str] = []
    engine = stored.database.engine

    def capture(_conn: object, _cur: object, statement: str, *_rest: object) -> None:
        sent.append(statement)

    event.listen(engine, "before_cursor_execute", capture)
    try:
        with stored.database.transaction(write=False) as conn:
            for chosen in (["a"], ["a", "b", "c"], IDS * 50):
                _ids(conn, among(RESOURCE.c.id, chosen))
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    assert len(sent) == 3 and len(set(sent)) == 1
