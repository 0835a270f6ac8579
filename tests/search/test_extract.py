"""Search index extraction: rows written by hand for typical resources, the fast path checked
against fhirpathpy on every base parameter of the common resource types, and parameters that
cannot be evaluated skipped without failing the write."""

from __future__ import annotations

import copy
import json
import logging
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from fhir_server.search import extract
from fhir_server.search.extract import (
    evaluate_expression,
    has_fast_path,
    index_rows,
    parse_reference,
)
from fhir_server.search.normalize import MAX_DATE, MIN_DATE
from fhir_server.search.parameters import Registry, default_registry
from fhir_server.storage.schema import (
    INDEX_TABLES,
    DateIndex,
    NumberIndex,
    QuantityIndex,
    ReferenceIndex,
    StringIndex,
    TokenIndex,
    UriIndex,
)

PARIS = ZoneInfo("Europe/Paris")
UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def rows(resource: dict[str, Any], registry: Registry | None = None) -> dict[type, list[dict]]:
    return index_rows(registry or default_registry(), resource["resourceType"], resource, PARIS)


def of(result: dict[type, list[dict]], table: type, param: str) -> list[dict]:
    """The rows of one parameter without the columns every row has, sorted."""
    found = [
        {k: v for k, v in row.items() if k not in ("type", "param", "composite")}
        for row in result[table]
        if row["param"] == param
    ]
    return sorted(found, key=lambda r: json.dumps(r, default=str, sort_keys=True))


def token(code=None, system=None, text=None, type_system=None, type_code=None) -> dict:
    return {
        "system": system,
        "code": code,
        "text_normalized": text,
        "type_system": type_system,
        "type_code": type_code,
    }


def ref(
    target_type=None, target_id=None, url=None, identifier_system=None, identifier_value=None
) -> dict:
    return {
        "target_type": target_type,
        "target_id": target_id,
        "url": url,
        "identifier_system": identifier_system,
        "identifier_value": identifier_value,
    }


def string(exact: str, normalized: str) -> dict:
    return {"value_normalized": normalized, "value_exact": exact}


def sort(values: list[dict]) -> list[dict]:
    return sorted(values, key=lambda r: json.dumps(r, default=str, sort_keys=True))


# --------------------------------------------------------------------------- Patient

INS_TYPE = "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203"
NIR_OID = "urn:oid:1.2.250.1.213.1.4.8"
TAGS = "https://cpts.example/tags"
PROFILE = "https://interop.esante.gouv.fr/ig/fhir/ins/StructureDefinition/FrPatientINS|1.0.0"
REMOTE_PRACTITIONER = "https://annuaire.example.fr/fhir/Practitioner/pr-2/_history/4"

PATIENT = {
    "resourceType": "Patient",
    "id": "pat-1",
    "meta": {
        "versionId": "2",
        "lastUpdated": "2024-05-01T10:00:00.123+02:00",
        "profile": [PROFILE],
        "tag": [{"system": TAGS, "code": "parcours-diabete", "display": "Parcours Diabète"}],
    },
    "identifier": [
        {
            "use": "official",
            "type": {
                "coding": [{"system": INS_TYPE, "code": "INS-NIR", "display": "NIR"}],
                "text": "INS NIR",
            },
            "system": NIR_OID,
            "value": "280056935012345",
        }
    ],
    "active": False,
    "name": [
        {"use": "official", "family": "Dupont", "given": ["Hélène", "Marie"], "prefix": ["Mme"]}
    ],
    "telecom": [
        {"system": "phone", "value": "+33 6 12 34 56 78", "use": "mobile"},
        {"system": "email", "value": "helene.dupont@example.fr"},
    ],
    "gender": "female",
    "birthDate": "1980-05",
    "address": [
        {
            "use": "home",
            "line": ["12 rue de la République", "Bâtiment B"],
            "city": "Lyon",
            "postalCode": "69002",
            "country": "FR",
        }
    ],
    "generalPractitioner": [
        {"reference": "Practitioner/pr-1", "display": "Dr Martin"},
        {"reference": REMOTE_PRACTITIONER},
    ],
}


def test_patient_rows_by_hand() -> None:
    result = rows(PATIENT)
    address = [
        string("12 rue de la République", "12 rue de la republique"),
        string("Bâtiment B", "batiment b"),
        string("Lyon", "lyon"),
        string("69002", "69002"),
        string("FR", "fr"),
    ]
    names = [
        string("Dupont", "dupont"),
        string("Hélène", "helene"),
        string("Marie", "marie"),
        string("Mme", "mme"),
    ]
    expected_strings = {
        "address": address,
        "address-city": [string("Lyon", "lyon")],
        "address-country": [string("FR", "fr")],
        "address-postalcode": [string("69002", "69002")],
        "family": [string("Dupont", "dupont")],
        "given": [string("Hélène", "helene"), string("Marie", "marie")],
        "name": names,
        "phonetic": names,
    }
    phone = token("+33 6 12 34 56 78")
    email = token("helene.dupont@example.fr")
    expected_tokens = {
        "_id": [token("pat-1")],
        "_tag": [token("parcours-diabete", TAGS, "parcours diabete")],
        "active": [token("false")],
        "address-use": [token("home")],
        "deceased": [token("false")],
        "email": [email],
        "gender": [token("female")],
        "identifier": [token("280056935012345", NIR_OID, "ins nir", INS_TYPE, "INS-NIR")],
        "phone": [phone],
        "telecom": [phone, email],
    }
    expected_references = {
        "general-practitioner": [
            ref("Practitioner", "pr-1"),
            # an absolute URL may name another server: url only, without its version
            ref(None, None, "https://annuaire.example.fr/fhir/Practitioner/pr-2"),
        ],
    }
    expected_dates = {
        "_lastUpdated": [
            {"low": utc(2024, 5, 1, 8, 0, 0, 123000), "high": utc(2024, 5, 1, 8, 0, 0, 124000)}
        ],
        "birthdate": [{"low": utc(1980, 4, 30, 22), "high": utc(1980, 5, 31, 22)}],
    }
    expected = {
        StringIndex: expected_strings,
        TokenIndex: expected_tokens,
        ReferenceIndex: expected_references,
        DateIndex: expected_dates,
        UriIndex: {"_profile": [{"value": PROFILE}]},  # uri: canonical kept as is
        NumberIndex: {},
        QuantityIndex: {},
    }
    assert set(result) == set(INDEX_TABLES)
    for table, by_param in expected.items():
        assert {r["param"] for r in result[table]} == set(by_param), table.__name__
        for param, values in by_param.items():
            assert of(result, table, param) == sort(values), (table.__name__, param)
        for row in result[table]:
            assert row["type"] == "Patient"
            assert row["composite"] is None
            assert "pk" not in row and "resource_pk" not in row


