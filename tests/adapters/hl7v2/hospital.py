"""The hospital's side of the door, as its integration engine behaves: MLLP frames out over a
real socket (optionally TLS with a client certificate), ACKs back, parsed for assertions."""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass

START, END = b"\x0b", b"\x1c\r"


@dataclass
class Ack:
    raw: bytes
    segments: dict[str, list[str]]

    @classmethod
    def parse(cls, raw: bytes, encoding: str = "utf-8") -> Ack:
        segments = {}
        for line in raw.decode(encoding).split("\r"):
            if line:
                segments[line[:3]] = line.split("|")
        return cls(raw, segments)

    @property
    def code(self) -> str:
        return self.segments["MSA"][1]

    @property
    def control_id(self) -> str:
        return self.segments["MSA"][2]

    @property
    def error_code(self) -> str | None:
        return self.segments["ERR"][3].split("^")[0] if "ERR" in self.segments else None

    @property
    def error_location(self) -> str | None:
        return self.segments["ERR"][2] if "ERR" in self.segments else None

    @property
    def error_text(self) -> str:
        return self.segments["ERR"][8] if "ERR" in self.segments else ""

    def msh(self, position: int) -> str:
        """MSH-n of the ACK (MSH-1 is the field separator)."""
        return self.segments["MSH"][position - 1]


class Engine:
    """One MLLP connection of the hospital's integration engine."""

    def __init__(
        self, port: int, context: ssl.SSLContext | None = None, host: str = "127.0.0.1"
    ) -> None:
        raw = socket.create_connection((host, port), timeout=60)
        self.socket = context.wrap_socket(raw, server_hostname=host) if context else raw
        self.pending = b""

    def send(self, message: bytes, encoding: str = "utf-8") -> Ack:
        self.socket.sendall(START + message + END)
        return Ack.parse(self.receive(), encoding)

    def receive(self) -> bytes:
        while END not in self.pending:
            chunk = self.socket.recv(65536)
            if not chunk:
                raise ConnectionError("the listener closed the connection")
            self.pending += chunk
        frame, _, self.pending = self.pending.partition(END)
        return frame.removeprefix(START)

    def close(self) -> None:
        self.socket.close()
