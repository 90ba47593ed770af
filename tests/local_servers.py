"""Real servers on 127.0.0.1 for the tests of sending: an SMTP server (aiosmtpd) that keeps
what it receives, and a webhook receiver that checks each signature with the standardwebhooks
library and answers with the status codes it is told."""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import threading
from collections import Counter
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller
from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Received:
    sender: str
    recipients: list[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


class Inbox:
    """The SMTP server's handler. `refuse` holds replies to give instead of accepting (one per
    message, in order); `hold_at` makes the n-th accepted message wait, after it was received,
    until `release` is set (a sender can be killed while it waits for the answer)."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.refuse: list[str] = []
        self.hold_at: int | None = None
        self.holding = threading.Event()
        self.release = threading.Event()
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        with self._lock:
            if self.refuse:
                return self.refuse.pop(0)
            self.received.append(
                Received(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.content))
            )
            count = len(self.received)
        if self.hold_at is not None and count == self.hold_at:
            self.holding.set()
            await asyncio.get_running_loop().run_in_executor(None, self.release.wait, 60)
        return "250 Message accepted for delivery"

    def per_message_id(self) -> Counter[str]:
        return Counter(str(r.message["Message-ID"]) for r in self.received)


class SmtpServer:
    def __init__(self) -> None:
        self.inbox = Inbox()
        self.port = free_port()
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.inbox.release.set()
        self.controller.stop()


@dataclass
class Hook:
    headers: dict[str, str]
    body: bytes
    verified: bool
    payload: Any


@dataclass
class WebhookReceiver:
    """Answers each POST with the next code of `answers` (then 200) after verifying it with
    the secret it was given."""

    secret: str | None = None
    answers: list[int] = field(default_factory=list)
    hooks: list[Hook] = field(default_factory=list)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    payload = Webhook(receiver.secret or "").verify(body, headers)
                    verified = True
                except (WebhookVerificationError, Exception):
                    payload, verified = None, False
                receiver.hooks.append(Hook(headers, body, verified, payload))
                code = receiver.answers.pop(0) if receiver.answers else 200
                answer = b'{"ok": true}' if code < 300 else b"receiver unavailable"
                self.send_response(code)
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/tallybook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
