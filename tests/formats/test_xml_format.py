"""FHIR XML codec: round trips with JSON, exact parsing, element order and refused documents."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from lxml import etree

from fhir_server.errors import FhirError
from fhir_server.formats.xml_format import parse_xml, to_xml
from fhir_server.model.structure import check_resource
from tests.shared import SHARED_FIXTURES, shared_fixture

F = "{http://hl7.org/fhir}"
DIV = '<div xmlns="http://www.w3.org/1999/xhtml"><p>Peter &amp; <b class="x">Jim</b><br/></p></div>'

PATCH_TESTS = SHARED_FIXTURES / "fhir-test-cases" / "r4-fhirpath-patch-tests.xml"


def exact(value: Any) -> Any:
    """`value` with the type and text of every leaf made visible: `==` alone holds True equal to
    1 and Decimal("71.50") equal to Decimal("71.5")."""
    if isinstance(value, dict):
        return {key: exact(item) for key, item in value.items()}
    if isinstance(value, list):
        return [exact(item) for item in value]
    return (type(value).__name__, str(value))


def round_trip(resource: dict[str, Any]) -> dict[str, Any]:
    check_resource(resource)  # the examples are valid resources, as stored by the server
    back = parse_xml(to_xml(resource))
    assert exact(back) == exact(resource)
    return back


def children(el: etree._Element) -> list[str]:
    return [etree.QName(child).localname for child in el]


# ------------------------------------------------------------------------------- round trips

PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "id": "p1",
    "meta": {"versionId": "3", "lastUpdated": "2024-05-01T10:00:00.000+02:00"},
    "text": {"status": "generated", "div": DIV},
    "contained": [{"resourceType": "Organization", "id": "org1", "name": "Clinique du Lac"}],
    "extension": [
        {
            "url": "http://example.org/fhir/StructureDefinition/weight",
            "valueDecimal": Decimal("71.50"),
        },
        {
            "url": "http://example.org/fhir/StructureDefinition/nested",
            "extension": [{"url": "flag", "valueBoolean": False}],
        },
    ],
    "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.8", "value": "1234567890123"}],
    "active": True,
    "name": [
        {
            "id": "n1",
            "use": "official",
            "family": "Chalmers",
            "_family": {"extension": [{"url": "http://example.org/own", "valueString": "Ch"}]},
            "given": ["Peter", None, "James"],
            "_given": [
                None,
                {
                    "extension": [
                        {
                            "url": "http://hl7.org/fhir/StructureDefinition/iso21090-EN-qualifier",
                            "valueCode": "CL",
                        }
                    ]
                },
                {"id": "g3"},
            ],
        },
        {"given": ["Jim", "Jimmy"]},
    ],
    "gender": "male",
    "birthDate": "1974-12-25",
    "_birthDate": {
        "id": "bd",
        "extension": [
            {
                "url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
                "valueDateTime": "1974-12-25T14:35:45-05:00",
            }
        ],
    },
    "multipleBirthInteger": 2,
    "managingOrganization": {"reference": "#org1"},
}


def test_patient_round_trip_keeps_primitive_extensions_and_alignment() -> None:
    back = round_trip(PATIENT)
    assert back["name"][0]["given"] == ["Peter", None, "James"]
    assert back["name"][0]["_given"][0] is None
    assert "_given" not in back["name"][1]  # no extension at all: no `_given` array
    assert back["text"]["div"] == DIV


def test_patient_xml_shape() -> None:
    root = etree.fromstring(to_xml(PATIENT))
    assert root.tag == F + "Patient"
    name = root.find(F + "name")
    assert name.get("id") == "n1"
    givens = name.findall(F + "given")
    assert [g.get("value") for g in givens] == ["Peter", None, "James"]
    assert givens[1].find(F + "extension").get("url").endswith("iso21090-EN-qualifier")
    assert givens[2].get("id") == "g3"
    assert root.find(f"{F}contained/{F}Organization/{F}name").get("value") == "Clinique du Lac"
    div = root.find(f"{F}text/{{http://www.w3.org/1999/xhtml}}div")
    assert div is not None and div.find("{http://www.w3.org/1999/xhtml}p") is not None
    assert root.find(f"{F}active").get("value") == "true"


def test_observation_decimal_precision_kept() -> None:
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
        "valueQuantity": {
            "value": Decimal("71.50"),
            "unit": "kg",
            "system": "http://unitsofmeasure.org",
            "code": "kg",
        },
        "component": [
            {"code": {"text": "ratio"}, "valueInteger": -3},
            {"code": {"text": "exp"}, "valueQuantity": {"value": Decimal("1.0E-7")}},
        ],
    }
    xml = to_xml(observation)
    assert b'<value value="71.50"/>' in xml
    back = round_trip(observation)
    value = back["valueQuantity"]["value"]
    assert isinstance(value, Decimal) and str(value) == "71.50"


def test_float_and_int_decimals_are_written_as_numbers() -> None:
    quantity = {"resourceType": "Observation", "status": "final", "code": {"text": "w"}}
    xml = to_xml({**quantity, "valueQuantity": {"value": 0.5}})
    assert b'<value value="0.5"/>' in xml
    assert parse_xml(xml)["valueQuantity"]["value"] == Decimal("0.5")
    assert b'<value value="72"/>' in to_xml({**quantity, "valueQuantity": {"value": 72}})


def test_bundle_with_entries_round_trip() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "batch-response",
        "link": [{"relation": "self", "url": "http://example.org/fhir"}],
        "entry": [
            {
                "fullUrl": "http://example.org/fhir/Patient/p1",
                "resource": {"resourceType": "Patient", "id": "p1", "active": True},
                "response": {"status": "201 Created", "location": "Patient/p1/_history/1"},
            },
            {
                "response": {
                    "status": "400 Bad Request",
                    "outcome": {
                        "resourceType": "OperationOutcome",
                        "issue": [{"severity": "error", "code": "invalid", "diagnostics": "no"}],
                    },
                }
            },
        ],
    }
    round_trip(bundle)
    root = etree.fromstring(to_xml(bundle))
    entry = root.findall(F + "entry")
    assert children(entry[0]) == ["fullUrl", "resource", "response"]
    assert children(entry[0].find(F + "resource")) == ["Patient"]
    assert entry[1].find(f"{F}response/{F}outcome/{F}OperationOutcome") is not None


def test_parameters_with_nested_parts_and_resource_round_trip() -> None:
    parameters = {
        "resourceType": "Parameters",
        "parameter": [
            {
                "name": "operation",
                "part": [
                    {"name": "type", "valueCode": "add"},
                    {"name": "path", "valueString": "Patient"},
                    {
                        "name": "value",
                        "part": [
                            {"name": "use", "valueCode": "official"},
                            {"name": "period", "valuePeriod": {"start": "2020-01-01"}},
                        ],
                    },
                ],
            },
            {
                "name": "patient",
                "resource": {
                    "resourceType": "Patient",
                    "id": "p2",
                    "text": {"status": "generated", "div": DIV},
                    "name": [{"family": "Durand", "given": ["Bénédicte"]}],
                },
            },
        ],
    }
    round_trip(parameters)


def test_strings_with_line_breaks_and_markup_survive() -> None:
    text = "line 1\nline 2\ttab\r\nquote \" apostrophe ' <b>&amp;</b>"
    round_trip({"resourceType": "Patient", "name": [{"text": text}]})


def test_narrative_div_is_stable_over_round_trips() -> None:
    div = (
        '<div xmlns="http://www.w3.org/1999/xhtml">\n  <table class="t"><tr><td>a &lt; b</td>'
        "<td>caf\u00e9 &#8594;</td></tr></table>\n</div>"
    )
    patient = {"resourceType": "Patient", "text": {"status": "generated", "div": div}}
    once = parse_xml(to_xml(patient))["text"]["div"]
    assert parse_xml(to_xml({**patient, "text": {"status": "generated", "div": once}})) == {
        **patient,
        "text": {"status": "generated", "div": once},
    }
    assert once.startswith('<div xmlns="http://www.w3.org/1999/xhtml">')
    assert "caf\u00e9 \u2192" in once and "a &lt; b" in once


# --------------------------------------------------------------------------- exact parsing

HAND_WRITTEN = b"""<?xml version="1.0" encoding="UTF-8"?>
<!-- a comment before the root -->
<Patient xmlns="http://hl7.org/fhir" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
         xsi:schemaLocation="http://hl7.org/fhir ../patient.xsd">
  <id value="p1"/>
  <text>
    <status value="generated"/>
    <div xmlns="http://www.w3.org/1999/xhtml"><p>Jim <b>Chalmers</b></p></div>
  </text>
  <contained>
    <Organization>
      <id value="org1"/>
      <active value="false"/>
      <name value="Clinique du Lac"/>
    </Organization>
  </contained>
  <extension url="http://example.org/fhir/StructureDefinition/weight">
    <valueDecimal value="71.50"/>
  </extension>
  <active value="true"/>
  <name id="n1">
    <!-- comments are ignored anywhere -->
    <use value="official"/>
    <family value="Chalmers"/>
    <given value="Peter"/>
    <given>
      <extension url="http://hl7.org/fhir/StructureDefinition/iso21090-EN-qualifier">
        <valueCode value="CL"/>
      </extension>
    </given>
    <given id="g3" value="James"/>
  </name>
  <gender value="male"/>
  <birthDate value="1974-12-25">
    <extension url="http://hl7.org/fhir/StructureDefinition/patient-birthTime">
      <valueDateTime value="1974-12-25T14:35:45-05:00"/>
    </extension>
  </birthDate>
  <multipleBirthInteger value="2"/>
  <managingOrganization>
    <reference value="#org1"/>
  </managingOrganization>
