"""Sustained ingest of HL7 v2 messages over MLLP, against the floor of parsing them alone.

A hospital's discharge flow, per stay: ADT^A01 (admission), ADT^A02 (transfer), ADT^A03
(discharge, with a heart-failure diagnosis in DG1) and MDM^T02 (the discharge letter, a CDA of
a few kilobytes, with its sender and recipient PRT). The stays are spread over 10 MLLP
connections that send at once, each its stays' messages in order and each message after the
ACK of the previous one, to a `python -m fhir_server mllp` process on an empty database.

The floor, measured in the same run on the same messages: hl7apy parsing them alone (the
segments parsed the way the door asks hl7apy to, `er7.hl7apy_segments`), in one thread. The
ratio is the sustained time per message of the door (1 / throughput) over the mean parse time:
what reading, translating, validating, storing, indexing and journaling add to parsing.

    python -m bench.hl7v2_ingest --database-url sqlite:///data/ingest.db --messages 2000
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import typer
from sqlalchemy.engine import make_url

from adapters.hl7v2.er7 import hl7apy_segments, read_header
from bench.measure import RESULTS, machine, percentiles

CONNECTIONS = 10
GOAL = 3.0
START, END = b"\x0b", b"\x1c\r"
FACILITY = "CHU-B&123456789&M"
IPP = "CHU-B&1.2.250.1.999.2.1&ISO"
CDA = (
    '<ClinicalDocument xmlns="urn:hl7-org:v3"><code code="11490-0" codeSystem='
    '"2.16.840.1.113883.6.1"/><title>Lettre de liaison</title><component><structuredBody>'
    + "".join(
        f'<component><section><code code="{code}"/><text>{"Texte de la section. " * 30}</text>'
        "</section></component>"
        for code in ("42349-1", "42545-4", "10183-2", "18776-5")
    )
    + "</structuredBody></component></ClinicalDocument>"
)


def _segment(name: str, fields: dict[int, str]) -> str:
    first = 2 if name == "MSH" else 1
    return name + "|" + "|".join(fields.get(i, "") for i in range(first, max(fields) + 1))


def _msh(kind: str, control: str, when: str, version: str) -> str:
    return _segment(
        "MSH",
        {
            2: "^~\\&",
            3: "GAM",
            4: "CHU-B",
            5: "CPTS",
            6: "CPTS",
            7: when,
            9: kind,
            10: control,
            11: "P",
            12: version,
            17: "FRA",
            18: "UNICODE UTF-8",
        },
    )


def stay(number: int) -> list[bytes]:
    """The four messages of one hospital stay."""
    ipp, visit = f"{number:06d}", f"S{number:06d}"
    validated = number % 2 == 0
    ids = f"{ipp}^^^{IPP}^PI"
    if validated:
        ids += f"~2{number:014d}^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.10&ISO^INS"
    pid = _segment(
        "PID",
        {
            1: "1",
            3: ids,
            5: f"PATIENT{number}^CAMILLE^CAMILLE^^^^L",
            7: "19470512",
            8: "F" if number % 3 else "M",
            11: f"{number} rue de la République^^LYON^^69002^FRA^H",
            32: "VALI" if validated else "PROV",
        },
    )
    day = 1 + number % 20
    moments = [f"202403{day:02d}0930", f"202403{day + 1:02d}1400", f"202403{day + 6:02d}1100"]
    messages = []
    for step, (event, structure, unit) in enumerate(
        (
            ("A01", "ADT_A01", "Cardiologie^^^^^CHU-B&123456789&M^UF^^^4010"),
            ("A02", "ADT_A02", "Soins intensifs^^^^^CHU-B&123456789&M^UF^^^4020"),
            ("A03", "ADT_A03", "Cardiologie^^^^^CHU-B&123456789&M^UF^^^4010"),
        )
    ):
        when = moments[step]
        lines = [
            _msh(f"ADT^{event}^{structure}", f"{visit}-{step}", when, "2.5^FRA^2.11"),
            _segment("EVN", {2: when, 6: when}),
            pid,
            _segment("PV1", {1: "1", 2: "I", 3: f"^^^{FACILITY}", 19: f"{visit}^^^{FACILITY}^VN"}),
            _segment(
                "ZBE",
                {1: f"{visit}-M{step}^CHU-B^123456789", 2: when, 4: "INSERT", 5: "N", 7: unit},
            ),
        ]
        if event == "A03":
            lines.append(_segment("DG1", {1: "1", 3: "I500^Insuffisance cardiaque^I10", 6: "F"}))
        messages.append(("\r".join(lines) + "\r").encode())
    doctor = f"8{10000000000 + number % 50:011d}"
    document = base64.b64encode(CDA.encode()).decode()
    when = moments[2]
    lines = [
        _msh("MDM^T02^MDM_T02", f"{visit}-3", when, "2.6"),
        _segment("EVN", {2: when}),
        pid,
        _segment("PV1", {1: "1", 2: "I", 19: f"{visit}^^^{FACILITY}^VN"}),
        _segment("ORC", {1: "NW"}),
        _segment("OBR", {1: "1", 4: "11490-0^Lettre de liaison^LN"}),
        _segment(
            "TXA",
            {
                1: "1",
                2: "11490-0",
                3: "TEXT",
                4: when,
                12: f"{number}^^1.2.250.1.999.2.2^ISO",
                17: "AU",
            },
        ),
        _segment(
            "OBX",
            {
                1: "1",
                2: "ED",
                3: "11490-0^Lettre de liaison^LN",
                5: f"^text^XML^Base64^{document}",
                11: "F",
            },
        ),
        _segment(
            "PRT",
            {
                2: "UC",
                4: "SB^Send by^participation",
                5: f"{doctor}^MEDECIN^PAUL^^^^^^ASIP-SANTE-PS&1.2.250.1.71.4.2.1&ISO^D^^^IDNPS",
                15: "^^X.400^paul.medecin@chu-b.mssante.fr",
            },
        ),
        _segment(
            "PRT",
            {2: "UC", 4: "RCT^Result Copies To^participation", 15: "^^X.400^mt@cab.mssante.fr"},
        ),
    ]
    messages.append(("\r".join(lines) + "\r").encode())
    return messages


def floor(messages: list[bytes]) -> dict[str, Any]:
    """Milliseconds of hl7apy parsing each message, one thread (after one warm-up pass)."""
    for raw in messages[:8]:
        hl7apy_segments(read_header(raw))
    samples = []
    for raw in messages:
        header = read_header(raw)
        start = time.perf_counter()
        hl7apy_segments(header)
        samples.append((time.perf_counter() - start) * 1000)
    return {"per_message_ms": percentiles(samples), "total_s": round(sum(samples) / 1000, 3)}


def _listen(database_url: str) -> tuple[subprocess.Popen, int]:
    process = subprocess.Popen(
        [sys.executable, "-m", "fhir_server", "mllp", "--port", "0"],
        env={**os.environ, "DATABASE_URL": database_url, "FHIR_SECURITY_ENABLED": "false"},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    for line in process.stdout:
        if "MLLP listening on" in line:
            return process, int(line.strip().rsplit(":", 1)[1])
    raise RuntimeError(f"the MLLP listener did not start ({process.wait()})")


def _connection(
    port: int, messages: list[bytes], latencies: list[float], codes: Counter[str]
) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        pending = b""
        for raw in messages:
            start = time.perf_counter()
            sock.sendall(START + raw + END)
            while END not in pending:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("the listener closed the connection")
                pending += chunk
            ack, _, pending = pending.partition(END)
            latencies.append((time.perf_counter() - start) * 1000)
            msa = next(s for s in ack.split(b"\r") if s.startswith(b"MSA"))
            codes[msa.split(b"|")[1].decode()] += 1


def ingest(database_url: str, stays: list[list[bytes]]) -> dict[str, Any]:
    process, port = _listen(database_url)
    try:
        batches: list[list[bytes]] = [[] for _ in range(CONNECTIONS)]
        for number, messages in enumerate(stays):
            batches[number % CONNECTIONS].extend(messages)
        latencies: list[float] = []
        codes: Counter[str] = Counter()
        threads = [
            threading.Thread(target=_connection, args=(port, batch, latencies, codes))
            for batch in batches
        ]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - start
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
    total = sum(len(s) for s in stays)
    return {
        "wall_s": round(wall, 3),
        "throughput_per_s": round(total / wall, 1),
        "latency_ms": percentiles(latencies),
        "acks": dict(codes),
    }


def run_benchmark(database_url: str, messages: int) -> dict[str, Any]:
    stays = [stay(number) for number in range(max(1, messages // 4))]
    sent = [raw for s in stays for raw in s]
    parse = floor(sent)
    result = ingest(database_url, stays)
    per_message_ms = 1000 / result["throughput_per_s"]
    ratio = per_message_ms / parse["per_message_ms"]["mean"]
    backend = make_url(database_url).get_backend_name()
    report = {
        "database": backend,
        **machine(),
        "messages": len(sent),
        "connections": CONNECTIONS,
        "mix": dict(Counter(read_header(raw).message_type for raw in sent)),
        "floor_hl7apy_parse": parse,
        "ingest_mllp": result,
        "ratio": {
            "door_ms_per_message": round(per_message_ms, 3),
            "parse_ms_per_message": parse["per_message_ms"]["mean"],
            "door_over_parse": round(ratio, 2),
            "goal": GOAL,
            "reached": ratio <= GOAL,
        },
    }
    return report


def main(
    database_url: str = typer.Option(..., help="An empty database (SQLite or PostgreSQL)."),
    messages: int = typer.Option(2000, help="Messages to send (4 per stay)."),
) -> None:
    report = run_benchmark(database_url, messages)
    backend = report["database"]
    path = RESULTS / f"hl7v2-ingest-{backend}.json"
    Path(path).write_text(json.dumps(report, indent=1) + "\n")
    typer.echo(json.dumps(report["ratio"]))
    typer.echo(f"written {path}")


if __name__ == "__main__":
    typer.run(main)