def test_patient_is_not_modified() -> None:
    before = copy.deepcopy(PATIENT)
    rows(PATIENT)
    evaluate_expression(
        "Patient.deceased.exists() and Patient.deceased != false", PATIENT, fhirpath=True
    )
    assert before == PATIENT


@pytest.mark.parametrize(
    ("deceased", "expected"),
    [
        ({}, "false"),
        ({"deceasedBoolean": False}, "false"),
        ({"deceasedBoolean": True}, "true"),
        ({"deceasedDateTime": "2024-01-02"}, "true"),
    ],
)
def test_patient_deceased(deceased: dict, expected: str) -> None:
    patient = {"resourceType": "Patient", "id": "d", **deceased}
    assert of(rows(patient), TokenIndex, "deceased") == [token(expected)]
    assert evaluate_expression(
        "Patient.deceased.exists() and Patient.deceased != false", patient, fhirpath=True
    ) == [(expected == "true", "boolean")]


# --------------------------------------------------------------------------- Observation

WEIGHT = {
    "resourceType": "Observation",
    "id": "obs-weight",
    "status": "final",
    "category": [
        {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                    "code": "vital-signs",
                }
            ]
        }
    ],
    "code": {
        "coding": [{"system": LOINC, "code": "29463-7", "display": "Body weight"}],
        "text": "Poids",
    },
    "subject": {"reference": "Patient/pat-1"},
    "effectivePeriod": {"start": "2024-03-01T08:30:00+01:00"},
    "valueQuantity": {"value": Decimal("71.50"), "unit": "kg", "system": UCUM, "code": "kg"},
}


def test_observation_rows_by_hand() -> None:
    result = rows(WEIGHT)
    # :text matches CodeableConcept.text and Coding.display: the display hidden by the text
    # gets a row of its own.
    assert of(result, TokenIndex, "code") == sort(
        [token("29463-7", LOINC, "poids"), token(text="body weight")]
    )
    assert of(result, QuantityIndex, "value-quantity") == [
        {"value": Decimal("71.50"), "system": UCUM, "code": "kg"}
    ]
    assert of(result, QuantityIndex, "combo-value-quantity") == [
        {"value": Decimal("71.50"), "system": UCUM, "code": "kg"}
    ]
    assert of(result, DateIndex, "date") == [{"low": utc(2024, 3, 1, 7, 30), "high": MAX_DATE}]
    assert of(result, ReferenceIndex, "subject") == [ref("Patient", "pat-1")]
    assert of(result, ReferenceIndex, "patient") == [ref("Patient", "pat-1")]
    # code-value-quantity: expression "Observation", the resource itself is instance 0.
    composite = [r for r in result[QuantityIndex] if r["param"].startswith("code-value-quantity")]
    assert composite == [
        {
            "type": "Observation",
            "param": "code-value-quantity$1",
            "composite": 0,
            "value": Decimal("71.50"),
            "system": UCUM,
            "code": "kg",
        }
    ]
    assert [r for r in result[TokenIndex] if r["param"] == "code-value-quantity$0"] == [
        {
            "type": "Observation",
            "param": "code-value-quantity$0",
            "composite": 0,
            **token("29463-7", LOINC, "poids"),
        },
        {
            "type": "Observation",
            "param": "code-value-quantity$0",
            "composite": 0,
            **token(text="body weight"),
        },
    ]


def test_observation_patient_only_when_subject_is_a_patient() -> None:
    group = {**WEIGHT, "id": "obs-group", "subject": {"reference": "Group/g-1"}}
    result = rows(group)
    assert of(result, ReferenceIndex, "subject") == [ref("Group", "g-1")]
    assert of(result, ReferenceIndex, "patient") == []
    absolute = {**WEIGHT, "subject": {"reference": "https://other.example/fhir/Patient/p9"}}
    assert of(rows(absolute), ReferenceIndex, "patient") == [
        ref(None, None, "https://other.example/fhir/Patient/p9")
    ]