</Patient>
"""

HAND_WRITTEN_JSON = {
    "resourceType": "Patient",
    "id": "p1",
    "text": {
        "status": "generated",
        "div": '<div xmlns="http://www.w3.org/1999/xhtml"><p>Jim <b>Chalmers</b></p></div>',
    },
    "contained": [
        {"resourceType": "Organization", "id": "org1", "active": False, "name": "Clinique du Lac"}
    ],
    "extension": [
        {
            "url": "http://example.org/fhir/StructureDefinition/weight",
            "valueDecimal": Decimal("71.50"),
        }
    ],
    "active": True,
    "name": [
        {
            "id": "n1",
            "use": "official",
            "family": "Chalmers",
            "given": ["Peter", None, "James"],
            "_given": [
                None,
                {
                    "extension": [
                        {
                            "url": "http://hl7.org/fhir/StructureDefinition/iso21090-EN-qualifier",
                            "valueCode": "CL",
                        }
                    ]
                },
                {"id": "g3"},
            ],
        }
    ],
    "gender": "male",
    "birthDate": "1974-12-25",
    "_birthDate": {
        "extension": [
            {
                "url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
                "valueDateTime": "1974-12-25T14:35:45-05:00",
            }
        ]
    },
    "multipleBirthInteger": 2,
    "managingOrganization": {"reference": "#org1"},
}


def test_hand_written_xml_gives_exact_json() -> None:
    parsed = parse_xml(HAND_WRITTEN)
    assert exact(parsed) == exact(HAND_WRITTEN_JSON)
    check_resource(parsed)


def test_div_keeps_only_the_namespaces_it_uses() -> None:
    # xmlns:xsi is in scope on the root but unused by the narrative: not copied into the string
    assert "xsi" not in parse_xml(HAND_WRITTEN)["text"]["div"]


# ---------------------------------------------------------------------------- element order


def test_output_follows_fhir_order_whatever_the_json_key_order() -> None:
    patient = {
        "managingOrganization": {"reference": "Organization/o1"},
        "gender": "female",
        "name": [{"given": ["Anne", "Marie"], "family": "Martin", "use": "official"}],
        "extension": [{"valueString": "v", "url": "http://example.org/e", "id": "e1"}],
        "active": True,
        "meta": {"lastUpdated": "2024-01-01T00:00:00Z", "versionId": "1"},
        "id": "p9",
        "resourceType": "Patient",
    }
    root = etree.fromstring(to_xml(patient))
    assert children(root) == [
        "id",
        "meta",
        "extension",
        "active",
        "name",
        "gender",
        "managingOrganization",
    ]
    assert children(root.find(F + "meta")) == ["versionId", "lastUpdated"]
    assert children(root.find(F + "name")) == ["use", "family", "given", "given"]
    extension = root.find(F + "extension")
    assert dict(extension.attrib) == {"id": "e1", "url": "http://example.org/e"}
    assert children(extension) == ["valueString"]


def test_document_is_utf8_with_declaration() -> None:
    xml = to_xml({"resourceType": "Patient", "name": [{"family": "Dupré"}]})
    assert xml.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    assert "Dupré".encode() in xml


def test_unknown_json_key_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="bogus"):
        to_xml({"resourceType": "Patient", "name": [{"family": "X", "bogus": 1}]})
    with pytest.raises(ValueError):
        to_xml({"resourceType": "NotAResource"})


# ---------------------------------------------------------------------------- bad documents

NS = 'xmlns="http://hl7.org/fhir"'
BAD_DOCUMENTS = {
    "malformed": (f"<Patient {NS}><id value='x'></Patient>", None),
    "empty body": ("", None),
    "no namespace": ('<Patient><id value="x"/></Patient>', "Patient"),
    "wrong namespace": ('<Patient xmlns="http://hl7.org/fhir/x"/>', "Patient"),
    "not a resource": (f"<HumanName {NS}/>", "HumanName"),
    "unknown element": (f'<Patient {NS}><nickname value="x"/></Patient>', "Patient.nickname"),
    "unknown attribute": (f'<Patient {NS}><name foo="1"/></Patient>', "Patient.name[0]"),
    "value on complex": (f'<Patient {NS}><name value="1"/></Patient>', "Patient.name[0]"),
    "element in other namespace": (
        f'<Patient {NS}><x:active xmlns:x="urn:x" value="true"/></Patient>',
        "Patient",
    ),
    "div outside xhtml": (
        f'<Patient {NS}><text><status value="generated"/><div/></text></Patient>',
        "Patient.text.div",
    ),
    "out of order": (
        f'<Patient {NS}><gender value="male"/><active value="true"/></Patient>',
        "Patient.active",
    ),
    "repeated single element": (
        f'<Patient {NS}><gender value="male"/><gender value="female"/></Patient>',
        "Patient.gender",
    ),
    "text content": (f"<Patient {NS}><active>true</active></Patient>", "Patient.active"),
    "bad boolean": (f'<Patient {NS}><active value="yes"/></Patient>', "Patient.active"),
    "bad integer": (
        f'<Patient {NS}><multipleBirthInteger value="2.0"/></Patient>',
        "Patient.multipleBirthInteger",
    ),
    "bad decimal": (
        f'<Observation {NS}><valueQuantity><value value="NaN"/></valueQuantity></Observation>',
        "Observation.valueQuantity.value",
    ),
    "empty primitive": (
        f"<Patient {NS}><name><given/></name></Patient>",
        "Patient.name[0].given[0]",
    ),
    "two contained in one wrapper": (
        f"<Patient {NS}><contained><Basic/><Basic/></contained></Patient>",
        "Patient.contained[0]",
    ),
    "unknown contained type": (
        f"<Patient {NS}><contained><Nope/></contained></Patient>",
        "Patient.contained[0]",
    ),
    "doctype": (f"<!DOCTYPE Patient><Patient {NS}/>", None),
    "external entity (XXE)": (
        '<?xml version="1.0"?><!DOCTYPE Patient [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        f'<Patient {NS}><name><family value="&x;"/></name></Patient>',
        None,
    ),
    "entity expansion": (
        '<!DOCTYPE Patient [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        f'<Patient {NS}><id value="&b;"/></Patient>',
        None,
    ),
}


@pytest.mark.parametrize(("document", "expression"), BAD_DOCUMENTS.values(), ids=BAD_DOCUMENTS)
def test_bad_document_is_a_400(document: str, expression: str | None) -> None:
    with pytest.raises(FhirError) as caught:
        parse_xml(document.encode())
    assert caught.value.status == 400
    assert caught.value.issues[0].expression == expression


def test_doctype_in_a_utf16_document_is_refused() -> None:
    document = f'<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE Patient><Patient {NS}/>'
    with pytest.raises(FhirError, match="DOCTYPE") as caught:
        parse_xml(document.encode("utf-16"))
    assert caught.value.status == 400


def test_error_names_the_line() -> None:
    with pytest.raises(FhirError, match=r"line 3"):
        parse_xml(f'<Patient {NS}>\n  <active value="true"/>\n  <bogus/>\n</Patient>'.encode())


# ------------------------------------------------------- official FHIRPath patch test cases


def patch_test_resources() -> list[Any]:
    """Every resource in the <input>, <output> and <diff> of the official FHIRPath Patch tests."""
    if not PATCH_TESTS.exists():
        return [pytest.param(None, id="fixture-absent")]
    params = []
    for number, case in enumerate(etree.parse(str(PATCH_TESTS)).getroot().iterchildren("case")):
        for part in case.iterchildren("input", "output", "diff"):
            for resource in part.iterchildren(etree.Element):
                name = f"{number:02d} {case.get('name')} {part.tag}"
                params.append(pytest.param(etree.tostring(resource), id=name))
    return params


@pytest.mark.parametrize("document", patch_test_resources())
def test_official_patch_test_resources(document: bytes | None) -> None:
    if document is None:
        shared_fixture("fhir-test-cases", "r4-fhirpath-patch-tests.xml")
    resource = parse_xml(document)
    check_resource(resource)
    assert exact(parse_xml(to_xml(resource))) == exact(resource)
