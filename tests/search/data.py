"""A small CPTS data set for the search tests, and helpers to load it and read searchset Bundles.

Every expectation in the search tests is written by hand from the resources below (ids are
fixed, loaded by PUT in one transaction). Dates without a zone are read in Europe/Paris (UTC+1
in November, so "2026-11-24" is [2026-11-23T23:00Z, 2026-11-24T23:00Z))."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import httpx
from sqlalchemy import func, select

from fhir_server.storage.schema import ResourceRow
from tests.conftest import LiveServer, wipe
from tests.rest.resources import VALIDATED, put_transaction

INS = "urn:oid:1.2.250.1.213.1.4.8"
IPP = "https://hopital.example/fhir/ipp"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
INS_TYPE = "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
LOCAL = "https://hopital.example/codes"
TAGS = "https://cpts-fhir.org/fhir/CodeSystem/tags"
CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
PROFILE = "https://cpts-fhir.org/fhir/StructureDefinition/cpts-patient"
SOURCE = "https://hopital.example/fhir"
PATHWAY = "https://cpts-fhir.org/fhir/CodeSystem/pathway"
PATHWAY_EXT = "https://cpts-fhir.org/fhir/StructureDefinition/pathway"
JSON = {"content-type": "application/fhir+json"}
STRICT = {"prefer": "handling=strict"}


# -- helpers ---------------------------------------------------------------------------------

_RESOURCE = ResourceRow.__table__
_LOADED: dict[str, tuple[str, tuple[Any, ...]]] = {}  # server url → (data set, fingerprint)


def _fingerprint(live: LiveServer) -> tuple[Any, ...]:
    r = _RESOURCE
    stmt = select(func.count(), func.max(r.c.pk), func.max(r.c.last_updated))
    with live.server.database.transaction(write=False) as conn:
        return tuple(conn.execute(stmt).one())


def loaded(
    live: LiveServer, name: str, resources: Callable[[], list[dict[str, Any]]]
) -> Iterator[httpx.Client]:
    """A client on `live` whose database holds exactly the data set `name`: loaded once and
    reused by read-only tests while nothing else wrote (any write changes the fingerprint)."""
    with httpx.Client(
        base_url=live.url, timeout=30, headers={"accept": "application/fhir+json"}
    ) as client:
        if _LOADED.get(live.url) != (name, _fingerprint(live)):
            wipe(live.server)
            load(client, resources())
            _LOADED[live.url] = (name, _fingerprint(live))
        yield client
        assert _fingerprint(live) == _LOADED[live.url][1], "a read-only test wrote"


def load(fhir: httpx.Client, resources: list[dict[str, Any]]) -> None:
    """PUT every resource (fixed ids) in one transaction."""
    response = fhir.post("/", json=put_transaction(resources), headers=JSON)
    assert response.status_code == 200, response.text


def search(
    fhir: httpx.Client, path: str, params: Any = None, headers: dict | None = None
) -> dict[str, Any]:
    """GET a search; the searchset Bundle (asserting 200)."""
    response = fhir.get(path, params=params, headers=headers)
    assert response.status_code == 200, response.text
    bundle = response.json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    return bundle


def entries(bundle: dict[str, Any], mode: str = "match") -> list[dict[str, Any]]:
    return [e for e in bundle.get("entry", []) if e["search"]["mode"] == mode]


def ids(bundle: dict[str, Any], mode: str = "match") -> list[str]:
    """Ids of the entries of one search mode, in Bundle order."""
    return [e["resource"]["id"] for e in entries(bundle, mode)]


def refs(bundle: dict[str, Any], mode: str = "match") -> list[str]:
    """`Type/id` of the entries of one search mode, in Bundle order."""
    return [f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in entries(bundle, mode)]


def found(fhir: httpx.Client, path: str, params: Any = None) -> set[str]:
    """The set of ids a search matches (one page, which the data sets always fit)."""
    bundle = search(fhir, path, params)
    assert not any(link["relation"] == "next" for link in bundle["link"]), "more than a page"
    return set(ids(bundle))


def link(bundle: dict[str, Any], relation: str) -> str | None:
    return next((x["url"] for x in bundle["link"] if x["relation"] == relation), None)


def problems(bundle: dict[str, Any]) -> list[str]:
    """The issues of the OperationOutcome entry (search.mode=outcome), if any."""
    outcomes = entries(bundle, "outcome")
    assert len(outcomes) <= 1
    if not outcomes:
        return []
    assert outcomes[0]["resource"]["resourceType"] == "OperationOutcome"
    return [i["diagnostics"] for i in outcomes[0]["resource"]["issue"]]


# -- the data set ----------------------------------------------------------------------------


def _ins(value: str) -> dict[str, Any]:
    return {
        "system": INS,
        "value": value,
        "type": {"coding": [{"system": INS_TYPE, "code": "INS-NIR"}]},
    }


def _ipp(value: str) -> dict[str, Any]:
    return {
        "system": IPP,
        "value": value,
        "type": {"coding": [{"system": V2_0203, "code": "PI"}], "text": "IPP"},
    }


def _pathway(code: str) -> list[dict[str, Any]]:
    return [{"url": PATHWAY_EXT, "valueCoding": {"system": PATHWAY, "code": code}}]


# Patients. Names chosen for the string rules: Hélène (1) and Helene (2) differ only by accents,
# "Lefèvre" and "Éluard" have accents, 6 lives in "LYON" and 2 in "Lyon".
PATIENTS: list[dict[str, Any]] = [
    {
        "resourceType": "Patient",
        "id": "1",
        "meta": {
            "tag": [{"system": TAGS, "code": "pathway-patient"}],
            "profile": [PROFILE],
            "security": [{"system": CONFIDENTIALITY, "code": "R"}],
            "source": SOURCE,
        },
        "text": {
            "status": "generated",
            "div": '<div xmlns="http://www.w3.org/1999/xhtml">HD</div>',
        },
        "identifier": [_ins("279035121518989"), _ipp("IPP-0001")],
        "active": True,
        "name": [{"text": "Dupont, Hélène", "family": "Dupont", "given": ["Hélène", "Marie"]}],
        "gender": "female",
        "birthDate": "1948-03-12",
        "address": [{"city": "Saint-Étienne", "postalCode": "42000"}],
        "generalPractitioner": [{"reference": "Practitioner/gp-1"}],
    },
    {
        "resourceType": "Patient",
        "id": "2",
        "meta": {
            "tag": [{"system": TAGS, "code": "pathway-patient"}],
            "security": [{"system": CONFIDENTIALITY, "code": "N"}],
        },
        "identifier": [_ins("248017512345678")],
        "active": False,
        "name": [{"family": "Durand", "given": ["Helene"]}],
        "gender": "female",
        "birthDate": "1950",
        "address": [{"city": "Lyon"}],
    },
    {
        "resourceType": "Patient",
        "id": "3",
        "identifier": [_ipp("IPP-0003")],
        "name": [{"family": "Lefèvre", "given": ["Jean-Pierre"]}],
        "gender": "male",
        "birthDate": "1960-05",
        "address": [{"city": "Villeurbanne"}],
    },
    {
        "resourceType": "Patient",
        "id": "4",
        "meta": {"tag": [{"system": TAGS, "code": "other"}]},
        "active": True,
        "name": [{"family": "Martin", "given": ["Paul"]}],
        "gender": "male",
    },
    {
        "resourceType": "Patient",
        "id": "5",
        "name": [{"family": "Curie", "given": ["Marie"]}],
        "gender": "female",
        "birthDate": "1948-03-12",
        "address": [{"city": "Paris"}],
    },
    {
        "resourceType": "Patient",
        "id": "6",
        "name": [{"family": "Éluard", "given": ["Paul"]}],
        "birthDate": "1995-12-14",
        "address": [{"city": "LYON"}],
    },
]

# An INS is only used with a validated identity (FR Core, required on every Patient).
for _patient in PATIENTS:
    if any(i.get("system") == INS for i in _patient.get("identifier", [])):
        _patient.setdefault("extension", []).append(VALIDATED)


PRACTITIONERS: list[dict[str, Any]] = [
    {
        "resourceType": "Practitioner",
        "id": "gp-1",
        "name": [{"family": "Martin", "given": ["Claire"]}],
    },
    {
        "resourceType": "Practitioner",
        "id": "idel-1",
        "name": [{"family": "Bernard", "given": ["Lucas"]}],
    },
    {
        "resourceType": "Practitioner",
        "id": "idel-2",
        "name": [{"family": "Petit", "given": ["Sophie"]}],
    },
]

# Group/1 shares its id with Patient/1: a plain id `1` matches both.
GROUP = {"resourceType": "Group", "id": "1", "type": "person", "actual": True}

ENCOUNTERS: list[dict[str, Any]] = [
    {
        "resourceType": "Encounter",
        "id": "enc-1",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
        "subject": {"reference": "Patient/1"},
        "period": {"start": "2026-11-18", "end": "2026-11-22"},
    },
    {
        "resourceType": "Encounter",
        "id": "enc-2",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": "Patient/2"},
    },
]

CAREPLANS: list[dict[str, Any]] = [
    {
        "resourceType": "CarePlan",
        "id": "cp1",
        "status": "active",
        "intent": "plan",
        "subject": {"reference": "Patient/1"},
        "category": [{"coding": [{"system": PATHWAY, "code": "sortie-hospitalisation"}]}],
        "period": {"start": "2026-11-22"},
    },
    {
        "resourceType": "CarePlan",
        "id": "cp2",
        "extension": _pathway("insuffisance-cardiaque"),
        "status": "active",
        "intent": "plan",
        "subject": {"reference": "Patient/2"},
    },
    {
        "resourceType": "CarePlan",
        "id": "cp3",
        "status": "draft",
        "intent": "plan",
        "subject": {"reference": "Group/1"},
    },
]


def _task(
    id_: str,
    status: str,
    for_: str,
    owner: str,
    due: str | None = None,
    pathway: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    task: dict[str, Any] = {
        "resourceType": "Task",
        "id": id_,
        "status": status,
        "intent": "order",
        "for": {"reference": for_},
        "owner": {"reference": owner},
    }
    if pathway:
        task["extension"] = _pathway(pathway)
    if due:
        task["restriction"] = {"period": {"end": due}}
    task.update(extra)
    return task


# The nurse idel-1's tasks; the due dates (restriction.period.end) in UTC are:
# t7 whole day 2026-11-24 → [11-23T23:00Z, 11-24T23:00Z), t2 11-24T17:00Z, t1 11-25T11:00Z,
# t6 whole day 2026-11-26 → [11-25T23:00Z, ...), t4 11-23, t3 none.
TASKS: list[dict[str, Any]] = [
    _task(
        "t1",
        "requested",
        "Patient/1",
        "Practitioner/idel-1",
        "2026-11-25T12:00:00+01:00",
        "sortie-hospitalisation",
        basedOn=[{"reference": "CarePlan/cp1"}],
        requester={"reference": "Practitioner/gp-1"},
        code={"text": "Pansement"},
    ),
    _task(
        "t2",
        "accepted",
        "Patient/2",
        "Practitioner/idel-1",
        "2026-11-24T18:00:00+01:00",
        "insuffisance-cardiaque",
        basedOn=[{"reference": "CarePlan/cp2"}],
    ),
    _task("t3", "in-progress", "Patient/1", "Practitioner/idel-1"),
    _task("t4", "completed", "Patient/3", "Practitioner/idel-1", "2026-11-23"),
    _task("t5", "requested", "Patient/4", "Practitioner/idel-2", "2026-11-24"),
    _task("t6", "requested", "Group/1", "Practitioner/idel-1", "2026-11-26"),
    _task(
        "t7",
        "requested",
        "Patient/5",
        "Practitioner/idel-1",
        "2026-11-24",
        "sortie-hospitalisation",
    ),
]


def _quantity(value: float | int, code: str) -> dict[str, Any]:
    return {"value": value, "unit": code, "system": UCUM, "code": code}


def _bp(id_: str, subject: str, systolic: int, diastolic: int) -> dict[str, Any]:
    def component(code: str, display: str, value: int) -> dict[str, Any]:
        return {
            "code": {"coding": [{"system": LOINC, "code": code, "display": display}]},
            "valueQuantity": _quantity(value, "mm[Hg]"),
        }

    return {
        "resourceType": "Observation",
        "id": id_,
        "status": "final",
        "code": {
            "coding": [{"system": LOINC, "code": "85354-9", "display": "Blood pressure panel"}]
        },
        "subject": {"reference": subject},
        "component": [
            component("8480-6", "Systolic blood pressure", systolic),
            component("8462-4", "Diastolic blood pressure", diastolic),
        ],
    }


def _systolic(id_: str, subject: str, value: int) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": id_,
        "status": "final",
        "code": {
            "coding": [{"system": LOINC, "code": "8480-6", "display": "Systolic blood pressure"}]
        },
        "subject": {"reference": subject},
        "valueQuantity": _quantity(value, "mm[Hg]"),
    }


def _coded(id_: str, subject: dict[str, Any], coding: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": id_,
        "status": "final",
        "code": {"coding": [coding]},
        "subject": subject,
    }


OBSERVATIONS: list[dict[str, Any]] = [
    {
        "resourceType": "Observation",
        "id": "obs-glucose",
        "status": "final",
        "code": {
            "coding": [
                {"system": LOINC, "code": "15074-8", "display": "Glucose [Moles/volume] in Blood"}
            ],
            "text": "Glycémie à jeun",
        },
        "subject": {"reference": "Patient/1"},
        "encounter": {"reference": "Encounter/enc-1"},
        "performer": [{"reference": "Practitioner/idel-1"}],
        "effectiveDateTime": "2026-11-24T08:00:00+01:00",
        "valueQuantity": _quantity(5.4, "mmol/L"),
    },
    # Blood pressures: bp-1 is 150/90, bp-2 is 95/120, so that "systolic > 100" is only true of
    # bp-1, while bp-2 has a code 8480-6 and a value > 100 in two different components.
    _bp("obs-bp-1", "Patient/1", 150, 90),
    _bp("obs-bp-2", "Patient/3", 95, 120),
    _systolic("obs-sys-high", "Patient/2", 130),
    _systolic("obs-sys-low", "Patient/2", 90),
    # The same code "local-1" without a system, and in the system LOCAL.
    _coded("obs-nosystem", {"reference": "Group/1"}, {"code": "local-1"}),
    _coded("obs-local", {"reference": "Patient/4"}, {"system": LOCAL, "code": "local-1"}),
    # A subject on another server, and a logical reference by INS.
    _coded(
        "obs-remote",
        {"reference": "http://other.example/fhir/Patient/1"},
        {"system": LOCAL, "code": "remote"},
    ),
    _coded(
        "obs-logical",
        {"identifier": {"system": INS, "value": "279035121518989"}},
        {"system": LOCAL, "code": "logical"},
    ),
]


def cpts() -> list[dict[str, Any]]:
    """The whole general data set (fresh copies)."""
    return copy.deepcopy(
        [*PRACTITIONERS, GROUP, *PATIENTS, *ENCOUNTERS, *CAREPLANS, *TASKS, *OBSERVATIONS]
    )
