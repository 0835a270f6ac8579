"""HL7 v2 messages of the tests, in the shape IHE PAM France 2.11 gives them. The shared
fixtures (`../shared/fixtures/hl7v2`) are read with `shared_fixture`; these vary what the
fixtures do not: events, movements, cancellations, diagnoses, charsets."""

from __future__ import annotations

import re
from dataclasses import dataclass

from tests.shared import shared_fixture

FACILITY = "CHU-T&123456789&M"  # a hospital identified by its FINESS, as PAM France sends it
FINESS = "123456789"
IPP_AUTHORITY = "CHU-T&1.2.250.1.999.1.1&ISO"
IPP_SYSTEM = "urn:oid:1.2.250.1.999.1.1"
LOCAL_SYSTEM = "https://cpts-fhir.org/fhir/sid/hl7v2-authority/123456789"
INS_TEST = "urn:oid:1.2.250.1.213.1.4.10"
STRUCTURES = {
    "A01": "ADT_A01",
    "A02": "ADT_A02",
    "A03": "ADT_A03",
    "A04": "ADT_A01",
    "A05": "ADT_A05",
    "A08": "ADT_A01",
    "A11": "ADT_A09",
    "A12": "ADT_A12",
    "A13": "ADT_A01",
    "A40": "ADT_A39",
    "Z99": "ADT_A01",
}


@dataclass(frozen=True)
class Person:
    ipp: str
    ins: str
    family: str
    given: str
    birth: str
    sex: str
    reliability: str = "VALI"


DUPONT = Person("000101", "248033512345678", "DUPONT", "HELENE", "19480312", "F")
MARTIN = Person("000102", "180037512345699", "MARTIN", "PAUL", "19800307", "M")


def segment(name: str, fields: dict[int, str]) -> str:
    """A segment from its fields by position (MSH: position 2 is the encoding characters)."""
    last = max(fields)
    first = 2 if name == "MSH" else 1
    return name + "|" + "|".join(fields.get(i, "") for i in range(first, last + 1))


def msh(code: str, event: str, structure: str, control: str, when: str, charset: str) -> str:
    return segment(
        "MSH",
        {
            2: "^~\\&",
            3: "GAM",
            4: "CHU-T",
            5: "DPI",
            6: "CHU-T",
            7: when,
            9: f"{code}^{event}^{structure}",
            10: control,
            11: "P",
            12: "2.5^FRA^2.11",
            17: "FRA",
            18: charset,
            19: "FR",
            21: "2.11^IHE_FRANCE-2.11-PAM",
        },
    )


def pid(person: Person) -> str:
    ids = f"{person.ipp}^^^{IPP_AUTHORITY}^PI"
    if person.ins:
        ids += f"~{person.ins}^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.10&ISO^INS"
    return segment(
        "PID",
        {
            1: "1",
            3: ids,
            5: f"{person.family}^{person.given}^{person.given}^^^^L",
            7: person.birth,
            8: person.sex,
            11: "12 rue des Lilas^^LYON^^69003^FRA^H",
            13: "^PRN^PH^^^^^^^^^0472000000",
            32: person.reliability,
        },
    )


def adt(
    event: str,
    control: str,
    person: Person = DUPONT,
    visit: str = "V100",
    movement: str | None = None,
    action: str = "INSERT",
    when: str = "20240306110000",
    original: str = "",
    unit: tuple[str, str] = ("Cardiologie", "4010"),
    patient_class: str = "I",
    diagnoses: tuple[tuple[str, str], ...] = (),
    merged: Person | None = None,
    disposition: str = "",
    charset: str = "UNICODE UTF-8",
    separator: str = "\r",
) -> bytes:
    lines = [
        msh("ADT", event, STRUCTURES[event], control, when, charset),
        segment("EVN", {2: when, 6: when}),
        pid(person),
    ]
    if merged is not None:
        lines.append(segment("MRG", {1: f"{merged.ipp}^^^{IPP_AUTHORITY}^PI"}))
    lines.append(
        segment(
            "PV1",
            {
                1: "1",
                2: patient_class,
                3: f"^^^{FACILITY}",
                19: f"{visit}^^^{FACILITY}^VN",
                36: disposition,
            },
        )
    )
    if movement is not None:
        lines.append(
            segment(
                "ZBE",
                {
                    1: f"{movement}^CHU-T^{FINESS}",
                    2: when,
                    4: action,
                    5: "N",
                    6: original,
                    7: f"{unit[0]}^^^^^{FACILITY}^UF^^^{unit[1]}",
                    9: "HMS",
                },
            )
        )
    for index, (code, label) in enumerate(diagnoses, 1):
        lines.append(segment("DG1", {1: str(index), 3: f"{code}^{label}^I10", 6: "F"}))
    text = separator.join(lines) + separator
    return text.encode("latin-1" if charset == "8859/1" else "utf-8")


def fixture(name: str, control: str | None = None) -> bytes:
    """A shared fixture as a hospital sends it, with a control id of its own if given (the
    published CI-SIS examples all use 015)."""
    raw = shared_fixture("hl7v2", f"{name}.er7").read_bytes()
    if control is None:
        return raw
    header, end, rest = re.split(rb"(\r\n|\n|\r)", raw, maxsplit=1)
    fields = header.split(b"|")
    fields[9] = control.encode()
    return b"|".join(fields) + end + rest
