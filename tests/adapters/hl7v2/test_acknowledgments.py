"""What the door answers: AA when stored, AE with an ERR for content it refuses (nothing
stored), AR for messages it does not take; resent messages, control ids, character sets,
escape sequences and segment ends as engines send them; the journal and its retention."""

from __future__ import annotations

from datetime import timedelta

import pytest

from adapters.hl7v2 import DOOR, plugin, retention
from fhir_server.engine.versioning import now
from fhir_server.storage import journal
from tests.adapters.hl7v2.conftest import Door
from tests.adapters.hl7v2.messages import DUPONT, IPP_SYSTEM, Person, adt

SENDER = "GAM|CHU-T"


def replace(message: bytes, old: str, new: str) -> bytes:
    assert old.encode() in message
    return message.replace(old.encode(), new.encode())


def entry(door: Door, control_id: str) -> journal.JournalEntry | None:
    with door.server.database.transaction(write=False) as conn:
        return journal.find(conn, DOOR, SENDER, control_id)


@pytest.mark.parametrize(
    ("change", "code", "error", "location"),
    [
        (("ADT^A01^ADT_A01", "ORU^R01^ORU_R01"), "AR", "200", "MSH^1^9^1^1"),
        (("ADT^A01^ADT_A01", "ADT^A28^ADT_A05"), "AR", "201", "MSH^1^9^1^2"),
        (("|2.5^FRA^2.11|", "|2.3|"), "AR", "203", "MSH^1^12^1"),
        (("|9|P|", "|9|X|"), "AR", "202", "MSH^1^11^1"),
        (("|UNICODE UTF-8|", "|UNICODE UTF-16|"), "AR", "103", "MSH^1^18^1"),
        (("\rEVN|", "\rXYZ|1\rEVN|"), "AE", "100", ""),
        (("|19480312|", "|1948-03-12|"), "AE", "102", "PID^1^7^1^1"),
        (("|V100^^^", "|^^^"), "AE", "101", "PV1^1^19^1"),
        (("~248033512345678^", "~12345^"), "AE", "207", "PID^1"),  # FR Core: INS of 15
    ],
)
def test_refused_messages_change_nothing(
    door: Door, change: tuple[str, str], code: str, error: str, location: str
) -> None:
    message = replace(adt("A01", "9", movement="M1"), *change)
    ack = door.send(message)
    assert (ack.code, ack.control_id, ack.error_code) == (code, "9", error), ack.raw
    assert ack.error_location == location
    assert ack.segments["ERR"][4] == "E" and ack.error_text
    assert door.versions() == 0  # nothing stored, not even the hospital Organization
    kept = entry(door, "9")
    assert kept is not None and kept.raw == message and kept.response == ack.raw
    assert kept.outcome == ("rejected" if code == "AR" else "error")


def test_a_refusal_explains_the_fhir_problem(door: Door) -> None:
    ack = door.send(replace(adt("A01", "9", movement="M1"), "~248033512345678^", "~12345^"))
    assert ack.error_text.startswith("Refused by the FHIR server (422): Patient")
    assert "An INS has 15 characters" in ack.error_text


def test_a_message_without_msh_is_rejected(door: Door) -> None:
    ack = door.send(b"PID|1||000101^^^X^PI\r")
    assert ack.code == "AR" and ack.control_id == ""
    assert ack.error_code == "100" and "MSH" in ack.error_text
    assert door.versions() == 0


def test_a_missing_pid_is_refused(door: Door) -> None:
    message = adt("A01", "9", movement="M1")
    message = b"\r".join(s for s in message.split(b"\r") if not s.startswith(b"PID"))
    ack = door.send(message)
    assert (ack.code, ack.error_code, ack.error_location) == ("AE", "100", "PID^1")


def test_resent_message_gets_the_same_ack_and_changes_nothing(door: Door) -> None:
    message = adt("A01", "1", movement="M1")
    first = door.send(message)
    before = door.versions()
    # Sent again, even with another sending time (MSH-7), as engines do after a timeout
    again = door.send(replace(message, "CHU-T|20240306110000||", "CHU-T|20240306110500||"))
    assert again.raw == first.raw
    assert door.versions() == before


def test_another_message_under_an_accepted_control_id_is_refused(door: Door) -> None:
    assert door.send(adt("A01", "1", movement="M1")).code == "AA"
    before = door.versions()
    ack = door.send(adt("A03", "1", movement="M2"))
    assert (ack.code, ack.error_code, ack.error_location) == ("AE", "205", "MSH^1^10^1")
    assert door.versions() == before
    assert door.one("Encounter")["status"] == "in-progress"
    assert entry(door, "1").outcome == "accepted"  # the accepted message keeps its entry


def test_a_refused_message_sent_again_once_fixed_is_processed(door: Door) -> None:
    broken = replace(adt("A01", "7", movement="M1"), "|19480312|", "|1948-03-12|")
    assert door.send(broken).code == "AE"
    assert door.send(adt("A01", "7", movement="M1")).code == "AA"
    assert entry(door, "7").outcome == "accepted"
    assert len(door.search("Encounter")) == 1


