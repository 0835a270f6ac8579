"""MLLP (HL7 v2 Minimal Lower Layer Protocol) listener: asyncio TCP, optionally TLS with
required client certificates.

Each message travels framed <VT> message <FS><CR>; its ACK goes back framed the same way on
the same connection, in order. A connection carries any number of messages, many connections
are served at once; the engine work of each message runs in a thread pool, off the event loop.
Bytes outside a frame (the <CR> after <FS> included) are ignored; a frame larger than the
configured maximum closes the connection (the sender will send again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from concurrent.futures import ThreadPoolExecutor

from adapters.hl7v2.receiver import Receiver
from adapters.hl7v2.settings import Hl7v2Settings

START, END, CARRIAGE_RETURN = b"\x0b", b"\x1c", b"\r"
log = logging.getLogger(__name__)


def frame(message: bytes) -> bytes:
    return START + message + END + CARRIAGE_RETURN


def tls_context(settings: Hl7v2Settings) -> ssl.SSLContext | None:
    """The server TLS context of the settings, None without a certificate. With a client CA,
    clients must present a certificate it signed."""
    if settings.tls_cert is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.tls_cert, settings.tls_key)
    if settings.tls_client_ca is not None:
        context.load_verify_locations(settings.tls_client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


class MllpServer:
    def __init__(self, receiver: Receiver, host: str, port: int) -> None:
        self.receiver = receiver
        self.host = host
        self.port = port
        self.settings = receiver.settings
        self.executor = ThreadPoolExecutor(self.settings.workers, thread_name_prefix="hl7v2")
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(
            self._serve,
            self.host,
            self.port,
            ssl=tls_context(self.settings),
            limit=1024 * 1024,
        )
        self.port = self.server.sockets[0].getsockname()[1]
        tls = " (TLS)" if self.settings.tls_cert else ""
        log.info("MLLP listening on %s:%d%s", self.host, self.port, tls)

    async def serve_forever(self) -> None:
        if self.server is None:
            await self.start()
        assert self.server is not None
        async with self.server:
            await self.server.serve_forever()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        self.executor.shutdown(wait=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                message = await self._next_message(reader)
                if message is None:
                    break
                ack = await loop.run_in_executor(self.executor, self.receiver.receive, message)
                writer.write(frame(ack))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError) as exc:
            log.info("MLLP connection closed: %s", type(exc).__name__)
        except Exception as exc:  # the database is down, or a bug: drop the connection
            log.error("MLLP message failed, connection closed: %s", type(exc).__name__)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()

    async def _next_message(self, reader: asyncio.StreamReader) -> bytes | None:
        """The content of the next frame; None at the end of the connection."""
        try:
            await reader.readuntil(START)  # anything before the start of a frame is dropped
        except asyncio.IncompleteReadError:
            return None
        except asyncio.LimitOverrunError as exc:
            await reader.readexactly(exc.consumed)
            return await self._next_message(reader)
        chunks: list[bytes] = []
        size = 0
        while True:
            try:
                chunk = await reader.readuntil(END)
            except asyncio.LimitOverrunError as exc:
                chunk = await reader.readexactly(exc.consumed)
                chunks.append(chunk)
                size += len(chunk)
                if size > self.settings.max_message_bytes:
                    raise ConnectionError(
                        "MLLP frame larger than the maximum message size"
                    ) from None
                continue
            chunks.append(chunk[:-1])
            break
        if size + len(chunks[-1]) > self.settings.max_message_bytes:
            raise ConnectionError("MLLP frame larger than the maximum message size")
        # The <CR> after <FS> is left to the next search for <VT>, which drops it: a sender
        # that omits it is not kept waiting.
        return b"".join(chunks)
