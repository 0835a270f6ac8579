"""Result parameters (search.html#sort, #count, #total) and paging: sort keys and direction,
missing values last, page size and its maximum, totals, `next`/`previous` links, and pages that
stay right while the data changes between them."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import LiveServer, make_server
from tests.search.data import INS, JSON, cpts, found, ids, link, load, loaded, search


@pytest.fixture
def fhir_cpts(live: LiveServer) -> Iterator[httpx.Client]:
    yield from loaded(live, "cpts", cpts)


# Patients: family (normalised) and birthDate:
#   1 dupont 1948-03-12 · 2 durand 1950 · 3 lefevre 1960-05 · 4 martin none · 5 curie 1948-03-12
#   · 6 eluard 1995-12-14. Given names: 1 helene+marie, 2 helene, 3 jean-pierre, 4 paul,
#   5 marie, 6 paul. Genders: 1, 2, 5 female; 3, 4 male; 6 none.
@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("family", ["5", "1", "2", "6", "3", "4"]),  # "Éluard" sorts as "eluard", before "lef"
        ("-family", ["4", "3", "6", "2", "1", "5"]),
        # Ascending dates compare their start; 1 and 5 tie and go by family descending; 4 has
        # no birth date and comes last.
        ("birthdate,-family", ["1", "5", "2", "3", "6", "4"]),
        # Descending dates compare their end; missing still last.
        ("-birthdate,family", ["6", "3", "2", "5", "1", "4"]),
        ("gender,_id", ["1", "2", "5", "3", "4", "6"]),
        ("-gender,-_id", ["4", "3", "5", "2", "1", "6"]),
        # Several values: ascending takes the smallest (1's "helene"), descending the largest
        # (1's "marie").
        ("given,_id", ["1", "2", "3", "5", "4", "6"]),
        ("-given,_id", ["4", "6", "1", "5", "3", "2"]),
        ("_id", ["1", "2", "3", "4", "5", "6"]),
        ("-_id", ["6", "5", "4", "3", "2", "1"]),
    ],
)
def test_sort_patients(fhir_cpts: httpx.Client, sort: str, expected: list[str]) -> None:
    assert ids(search(fhir_cpts, "/Patient", {"_sort": sort})) == expected


# Task due dates (Task.restriction.period.end) in UTC: t4 day 11-23 [11-22T23:00, 11-23T23:00),
# t5 and t7 day 11-24 [11-23T23:00, 11-24T23:00), t2 11-24T17:00, t1 11-25T11:00, t6 day 11-26
# [11-25T23:00, 11-26T23:00), t3 none.
@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("due-date,_id", ["t4", "t5", "t7", "t2", "t1", "t6", "t3"]),
        ("-due-date,_id", ["t6", "t1", "t5", "t7", "t2", "t4", "t3"]),
        ("status,-due-date", ["t2", "t4", "t3", "t6", "t1", "t5", "t7"]),
    ],
)
def test_sort_tasks_by_due_date(fhir_cpts: httpx.Client, sort: str, expected: list[str]) -> None:
    assert ids(search(fhir_cpts, "/Task", {"_sort": sort})) == expected


def test_count_and_total(fhir_cpts: httpx.Client) -> None:
    page = search(fhir_cpts, "/Patient", {"_count": "2", "_sort": "_id"})
    assert ids(page) == ["1", "2"]
    assert "total" not in page  # unknown without counting: more pages follow
    assert link(page, "next") and not link(page, "previous")
    whole = search(fhir_cpts, "/Patient", {"_count": "10"})
    assert whole["total"] == 6 and not link(whole, "next")  # free when it all fits a page
    accurate = search(fhir_cpts, "/Patient", {"_count": "2", "_total": "accurate"})
    assert accurate["total"] == 6 and len(ids(accurate)) == 2
    none = search(fhir_cpts, "/Patient", {"_count": "10", "_total": "none"})
    assert "total" not in none and len(ids(none)) == 6
    zero = search(fhir_cpts, "/Patient", {"_count": "0", "gender": "female"})
    assert zero["total"] == 3 and "entry" not in zero
    default = search(fhir_cpts, "/Observation")
    assert len(ids(default)) == 9 and default["total"] == 9  # under the default 20


def test_total_estimate(fhir_cpts: httpx.Client, backend: str) -> None:
    """`estimate` is the planner's row estimate on PostgreSQL, exact on SQLite; on one page the
    exact count costs nothing and is given."""
    for params in ({}, {"gender": "female"}, {"name": "x"}):
        query = {**params, "_count": "1", "_total": "estimate"}
        total = search(fhir_cpts, "/Patient", query)["total"]
        assert isinstance(total, int) and total >= 0
    estimate = search(fhir_cpts, "/Patient", {"_count": "1", "_total": "estimate"})["total"]
    if backend == "sqlite":
        assert estimate == 6
    accurate = {"_count": "1", "gender": "female", "_total": "accurate"}
    assert search(fhir_cpts, "/Patient", accurate)["total"] == 3
    one_page = search(fhir_cpts, "/Patient", {"gender": "female", "_total": "estimate"})
    assert one_page["total"] == 3


def pages(client: httpx.Client, url: str, params: dict | None, relation: str) -> list[list[str]]:
    """The ids of each page, following `relation` links from the first page."""
    found, bundle = [], search(client, url, params)
    while True:
        found.append(ids(bundle))
        following = link(bundle, relation)
        if following is None:
            return found
        bundle = search(client, following)


@pytest.mark.parametrize(
    ("path", "params", "expected"),
    [
        ("/Patient", {"_count": "4"}, [["1", "2", "3", "4"], ["5", "6"]]),
        ("/Patient", {"_count": "2", "_sort": "family"}, [["5", "1"], ["2", "6"], ["3", "4"]]),
        # 1 and 5 tie on the birth date: the keyset goes on by row, never repeating one.
        (
            "/Patient",
            {"_count": "1", "_sort": "birthdate"},
            [["1"], ["5"], ["2"], ["3"], ["6"], ["4"]],
        ),
        (
            "/Patient",
            {"_count": "2", "_sort": "-birthdate,family"},
            [["6", "3"], ["2", "5"], ["1", "4"]],
        ),
        ("/Patient", {"_count": "3", "_sort": "-gender"}, [["3", "4", "1"], ["2", "5", "6"]]),
        # active: 2 false, 1 and 4 true, 3, 5, 6 none; pages cut inside the missing ones.
        ("/Patient", {"_count": "2", "_sort": "active,_id"}, [["2", "1"], ["4", "3"], ["5", "6"]]),
        ("/Patient", {"_count": "2", "_sort": "-active,_id"}, [["1", "4"], ["2", "3"], ["5", "6"]]),
        # Due dates (see test_sort_tasks_by_due_date); t5 and t7 tie, t3 has none.
        (
            "/Task",
            {"_count": "2", "_sort": "due-date"},
            [["t4", "t5"], ["t7", "t2"], ["t1", "t6"], ["t3"]],
        ),
        (
            "/Task",
            {"_count": "3", "_sort": "-due-date"},
            [["t6", "t1", "t5"], ["t7", "t2", "t4"], ["t3"]],
        ),
        # Codes sort as text: 15074-8 (glucose) < 8480-6 (sys-high, sys-low) < 85354-9 (bp-*).
        (
            "/Observation",
            {"_count": "4", "_sort": "code,_id", "subject": "Patient/1,Patient/2,Patient/3"},
            [["obs-glucose", "obs-sys-high", "obs-sys-low", "obs-bp-1"], ["obs-bp-2"]],
        ),
    ],
)
def test_paging_forwards_and_back(
    fhir_cpts: httpx.Client, path: str, params: dict, expected: list[list[str]]
) -> None:
    params = {**params, "_sort": params.get("_sort", "_id")}
    assert pages(fhir_cpts, path, params, "next") == expected
    last = search(fhir_cpts, path, params)
    while link(last, "next"):
        last = search(fhir_cpts, link(last, "next"))
    backwards = pages(fhir_cpts, link(last, "previous"), None, "previous")
    assert backwards == expected[-2::-1]  # every page before the last, in reverse


def test_paging_while_data_changes(fhir: httpx.Client) -> None:
    """Keyset pages (the position, not an offset, is in the link): a resource present from the
    first page to the last is seen exactly once, whatever is created or deleted meanwhile."""
    load(fhir, [_patient(f"pg{i:02}", f"P{i:02}") for i in range(10)])  # P00 … P09
    seen: list[str] = []
    bundle = search(fhir, "/Patient", {"_sort": "family", "_count": "3"})
    seen += ids(bundle)
    assert seen == ["pg00", "pg01", "pg02"]
    # Delete one seen and one not yet seen; create one behind the cursor (P015 < P02) and one
    # ahead (P065, between P06 and P07).
    assert fhir.delete("/Patient/pg01").status_code == 204
    assert fhir.delete("/Patient/pg05").status_code == 204
    assert fhir.put("/Patient/behind", json=_patient("behind", "P015"), headers=JSON).is_success
    assert fhir.put("/Patient/ahead", json=_patient("ahead", "P065"), headers=JSON).is_success
    bundle = search(fhir, link(bundle, "next"))
    seen += ids(bundle)
    assert ids(bundle) == ["pg03", "pg04", "pg06"]  # pg05 is gone, nothing shifted
    # Again: delete one ahead (pg08), create one ahead (P075).
    assert fhir.delete("/Patient/pg08").status_code == 204
    assert fhir.put("/Patient/ahead2", json=_patient("ahead2", "P075"), headers=JSON).is_success
    while link(bundle, "next"):
        bundle = search(fhir, link(bundle, "next"))
        seen += ids(bundle)
    assert len(seen) == len(set(seen)), seen  # no duplicates
    throughout = {"pg00", "pg02", "pg03", "pg04", "pg06", "pg07", "pg09"}
    assert throughout <= set(seen)  # none skipped
    # Exactly: created ahead of the cursor appear, behind it do not.
    assert seen == [
        *["pg00", "pg01", "pg02"],
        *["pg03", "pg04", "pg06"],
        *["ahead", "pg07", "ahead2"],
        "pg09",
    ]


def _patient(id_: str, family: str) -> dict:
    return {"resourceType": "Patient", "id": id_, "name": [{"family": family}]}


@pytest.fixture
def small(fhir: httpx.Client, live: LiveServer) -> Iterator[httpx.Client]:
    """A second server on the (just emptied) database of `live`, with small limits."""
    server = make_server(live.server.settings.database_url, max_page_size=3, max_include=2)
    other = LiveServer(server)
    try:
        with httpx.Client(
            base_url=other.url, timeout=30, headers={"accept": "application/fhir+json"}
        ) as client:
            yield client
    finally:
        other.stop()
        server.close()


def test_count_is_capped_at_the_maximum(small: httpx.Client) -> None:
    load(small, cpts())
    bundle = search(small, "/Patient", {"_count": "100", "_sort": "_id"})
    assert ids(bundle) == ["1", "2", "3"]  # FHIR_MAX_PAGE_SIZE=3
    assert ids(search(small, link(bundle, "next"))) == ["4", "5", "6"]


# Searches of one shape with other values: the server builds a search's SQL once per shape
# (parameters, modifiers, kinds of values, sort, page size) and binds the values each time.
SAME_SHAPES = [
    [
        ({"identifier": f"{INS}|279035121518989"}, {"1"}),
        ({"identifier": f"{INS}|248017512345678"}, {"2"}),
    ],
    [({"gender": "female"}, {"1", "2", "5"}), ({"gender": "male"}, {"3", "4"})],
    [
        ({"gender": "male,female"}, {"1", "2", "3", "4", "5"}),
        ({"gender": "male,other"}, {"3", "4"}),
    ],
    [({"_id": "1"}, {"1"}), ({"_id": "3"}, {"3"})],
    [({"family": "dup"}, {"1"}), ({"family": "mar"}, {"4"})],
    [({"family:exact": "Durand"}, {"2"}), ({"family:exact": "Curie"}, {"5"})],
    [
        ({"birthdate": "ge1960"}, {"3", "6"}),
        ({"birthdate": "ge1950-06"}, {"2", "3", "6"}),
        ({"birthdate": "ge1990"}, {"6"}),
    ],
    [({"birthdate": "1948-03-12"}, {"1", "5"}), ({"birthdate": "1995"}, {"6"})],
    [
        ({"gender": "female", "birthdate": "lt1949"}, {"1", "5"}),
        ({"gender": "male", "birthdate": "lt1961"}, {"3"}),
    ],
]


@pytest.mark.parametrize("searches", SAME_SHAPES)
def test_searches_of_one_shape_find_each_their_own(
    fhir_cpts: httpx.Client, searches: list[tuple[dict, set[str]]]
) -> None:
    for params, expected in [*searches, *reversed(searches), *searches]:
        assert found(fhir_cpts, "/Patient", params) == expected, params
