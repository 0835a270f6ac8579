"""Token search (search.html#token): `code`, `system|code`, `|code`, `system|`, `:not`, `:text`,
`:of-type`, booleans, codes, `_id`, identifiers. Data: tests/search/data.py."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import LiveServer
from tests.search.data import INS, INS_TYPE, IPP, LOCAL, LOINC, V2_0203, cpts, found, loaded


@pytest.fixture
def fhir_cpts(live: LiveServer) -> Iterator[httpx.Client]:
    yield from loaded(live, "cpts", cpts)


# Patients: 1 INS 279035121518989 + IPP-0001 (type PI, text "IPP"), active; 2 INS
# 248017512345678, inactive; 3 IPP-0003; 4 active; 5 and 6 no identifier and no `active`.
# Genders: 1, 2, 5 female; 3, 4 male; 6 none.
@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"identifier": f"{INS}|279035121518989"}, {"1"}),
        ({"identifier": "279035121518989"}, {"1"}),
        ({"identifier": f"{INS}|"}, {"1", "2"}),
        ({"identifier": f"{IPP}|"}, {"1", "3"}),
        ({"identifier": "|279035121518989"}, set()),  # `|code` is "no system": it has one
        ({"identifier": f"{IPP}|279035121518989"}, set()),
        ({"identifier": "IPP-0001,IPP-0003"}, {"1", "3"}),
        ({"identifier:of-type": f"{V2_0203}|PI|IPP-0001"}, {"1"}),
        ({"identifier:of-type": f"{V2_0203}|PI|279035121518989"}, set()),  # INS is INS-NIR
        ({"identifier:of-type": f"{INS_TYPE}|INS-NIR|248017512345678"}, {"2"}),
        ({"identifier:of-type": f"{V2_0203}|MR|IPP-0001"}, set()),
        ({"identifier:text": "ipp"}, {"1", "3"}),  # Identifier.type.text
        ({"identifier:not": "IPP-0001"}, {"2", "3", "4", "5", "6"}),
        ({"identifier:missing": "true"}, {"4", "5", "6"}),
        ({"active": "true"}, {"1", "4"}),
        ({"active": "false"}, {"2"}),
        ({"active:missing": "true"}, {"3", "5", "6"}),
        ({"active:not": "true"}, {"2", "3", "5", "6"}),  # :not includes the absent ones
        ({"gender": "female"}, {"1", "2", "5"}),
        ({"gender": "male,female"}, {"1", "2", "3", "4", "5"}),
        ({"gender:not": "male"}, {"1", "2", "5", "6"}),
        ({"gender:missing": "true"}, {"6"}),
        ({"gender": "FEMALE"}, set()),  # codes are case-sensitive
        ({"_id": "1"}, {"1"}),
        ({"_id": "1,3,nope"}, {"1", "3"}),
        ({"_id": "nope"}, set()),
    ],
)
def test_patient_tokens(fhir_cpts: httpx.Client, params: dict, expected: set[str]) -> None:
    assert found(fhir_cpts, "/Patient", params) == expected


ALL_OBSERVATIONS = {
    "obs-glucose",
    "obs-bp-1",
    "obs-bp-2",
    "obs-sys-high",
    "obs-sys-low",
    "obs-nosystem",
    "obs-local",
    "obs-remote",
    "obs-logical",
}


# Observation codes: glucose LOINC 15074-8 (display "Glucose [Moles/volume] in Blood", text
# "Glycémie à jeun"); bp-1, bp-2 LOINC 85354-9 "Blood pressure panel" with components 8480-6 and
# 8462-4; sys-high, sys-low LOINC 8480-6 "Systolic blood pressure"; nosystem "local-1" without
# system; local LOCAL|local-1; remote LOCAL|remote; logical LOCAL|logical.
@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"code": "85354-9"}, {"obs-bp-1", "obs-bp-2"}),
        ({"code": f"{LOINC}|8480-6"}, {"obs-sys-high", "obs-sys-low"}),  # not the components
        ({"component-code": "8480-6"}, {"obs-bp-1", "obs-bp-2"}),
        ({"combo-code": "8480-6"}, {"obs-bp-1", "obs-bp-2", "obs-sys-high", "obs-sys-low"}),
        ({"code": "local-1"}, {"obs-nosystem", "obs-local"}),
        ({"code": "|local-1"}, {"obs-nosystem"}),
        ({"code": f"{LOCAL}|local-1"}, {"obs-local"}),
        ({"code": f"{LOCAL}|"}, {"obs-local", "obs-remote", "obs-logical"}),
        ({"code": f"{LOINC}|local-1"}, set()),
        ({"code": "15074-8,local-1"}, {"obs-glucose", "obs-nosystem", "obs-local"}),
        ({"code:text": "glyc"}, {"obs-glucose"}),  # CodeableConcept.text
        ({"code:text": "GLYCÉMIE À"}, {"obs-glucose"}),
        ({"code:text": "glucose"}, {"obs-glucose"}),  # Coding.display, hidden by the text
        ({"code:text": "systolic"}, {"obs-sys-high", "obs-sys-low"}),
        ({"code:text": "blood pressure"}, {"obs-bp-1", "obs-bp-2"}),
        ({"code:text": "jeun"}, set()),  # starts-with on the text, as for strings
        ({"code:not": f"{LOINC}|8480-6"}, ALL_OBSERVATIONS - {"obs-sys-high", "obs-sys-low"}),
        (
            {"code:not": "local-1,remote"},
            ALL_OBSERVATIONS - {"obs-nosystem", "obs-local", "obs-remote"},
        ),
        ({"_id": "obs-bp-1,obs-local"}, {"obs-bp-1", "obs-local"}),
    ],
)
def test_observation_codes(fhir_cpts: httpx.Client, params: dict, expected: set[str]) -> None:
    assert found(fhir_cpts, "/Observation", params) == expected


def test_ins_identifier_across_types(fhir_cpts: httpx.Client) -> None:
    """The INS OID is an ordinary system: Observation has none, so none match there."""
    assert found(fhir_cpts, "/Observation", {"identifier": f"{INS}|279035121518989"}) == set()
    assert found(fhir_cpts, "/Patient", {"identifier": f"{INS}|248017512345678"}) == {"2"}


def test_task_status(fhir_cpts: httpx.Client) -> None:
    # t1, t5, t6, t7 requested; t2 accepted; t3 in-progress; t4 completed.
    assert found(fhir_cpts, "/Task", {"status": "requested,accepted"}) == {
        "t1",
        "t2",
        "t5",
        "t6",
        "t7",
    }
    assert found(fhir_cpts, "/Task", {"status:not": "requested"}) == {"t2", "t3", "t4"}