def test_replay_receives_refused_messages_again(door: Door) -> None:
    cancel = adt("A11", "5", movement=None)
    ack = door.send(cancel)
    assert (ack.code, ack.error_code) == ("AE", "204")  # nothing to cancel yet
    assert door.send(adt("A01", "4", movement=None, when="20240306100000")).code == "AA"
    counts = door.receiver.replay(now() - timedelta(hours=1), frozenset({"error", "rejected"}))
    assert counts == {"AA": 1}
    assert door.one("Encounter")["status"] == "cancelled"
    assert entry(door, "5").outcome == "accepted"


@pytest.mark.parametrize(
    ("charset", "encoding"), [("8859/1", "latin-1"), ("UNICODE UTF-8", "utf-8")]
)
def test_character_sets(door: Door, charset: str, encoding: str) -> None:
    person = Person(**{**DUPONT.__dict__, "family": "LEFÈVRE", "given": "HÉLÈNE"})
    message = adt("A01", "1", person=person, movement="M1", charset=charset)
    assert "HÉLÈNE".encode(encoding) in message
    ack = door.send(message, encoding)
    assert ack.code == "AA"
    assert ack.msh(18) == charset  # the ACK is written in the message's character set
    patient = door.one("Patient", identifier=f"{IPP_SYSTEM}|{DUPONT.ipp}")
    assert patient["name"][0] == {"use": "official", "family": "LEFÈVRE", "given": ["HÉLÈNE"]}


def test_utf8_declared_as_8859_1_is_read_as_utf8(door: Door) -> None:
    person = Person(**{**DUPONT.__dict__, "given": "HÉLÈNE"})
    message = adt("A01", "1", person=person, movement="M1")
    assert door.send(replace(message, "|UNICODE UTF-8|", "|8859/1|"), "latin-1").code == "AA"
    assert door.one("Patient")["name"][0]["given"] == ["HÉLÈNE"]


def test_an_error_text_is_written_in_the_message_character_set(door: Door) -> None:
    message = replace(adt("A01", "9", movement="M1", charset="8859/1"), "ADT^A01", "ADT^A99")
    ack = door.send(message, "latin-1")
    assert ack.code == "AR" and ack.msh(18) == "8859/1"
    ack.raw.decode("latin-1")


def test_escape_sequences_and_repetitions(door: Door) -> None:
    message = adt("A01", "1", movement="M1")
    message = replace(message, "DUPONT^HELENE^HELENE", "D\\XC3A9\\PONT^HELENE^HELENE MARIE")
    message = replace(message, "12 rue des Lilas^^", "12 rue Lilas \\T\\ Roses^B\\S\\2^")
    message = replace(message, "^^^^^^^^^0472000000", "^^^^^^^^^0472000000~^NET^Internet^h@x.fr")
    assert door.send(message).code == "AA"
    patient = door.one("Patient")
    assert patient["name"][0]["family"] == "DéPONT"
    assert patient["name"][0]["given"] == ["HELENE", "MARIE"]
    assert patient["address"][0]["line"] == ["12 rue Lilas & Roses", "B^2"]
    assert patient["telecom"] == [
        {"system": "phone", "value": "0472000000", "use": "home"},
        {"system": "email", "value": "h@x.fr"},
    ]


@pytest.mark.parametrize("separator", ["\n", "\r\n"])
def test_segments_ended_by_line_feeds(door: Door, separator: str) -> None:
    assert door.send(adt("A01", "1", movement="M1", separator=separator)).code == "AA"
    assert door.one("Encounter")["status"] == "in-progress"


def test_journal_keeps_every_message_with_its_ack_until_its_retention(door: Door) -> None:
    message = adt("A01", "1", movement="M1")
    ack = door.send(message)
    kept = entry(door, "1")
    assert kept.raw == message and kept.response == ack.raw
    assert kept.message_type == "ADT^A01" and kept.outcome == "accepted"
    days = door.receiver.settings.retention_days
    with door.server.database.transaction(write=True) as conn:
        old = now() - timedelta(days=days + 1)
        journal.record(conn, DOOR, SENDER, "0", old, "ADT^A01", b"MSH|old", b"MSA|AA", "accepted")
    assert retention.purge(door.server, days) == 1
    assert entry(door, "0") is None
    assert entry(door, "1") is not None


def test_the_retention_is_a_periodic_job_of_the_server(door: Door) -> None:
    before = len(door.server.periodic_jobs)
    plugin.register(door.server)
    try:
        [job] = door.server.periodic_jobs[before:]
        assert (job.name, job.interval) == (plugin.RETENTION_JOB, 3600)
        assert door.send(adt("A01", "1", movement="M1")).code == "AA"
        job.run()  # nothing is past its retention yet
        assert entry(door, "1") is not None
    finally:
        del door.server.periodic_jobs[before:]