BLOOD_PRESSURE = {
    "resourceType": "Observation",
    "id": "obs-bp",
    "status": "final",
    "code": {"coding": [{"system": LOINC, "code": "85354-9"}]},
    "subject": {"reference": "Patient/pat-1"},
    "effectiveDateTime": "2024-03-01T08:30:00+01:00",
    "component": [
        {
            "code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
            "valueQuantity": {"value": 120, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"},
        },
        {
            "code": {"coding": [{"system": LOINC, "code": "8462-4"}]},
            "valueQuantity": {"value": 80, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"},
        },
    ],
}


def test_observation_components_composite() -> None:
    result = rows(BLOOD_PRESSURE)
    param = "component-code-value-quantity"
    tokens = [r for r in result[TokenIndex] if r["param"].startswith(param)]
    quantities = [r for r in result[QuantityIndex] if r["param"].startswith(param)]
    base = {"type": "Observation"}
    assert tokens == [
        {**base, "param": f"{param}$0", "composite": 0, **token("8480-6", LOINC)},
        {**base, "param": f"{param}$0", "composite": 1, **token("8462-4", LOINC)},
    ]
    # unit "mmHg" differs from code "mm[Hg]": a second row lets `||mmHg` match the unit.
    assert quantities == [
        {
            **base,
            "param": f"{param}$1",
            "composite": 0,
            "value": Decimal(120),
            "system": UCUM,
            "code": "mm[Hg]",
        },
        {
            **base,
            "param": f"{param}$1",
            "composite": 0,
            "value": Decimal(120),
            "system": None,
            "code": "mmHg",
        },
        {
            **base,
            "param": f"{param}$1",
            "composite": 1,
            "value": Decimal(80),
            "system": UCUM,
            "code": "mm[Hg]",
        },
        {
            **base,
            "param": f"{param}$1",
            "composite": 1,
            "value": Decimal(80),
            "system": None,
            "code": "mmHg",
        },
    ]
    # combo-code-value-quantity: "Observation | Observation.component", instances 0, 1, 2.
    combo = {
        (r["param"], r["composite"], r["code"])
        for r in result[TokenIndex]
        if r["param"].startswith("combo-code-value-quantity")
    }
    assert combo == {
        ("combo-code-value-quantity$0", 0, "85354-9"),
        ("combo-code-value-quantity$0", 1, "8480-6"),
        ("combo-code-value-quantity$0", 2, "8462-4"),
    }
    assert of(result, TokenIndex, "component-code") == sort(
        [token("8480-6", LOINC), token("8462-4", LOINC)]
    )
    assert of(result, DateIndex, "date") == [
        {"low": utc(2024, 3, 1, 7, 30), "high": utc(2024, 3, 1, 7, 30, 1)}
    ]


# --------------------------------------------------------------------------- Task

TASK = {
    "resourceType": "Task",
    "id": "task-1",
    "basedOn": [{"reference": "ServiceRequest/sr-1"}],
    "status": "in-progress",
    "intent": "order",
    "code": {"coding": [{"system": "https://cpts.example/task-type", "code": "visite"}]},
    "for": {"reference": "Patient/pat-1"},
    "owner": {"reference": "Practitioner/pr-2"},
    "authoredOn": "2024-04-30",
    "executionPeriod": {"start": "2024-05-02T08:00:00Z", "end": "2024-05-02T09:00:00Z"},
    "restriction": {"period": {"end": "2024-05-10"}},
}


def test_task_rows_by_hand() -> None:
    result = rows(TASK)
    assert of(result, ReferenceIndex, "owner") == [ref("Practitioner", "pr-2")]
    assert of(result, ReferenceIndex, "subject") == [ref("Patient", "pat-1")]
    assert of(result, ReferenceIndex, "patient") == [ref("Patient", "pat-1")]
    assert of(result, ReferenceIndex, "based-on") == [ref("ServiceRequest", "sr-1")]
    assert of(result, TokenIndex, "status") == [token("in-progress")]
    assert of(result, TokenIndex, "intent") == [token("order")]
    assert of(result, TokenIndex, "code") == [token("visite", "https://cpts.example/task-type")]
    assert of(result, DateIndex, "period") == [
        {"low": utc(2024, 5, 2, 8), "high": utc(2024, 5, 2, 9, 0, 1)}
    ]
    assert of(result, DateIndex, "authored-on") == [
        {"low": utc(2024, 4, 29, 22), "high": utc(2024, 4, 30, 22)}
    ]


def test_task_patient_only_when_for_is_a_patient() -> None:
    task = {**TASK, "for": {"reference": "Group/g-1"}}
    result = rows(task)
    assert of(result, ReferenceIndex, "subject") == [ref("Group", "g-1")]
    assert of(result, ReferenceIndex, "patient") == []
    # A logical reference: resolve() is Patient from Reference.type.
    logical = {
        **TASK,
        "for": {"type": "Patient", "identifier": {"system": NIR_OID, "value": "280056935012345"}},
    }
    expected = [ref(identifier_system=NIR_OID, identifier_value="280056935012345")]
    assert of(rows(logical), ReferenceIndex, "patient") == expected
    assert of(rows(logical), ReferenceIndex, "subject") == expected


# --------------------------------------------------------------------------- other types


def test_money_quantity() -> None:
    charge = {
        "resourceType": "ChargeItem",
        "id": "ci-1",
        "status": "billable",
        "code": {"coding": [{"system": "https://cpts.example/acte", "code": "G"}]},
        "subject": {"reference": "Patient/pat-1"},
        "factorOverride": 0.8,
        "priceOverride": {"value": 26.5, "currency": "EUR"},
        "quantity": {"value": 2},
    }
    result = rows(charge)
    assert of(result, QuantityIndex, "price-override") == [
        {"value": Decimal("26.5"), "system": "urn:iso:std:iso:4217", "code": "EUR"}
    ]
    assert of(result, QuantityIndex, "quantity") == [
        {"value": Decimal(2), "system": None, "code": None}
    ]
    assert of(result, NumberIndex, "factor-override") == [{"value": Decimal("0.8")}]


def test_canonical_with_version() -> None:
    response = {
        "resourceType": "QuestionnaireResponse",
        "id": "qr-1",
        "meta": {"profile": ["https://cpts.example/StructureDefinition/qr|2.1"]},
        "questionnaire": "https://cpts.example/Questionnaire/braden|2.0",
        "status": "completed",
        "subject": {"reference": "Patient/pat-1"},
    }
    result = rows(response)
    # reference: version stripped; uri: kept as is.
    assert of(result, ReferenceIndex, "questionnaire") == [
        ref(url="https://cpts.example/Questionnaire/braden")
    ]
    assert of(result, UriIndex, "_profile") == [
        {"value": "https://cpts.example/StructureDefinition/qr|2.1"}
    ]


def test_condition_age_range_period_and_string() -> None:
    condition = {
        "resourceType": "Condition",
        "id": "c-1",
        "subject": {"reference": "Patient/pat-1"},
        "onsetRange": {
            "low": {"value": 40, "unit": "a", "system": UCUM, "code": "a"},
            "high": {"value": 45, "unit": "a", "system": UCUM, "code": "a"},
        },
        "abatementPeriod": {"end": "2020-06"},
        "code": {"text": "Diabète de type 2"},
    }
    result = rows(condition)
    # Range: low and high as two values.
    assert of(result, QuantityIndex, "onset-age") == [
        {"value": Decimal(40), "system": UCUM, "code": "a"},
        {"value": Decimal(45), "system": UCUM, "code": "a"},
    ]
    assert of(result, DateIndex, "abatement-date") == [
        {"low": MIN_DATE, "high": utc(2020, 6, 30, 22)}
    ]
    assert of(result, TokenIndex, "code") == [token(text="diabete de type 2")]
    with_string = {**condition, "onsetString": "Enfance"}
    del with_string["onsetRange"]
    assert of(rows(with_string), StringIndex, "onset-info") == [string("Enfance", "enfance")]


def test_identifier_with_two_type_codings_and_without_type() -> None:
    practitioner = {
        "resourceType": "Practitioner",
        "id": "pr-1",
        "identifier": [
            {
                "type": {
                    "coding": [
                        {"system": INS_TYPE, "code": "RPPS"},
                        {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "PRN"},
                    ]
                },
                "system": "urn:oid:1.2.250.1.71.4.2.1",
                "value": "810000000001",
            },
            {"system": "https://cpts.example/staff", "value": "42"},
            {"type": {"text": "Ancien numéro"}},
        ],
    }
    assert of(rows(practitioner), TokenIndex, "identifier") == sort(
        [
            token("810000000001", "urn:oid:1.2.250.1.71.4.2.1", None, INS_TYPE, "RPPS"),
            token(
                "810000000001",
                "urn:oid:1.2.250.1.71.4.2.1",
                None,
                "http://terminology.hl7.org/CodeSystem/v2-0203",
                "PRN",
            ),
            token("42", "https://cpts.example/staff"),
            token(text="ancien numero"),
        ]
    )


def test_timing_dates() -> None:
    # MedicationRequest-date reads Timing.event: one row per event, unparseable ones ignored.
    request = {
        "resourceType": "MedicationRequest",
        "id": "mr-1",
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": {"text": "Metformine 500 mg"},
        "subject": {"reference": "Patient/pat-1"},
        "dosageInstruction": [
            {"timing": {"event": ["2024-05-03", "2024-05-01T08:00:00Z", "pas une date"]}},
        ],
    }
    assert of(rows(request), DateIndex, "date") == [
        {"low": utc(2024, 5, 1, 8), "high": utc(2024, 5, 1, 8, 0, 1)},
        {"low": utc(2024, 5, 2, 22), "high": utc(2024, 5, 3, 22)},
    ]
    # CarePlan-activity-date reads the Timing itself: its outer limits.
    care_plan = {
        "resourceType": "CarePlan",
        "id": "cp-1",
        "status": "active",
        "intent": "plan",
        "subject": {"reference": "Patient/pat-1"},
        "activity": [
            {
                "detail": {
                    "status": "scheduled",
                    "scheduledTiming": {
                        "repeat": {
                            "boundsPeriod": {"start": "2024-05-01T00:00:00Z"},
                            "frequency": 1,
                            "period": 1,
                            "periodUnit": "wk",
                        }
                    },
                }
            },
            {
                "detail": {
                    "status": "scheduled",
                    "scheduledTiming": {
                        "event": ["2024-06-03", "2024-06-01T08:00:00Z", "pas une date"],
                        "repeat": {"boundsPeriod": {"start": "2024-06-02", "end": "2024-06-02"}},
                    },
                }
            },
            {"detail": {"status": "scheduled", "scheduledTiming": {"code": {"text": "BID"}}}},
            {"detail": {"status": "scheduled", "scheduledString": "tous les matins"}},
        ],
    }
    assert of(rows(care_plan), DateIndex, "activity-date") == sort(
        [
            {"low": utc(2024, 5, 1), "high": MAX_DATE},
            {"low": utc(2024, 6, 1, 8), "high": utc(2024, 6, 3, 22)},
        ]
    )


def test_references_parsing() -> None:
    assert parse_reference("Patient/1/_history/2") == extract.ParsedReference("Patient", "1", None)
    assert parse_reference("#contained") is None
    assert parse_reference(
        "urn:uuid:3c8f5b1e-9b49-4e4e-9c5e-1f0d6f8b2a11"
    ) == extract.ParsedReference(None, None, "urn:uuid:3c8f5b1e-9b49-4e4e-9c5e-1f0d6f8b2a11")
    assert parse_reference("urn:oid:1.2.3") == extract.ParsedReference(None, None, "urn:oid:1.2.3")
    assert parse_reference("http://x.org/fhir/Patient/7/_history/1") == extract.ParsedReference(
        "Patient", "7", "http://x.org/fhir/Patient/7"
    )
    assert parse_reference("http://x.org/some/page") == extract.ParsedReference(
        None, None, "http://x.org/some/page"
    )
    assert parse_reference("Unknown/1") == extract.ParsedReference(None, None, "Unknown/1")

    observation = {
        "resourceType": "Observation",
        "id": "o",
        "status": "final",
        "code": {"text": "x"},
        "contained": [{"resourceType": "Device", "id": "dev"}],
        "device": {"reference": "#dev"},
        "performer": [
            {"reference": "urn:uuid:3c8f5b1e-9b49-4e4e-9c5e-1f0d6f8b2a11"},
            {
                "reference": "Practitioner/pr-1",
                "identifier": {"system": "urn:oid:1.2.250.1.71.4.2.1", "value": "810000000001"},
            },
            {"display": "Infirmière de garde"},
        ],
    }
    result = rows(observation)
    assert of(result, ReferenceIndex, "device") == []
    assert of(result, ReferenceIndex, "performer") == sort(
        [
            ref(url="urn:uuid:3c8f5b1e-9b49-4e4e-9c5e-1f0d6f8b2a11"),
            ref("Practitioner", "pr-1", None, "urn:oid:1.2.250.1.71.4.2.1", "810000000001"),
        ]
    )


def test_document_reference_relationship_errata() -> None:
    # R4 swaps the components' definitions: code is the token, target the reference.
    param = default_registry().get("DocumentReference", "relationship")
    assert extract.composite_components(default_registry(), param) == [
        ("relationship$0", "token", "code"),
        ("relationship$1", "reference", "target"),
    ]
    result = rows(EXAMPLES["DocumentReference"])
    assert [r for r in result[TokenIndex] if r["param"].startswith("relationship")] == [
        {
            "type": "DocumentReference",
            "param": "relationship$0",
            "composite": 0,
            **token("replaces"),
        }
    ]
    assert [r for r in result[ReferenceIndex] if r["param"].startswith("relationship")] == [
        {
            "type": "DocumentReference",
            "param": "relationship$1",
            "composite": 0,
            **ref("DocumentReference", "doc-0"),
        }
    ]


def test_truncation_and_deduplication() -> None:
    long_text = "é" * 300
    long_url = "https://cpts.example/" + "x" * 600
    patient = {
        "resourceType": "Patient",
        "id": "long",
        "meta": {
            "source": long_url,
            "tag": [{"system": TAGS, "code": "a"}, {"system": TAGS, "code": "a"}],
        },
        "name": [{"family": long_text}, {"family": long_text}],
    }
    result = rows(patient)
    assert of(result, StringIndex, "family") == [string("é" * 255, "e" * 255)]
    assert of(result, UriIndex, "_source") == [{"value": long_url[:512]}]
    assert of(result, TokenIndex, "_tag") == [token("a", TAGS)]


# --------------------------------------------------------------------------- failures


def test_parameter_that_cannot_be_evaluated_is_skipped(caplog: pytest.LogCaptureFixture) -> None:
    registry = Registry()
    registry.add(
        {
            "url": "https://cpts.example/SearchParameter/bad-function",
            "code": "bad",
            "type": "token",
            "expression": {"Patient": "Patient.name.noSuchFunction()"},
        }
    )
    registry.add(
        {
            "url": "https://cpts.example/SearchParameter/bad-syntax",
            "code": "syntax",
            "type": "string",
            "expression": {"Patient": "Patient.name.where("},
        }
    )
    registry.add(
        {
            "url": "https://cpts.example/SearchParameter/bad-composite",
            "code": "composite",
            "type": "composite",
            "expression": {"Patient": "Patient"},
            "component": [
                {"definition": "https://nowhere/SearchParameter/x", "expression": "gender"}
            ],
        }
    )
    registry.add(
        {
            "url": "https://cpts.example/SearchParameter/good",
            "code": "good",
            "type": "token",
            "expression": {"Patient": "Patient.gender"},
        }
    )
    with caplog.at_level(logging.DEBUG, logger="fhir_server.search.extract"):
        result = rows(PATIENT, registry)
    assert [(r["param"], r["code"]) for r in result[TokenIndex]] == [("good", "female")]
    assert sum(len(v) for v in result.values()) == 1
    skipped = {r.args[0] for r in caplog.records if "not indexed on" in r.getMessage()}
    assert skipped == {"bad", "syntax", "composite"}


# ------------------------------------------------------------------ fast path vs fhirpathpy

EXAMPLES: dict[str, dict[str, Any]] = {
    "Patient": {
        **PATIENT,
        "extension": [
            {
                "url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace",
                "valueAddress": {"city": "Villeurbanne"},
            }
        ],
        "deceasedDateTime": "2024-06-01T12:00:00+02:00",
        "communication": [
            {
                "language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "fr"}]},
                "preferred": True,
            }
        ],
        "managingOrganization": {"reference": "Organization/org-1"},
        "link": [{"other": {"reference": "Patient/pat-0"}, "type": "replaces"}],
        "contact": [
            {
                "name": {"family": "Dupont", "given": ["Paul"]},
                "telecom": [{"system": "phone", "value": "0478000000"}],
            }
        ],
    },
    "Task": {
        **TASK,
        "meta": {
            "lastUpdated": "2024-05-01T10:00:00Z",
            "security": [
                {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "N"}
            ],
        },
        "identifier": [{"system": "https://cpts.example/task", "value": "T-1"}],
        "groupIdentifier": {"system": "https://cpts.example/task-group", "value": "G-1"},
        "partOf": [{"reference": "Task/task-0"}],
        "businessStatus": {"text": "En attente du patient"},
        "priority": "urgent",
        "focus": {"reference": "ServiceRequest/sr-1"},
        "encounter": {"reference": "Encounter/enc-1"},
        "lastModified": "2024-05-01T10:00:00+02:00",
        "requester": {"reference": "PractitionerRole/role-1"},
        "performerType": [
            {
                "coding": [
                    {
                        "system": "http://snomed.info/sct",
                        "code": "224535009",
                        "display": "Registered nurse",
                    }
                ]
            }
        ],
        "input": [{"type": {"text": "note"}, "valueString": "Passer le matin"}],
    },
    "Observation": {
        **BLOOD_PRESSURE,
        "meta": {"source": "https://cpts.example/devices/tensiometre-12"},
        "identifier": [{"system": "https://cpts.example/obs", "value": "O-1"}],
        "basedOn": [{"reference": "ServiceRequest/sr-1"}],
        "partOf": [{"reference": "Procedure/proc-1"}],
        "category": WEIGHT["category"],
        "focus": [{"reference": "Condition/c-1"}],
        "encounter": {"reference": "Encounter/enc-1"},
        "performer": [{"reference": "Practitioner/pr-1"}, {"reference": "Patient/pat-1"}],
        "interpretation": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/"
                        "v3-ObservationInterpretation",
                        "code": "H",
                    }
                ]
            }
        ],
        "method": {"text": "Automatique"},
        "specimen": {"reference": "Specimen/sp-1"},
        "device": {"reference": "Device/dev-1"},
        "hasMember": [{"reference": "Observation/obs-weight"}],
        "derivedFrom": [{"reference": "DocumentReference/doc-1"}],
        "component": [
            *BLOOD_PRESSURE["component"],
            {
                "code": {"coding": [{"system": LOINC, "code": "8867-4"}]},
                "dataAbsentReason": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/data-absent-reason",
                            "code": "error",
                        }
                    ]
                },
            },
            {
                "code": {"text": "Position"},
                "valueCodeableConcept": {
                    "coding": [
                        {
                            "system": "http://snomed.info/sct",
                            "code": "33586001",
                            "display": "Sitting",
                        }
                    ]
                },
            },
        ],
    },
    "Observation-value": {
        **WEIGHT,
        "effectivePeriod": {"start": "2024-03-01", "end": "2024-03-02"},
        "valueQuantity": {"value": 71.5, "unit": "kilogram", "system": UCUM, "code": "kg"},
        "referenceRange": [{"low": {"value": 50, "unit": "kg"}}],
    },
    "Encounter": {
        "resourceType": "Encounter",
        "id": "enc-1",
        "identifier": [{"system": "https://cpts.example/venue", "value": "V-1"}],
        "status": "finished",
        "class": {
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "code": "HH",
            "display": "home health",
        },
        "type": [
            {
                "coding": [
                    {
                        "system": "https://cpts.example/encounter-type",
                        "code": "visite",
                        "display": "Visite à domicile",
                    }
                ]
            }
        ],
        "subject": {"reference": "Patient/pat-1"},
        "episodeOfCare": [{"reference": "EpisodeOfCare/eoc-1"}],
        "basedOn": [{"reference": "ServiceRequest/sr-1"}],
        "participant": [
            {
                "type": [
                    {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/"
                                "v3-ParticipationType",
                                "code": "PPRF",
                            }
                        ]
                    }
                ],
                "individual": {"reference": "Practitioner/pr-1"},
            },
            {"individual": {"reference": "RelatedPerson/rp-1"}},
        ],
        "appointment": [{"reference": "Appointment/app-1"}],
        "period": {"start": "2024-05-02T08:00:00+02:00", "end": "2024-05-02T08:45:00+02:00"},
        "length": {"value": 45, "unit": "min", "system": UCUM, "code": "min"},
        "reasonCode": [{"text": "Pansement"}],
        "reasonReference": [{"reference": "Condition/c-1"}],
        "diagnosis": [{"condition": {"reference": "Condition/c-1"}}],
        "account": [{"reference": "Account/acc-1"}],
        "hospitalization": {"specialArrangement": [{"text": "Fauteuil roulant"}]},
        "location": [
            {
                "location": {"reference": "Location/loc-1"},
                "period": {"start": "2024-05-02T08:00:00+02:00"},
            }
        ],
        "serviceProvider": {"reference": "Organization/org-1"},
        "partOf": {"reference": "Encounter/enc-0"},
    },
    "CarePlan": {
        "resourceType": "CarePlan",
        "id": "cp-1",
        "identifier": [{"system": "https://cpts.example/ppcs", "value": "PPCS-1"}],
        "instantiatesCanonical": ["https://cpts.example/PlanDefinition/diabete|1.0"],
        "instantiatesUri": ["https://cpts.example/protocoles/diabete.pdf"],
        "basedOn": [{"reference": "CarePlan/cp-0"}],
        "replaces": [{"reference": "CarePlan/cp-0"}],
        "partOf": [{"reference": "CarePlan/cp-parent"}],
        "status": "active",
        "intent": "plan",
        "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "734163000"}]}],
        "title": "Plan personnalisé de coordination en santé",
        "subject": {"reference": "Patient/pat-1"},
        "encounter": {"reference": "Encounter/enc-1"},
        "period": {"start": "2024-05-01"},
        "careTeam": [{"reference": "CareTeam/ct-1"}],
        "addresses": [{"reference": "Condition/c-1"}],
        "goal": [{"reference": "Goal/g-1"}],
        "activity": [
            {"reference": {"reference": "ServiceRequest/sr-1"}},
            {
                "detail": {
                    "kind": "Task",
                    "code": {"coding": [{"system": "https://cpts.example/acte", "code": "AMI"}]},
                    "status": "scheduled",
                    "scheduledPeriod": {"start": "2024-05-02", "end": "2024-06-02"},
                    "performer": [{"reference": "Practitioner/pr-2"}],
                }
            },
            {
                "detail": {
                    "status": "scheduled",
                    "scheduledTiming": {"event": ["2024-05-03T09:00:00+02:00"]},
                }
            },
        ],
    },
    "CareTeam": {
        "resourceType": "CareTeam",
        "id": "ct-1",
        "identifier": [{"system": "https://cpts.example/equipe", "value": "E-1"}],
        "status": "active",
        "category": [{"coding": [{"system": "http://loinc.org", "code": "LA28865-6"}]}],
        "name": "Équipe de soins primaires",
        "subject": {"reference": "Patient/pat-1"},
        "encounter": {"reference": "Encounter/enc-1"},
        "period": {"start": "2024-01-01"},
        "participant": [
            {"member": {"reference": "Practitioner/pr-1"}},
            {"member": {"reference": "Organization/org-1"}},
        ],
        "managingOrganization": [{"reference": "Organization/org-1"}],
    },
    "MedicationRequest": {
        "resourceType": "MedicationRequest",
        "id": "mr-1",
        "identifier": [{"system": "https://cpts.example/ordonnance", "value": "ORD-1"}],
        "status": "active",
        "intent": "order",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/"
                        "medicationrequest-category",
                        "code": "community",
                    }
                ]
            }
        ],
        "priority": "routine",
        "medicationCodeableConcept": {
            "coding": [
                {"system": "http://www.whocc.no/atc", "code": "A10BA02", "display": "metformin"}
            ],
            "text": "Metformine 500 mg",
        },
        "subject": {"reference": "Patient/pat-1"},
        "encounter": {"reference": "Encounter/enc-1"},
        "authoredOn": "2024-04-30T10:00:00+02:00",
        "requester": {"reference": "Practitioner/pr-1"},
        "performer": {"reference": "Practitioner/pr-2"},
        "performerType": {"text": "Infirmier"},
        "dosageInstruction": [
            {
                "text": "1 comprimé matin et soir",
                "timing": {
                    "event": ["2024-05-01T08:00:00+02:00"],
                    "repeat": {"boundsPeriod": {"start": "2024-05-01", "end": "2024-07-31"}},
                },
            }
        ],
        "dispenseRequest": {"performer": {"reference": "Organization/pharma-1"}},
    },
    "MedicationRequest-reference": {
        "resourceType": "MedicationRequest",
        "id": "mr-2",
        "status": "active",
        "intent": "order",
        "medicationReference": {"reference": "Medication/med-1"},
        "subject": {"reference": "Group/g-1"},
    },
    "DocumentReference": {
        "resourceType": "DocumentReference",
        "id": "doc-1",
        "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": "urn:oid:1.2.250.1.999.1.2.3"},
        "identifier": [{"system": "https://cpts.example/doc", "value": "D-1"}],
        "status": "current",
        "type": {"coding": [{"system": LOINC, "code": "11488-4", "display": "Consult note"}]},
        "category": [{"coding": [{"system": "https://cpts.example/doc-class", "code": "CR"}]}],
        "subject": {"reference": "Patient/pat-1"},
        "date": "2024-05-02T10:00:00+02:00",
        "author": [{"reference": "Practitioner/pr-1"}],
        "authenticator": {"reference": "Practitioner/pr-1"},
        "custodian": {"reference": "Organization/org-1"},
        "relatesTo": [{"code": "replaces", "target": {"reference": "DocumentReference/doc-0"}}],
        "description": "Compte rendu de consultation",
        "securityLabel": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
                        "code": "N",
                    }
                ]
            }
        ],
        "content": [
            {
                "attachment": {
                    "contentType": "application/pdf",
                    "language": "fr-FR",
                    "url": "Binary/bin-1",
                    "title": "CR",
                },
                "format": {
                    "system": "http://ihe.net/fhir/ihe.formatcode.fhir/CodeSystem/formatcode",
                    "code": "urn:ihe:iti:xds:2017:mimeTypeSufficient",
                },
            }
        ],
        "context": {
            "encounter": [{"reference": "Encounter/enc-1"}],
            "event": [{"text": "Consultation"}],
            "period": {"start": "2024-05-02T09:00:00+02:00"},
            "facilityType": {"text": "Cabinet"},
            "practiceSetting": {"text": "Médecine générale"},
            "related": [{"reference": "ServiceRequest/sr-1"}],
        },
    },
    "Communication": {
        "resourceType": "Communication",
        "id": "com-1",
        "identifier": [{"system": "https://cpts.example/message", "value": "M-1"}],
        "instantiatesCanonical": ["https://cpts.example/PlanDefinition/alerte"],
        "instantiatesUri": ["https://cpts.example/protocoles/alerte"],
        "basedOn": [{"reference": "ServiceRequest/sr-1"}],
        "partOf": [{"reference": "Task/task-1"}],
        "status": "completed",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/communication-category",
                        "code": "alert",
                    }
                ]
            }
        ],
        "medium": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationMode",
                        "code": "WRITTEN",
                    }
                ]
            }
        ],
        "subject": {"reference": "Patient/pat-1"},
        "encounter": {"reference": "Encounter/enc-1"},
        "sent": "2024-05-02T11:00:00+02:00",
        "received": "2024-05-02T11:00:05+02:00",
        "recipient": [{"reference": "Practitioner/pr-1"}, {"reference": "CareTeam/ct-1"}],
        "sender": {"reference": "Practitioner/pr-2"},
        "payload": [{"contentString": "Glycémie élevée ce matin"}],
    },
    "Condition": {
        "resourceType": "Condition",
        "id": "c-1",
        "identifier": [{"system": "https://cpts.example/probleme", "value": "P-1"}],
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": "active",
                }
            ]
        },
        "verificationStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                    "code": "confirmed",
                }
            ]
        },
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/condition-category",
                        "code": "problem-list-item",
                    }
                ]
            }
        ],
        "severity": {"coding": [{"system": "http://snomed.info/sct", "code": "6736007"}]},
        "code": {
            "coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "E11"}],
            "text": "Diabète de type 2",
        },
        "bodySite": [{"text": "Pancréas"}],
        "subject": {"reference": "Patient/pat-1"},
        "encounter": {"reference": "Encounter/enc-1"},
        "onsetAge": {"value": 52, "unit": "ans", "system": UCUM, "code": "a"},
        "abatementString": "En rémission",
        "recordedDate": "2024-05-02",
        "asserter": {"reference": "Practitioner/pr-1"},
        "stage": [{"summary": {"text": "Stade 2"}}],
        "evidence": [
            {"code": [{"text": "HbA1c 8 %"}], "detail": [{"reference": "Observation/obs-hba1c"}]}
        ],
    },
    "Condition-dates": {
        "resourceType": "Condition",
        "id": "c-2",
        "subject": {"reference": "Patient/pat-1"},
        "onsetDateTime": "2019",
        "abatementPeriod": {"start": "2023-01-01", "end": "2023-02-01"},
    },
    "Practitioner": {
        "resourceType": "Practitioner",
        "id": "pr-1",
        "identifier": [
            {
                "type": {"coding": [{"system": INS_TYPE, "code": "RPPS"}]},
                "system": "urn:oid:1.2.250.1.71.4.2.1",
                "value": "810000000001",
            }
        ],
        "active": True,
        "name": [
            {
                "family": "Martin",
                "given": ["Jean-Éric"],
                "prefix": ["Dr"],
                "text": "Dr Jean-Éric Martin",
            }
        ],
        "telecom": [
            {"system": "phone", "value": "0478123456", "use": "work"},
            {"system": "email", "value": "jean-eric.martin@mssante.fr"},
            {"system": "fax", "value": "0478123457"},
        ],
        "address": [
            {
                "use": "work",
                "line": ["3 place Bellecour"],
                "city": "Lyon",
                "postalCode": "69002",
                "state": "Auvergne-Rhône-Alpes",
                "country": "FR",
                "district": "Rhône",
            }
        ],
        "gender": "male",
        "communication": [{"coding": [{"system": "urn:ietf:bcp:47", "code": "fr"}]}],
    },
    "Organization": {
        "resourceType": "Organization",
        "id": "org-1",
        "identifier": [{"system": "urn:oid:1.2.250.1.71.4.2.2", "value": "690000000"}],
        "active": True,
        "type": [{"coding": [{"system": "https://cpts.example/org-type", "code": "CPTS"}]}],
        "name": "CPTS Lyon Centre",
        "alias": ["Communauté professionnelle de Lyon"],
        "telecom": [{"system": "phone", "value": "0478000001"}],
        "address": [{"line": ["1 quai Claude Bernard"], "city": "Lyon", "postalCode": "69007"}],
        "partOf": {"reference": "Organization/org-0"},
        "endpoint": [{"reference": "Endpoint/mss-1"}],
    },
}

