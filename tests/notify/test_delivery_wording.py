"""What delivery failures are called: never "will retry" once given up, and a connection that
was dropped after it was made is not "cannot reach"."""

from __future__ import annotations

import asyncio

import pytest

from alertd.errors import TransientDeliveryError
from alertd.notify.outbox import without_retry_note
from tests.notify.test_email import notifier


@pytest.mark.parametrize(("text", "expected"), [
    ("HTTP 503 from https://x.example (will retry)", "HTTP 503 from https://x.example"),
    ("mx answered 'busy' (SMTP 451, will retry)", "mx answered 'busy' (SMTP 451)"),
    ("cannot reach mx: refused", "cannot reach mx: refused"),
])
def test_a_given_up_error_does_not_promise_a_retry(text: str, expected: str) -> None:
    assert without_retry_note(text) == expected


async def test_a_connection_dropped_mid_data_is_not_cannot_reach(build) -> None:
    async def drop_in_data(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 localhost ESMTP\r\n")
        while line := await reader.readline():
            if line.upper().startswith(b"DATA"):
                writer.write(b"354 go ahead\r\n")
                await writer.drain()
                await reader.readline()
                writer.close()  # the connection drops in the middle of the message
                return
            writer.write(b"250 ok\r\n")
            await writer.drain()

    server = await asyncio.start_server(drop_in_data, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        with pytest.raises(TransientDeliveryError) as caught:
            await notifier(port).send(build.notification())
    assert "closed the connection" in str(caught.value)
    assert "cannot reach" not in str(caught.value)