AGREEMENT_TYPES = [
    "Patient",
    "Task",
    "Observation",
    "Encounter",
    "CarePlan",
    "CareTeam",
    "MedicationRequest",
    "DocumentReference",
    "Communication",
    "Condition",
    "Practitioner",
    "Organization",
]


def canonical(items: list[tuple[Any, str]]) -> list[str]:
    """Order-free comparable form; fhirpathpy types Resource.id as string."""
    return sorted(
        json.dumps(
            [
                value if not isinstance(value, float) else Decimal(str(value)),
                "string" if type_name == "id" else type_name,
            ],
            default=str,
            sort_keys=True,
        )
        for value, type_name in items
    )


def slow_expression(text: str) -> extract._Expression:
    expression = extract._Expression(text)
    expression.fast = None
    return expression


def test_every_example_is_valid() -> None:
    from fhir_server.model.structure import check_resource

    for example in EXAMPLES.values():
        check_resource(example)


def test_agreement_covers_the_listed_types() -> None:
    assert {e["resourceType"] for e in EXAMPLES.values()} == set(AGREEMENT_TYPES)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_fast_path_agrees_with_fhirpathpy(
    name: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    resource = EXAMPLES[name]
    resource_type = resource["resourceType"]
    parameters = default_registry().for_type(resource_type)
    selected = 0
    for param in parameters.values():
        assert has_fast_path(param.expression), param.expression
        fast = evaluate_expression(param.expression, resource)
        slow = evaluate_expression(param.expression, resource, fhirpath=True)
        assert canonical(fast) == canonical(slow), param.code
        selected += bool(fast)
    assert selected >= 4  # the example exercises the parameters

    with caplog.at_level(logging.DEBUG, logger="fhir_server.search.extract"):
        fast_rows = rows(resource)
        cache = {}
        monkeypatch.setattr(
            extract,
            "_expression",
            lambda text: cache.get(text) or cache.setdefault(text, slow_expression(text)),
        )
        slow_rows = rows(resource)
    # No base parameter fails on a realistic resource.
    assert [r.getMessage() for r in caplog.records if "not indexed on" in r.getMessage()] == []
    for table in INDEX_TABLES:
        assert sort(fast_rows[table]) == sort(slow_rows[table]), table.__name__
    assert sum(len(v) for v in fast_rows.values()) >= 5


def test_every_base_expression_takes_the_fast_path() -> None:
    registry = default_registry()
    expressions = {p.expression for ps in registry.by_type.values() for p in ps.values()}
    expressions |= {
        c.expression for ps in registry.by_type.values() for p in ps.values() for c in p.component
    }
    assert [e for e in sorted(expressions) if not has_fast_path(e)] == []
