"""E-mail over SMTP: a message with its attachments, handed to the configured server.

What matters for "never sent twice" is telling the outcomes apart: `retry` and `failed` mean
the server did not take the message (it refused, or the conversation broke before the message
was handed over); `unknown` means the connection broke while the message itself was being
handed over, so it may have been delivered: such a message is never sent again by itself.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime, parseaddr
from types import TracebackType

from tallybook.config import SmtpSettings

SENT = "sent"
RETRY = "retry"
FAILED = "failed"
UNKNOWN = "unknown"


@dataclass(frozen=True)
class Attachment:
    file_name: str
    media_type: str
    content: bytes


@dataclass(frozen=True)
class OutgoingEmail:
    sender: str
    recipients: tuple[str, ...]
    subject: str
    text: str
    message_id: str
    sent_at: datetime
    attachments: tuple[Attachment, ...] = ()
    reply_to: str | None = None


@dataclass(frozen=True)
class SmtpResult:
    outcome: str  # sent | retry | failed | unknown
    code: int | None = None
    detail: str | None = None
    refused: dict[str, str] = field(default_factory=dict)


def build_message(email: OutgoingEmail) -> EmailMessage:
    """The MIME message: text body, then each attachment under its file name."""
    message = EmailMessage(policy=SMTP_POLICY)
    message["From"] = email.sender
    message["To"] = ", ".join(email.recipients)
    message["Subject"] = email.subject
    message["Date"] = format_datetime(email.sent_at)
    # Stable per delivery: mail clients and the test's SMTP server recognise a duplicate.
    message["Message-ID"] = email.message_id
    if email.reply_to:
        message["Reply-To"] = email.reply_to
    message.set_content(email.text)
    for attachment in email.attachments:
        maintype, _, subtype = attachment.media_type.partition("/")
        message.add_attachment(
            attachment.content,
            maintype=maintype,
            subtype=subtype or "octet-stream",
            filename=attachment.file_name,
        )
    return message


def _reply(code: int, message: bytes | str) -> str:
    text = message.decode(errors="replace") if isinstance(message, bytes) else str(message)
    return f"{code} {text}".strip()


def _refusal(code: int, message: bytes | str) -> SmtpResult:
    # 4xx: the server may take it later; 5xx: it never will.
    outcome = RETRY if 400 <= code < 500 else FAILED
    return SmtpResult(outcome, code, _reply(code, message))


class SmtpSender:
    """One SMTP connection for a run of messages (opened on the first, closed at the end)."""

    def __init__(self, settings: SmtpSettings) -> None:
        if not settings.host:
            raise ValueError("TALLYBOOK_SMTP_HOST is not set")
        self.settings = settings
        self._connection: smtplib.SMTP | None = None

    def __enter__(self) -> SmtpSender:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            connection.quit()
        except (smtplib.SMTPException, OSError):
            connection.close()

    def _connect(self) -> smtplib.SMTP:
        if self._connection is not None:
            return self._connection
        s = self.settings
        assert s.host is not None
        context = ssl.create_default_context()
        if s.security == "tls":
            connection: smtplib.SMTP = smtplib.SMTP_SSL(
                s.host, s.port, timeout=s.timeout_seconds, context=context
            )
        else:
            connection = smtplib.SMTP(s.host, s.port, timeout=s.timeout_seconds)
        try:
            connection.ehlo()
            if s.security == "starttls":
                connection.starttls(context=context)
                connection.ehlo()
            if s.username:
                connection.login(s.username, s.password or "")
        except BaseException:
            connection.close()
            raise
        self._connection = connection
        return connection

    def send(self, email: OutgoingEmail, message: EmailMessage | None = None) -> SmtpResult:
        """Hand one message over; never raises for what the server or the network did."""
        body = (message or build_message(email)).as_bytes()
        try:
            connection = self._connect()
            code, reply = connection.mail(parseaddr(email.sender)[1])
            if code != 250:
                self._reset()
                return _refusal(code, reply)
            refused: dict[str, str] = {}
            accepted = 0
            last: tuple[int, bytes] = (0, b"")
            for recipient in email.recipients:
                code, reply = connection.rcpt(parseaddr(recipient)[1])
                if code in (250, 251):
                    accepted += 1
                else:
                    refused[recipient] = _reply(code, reply)
                    last = (code, reply)
            if not accepted:
                self._reset()
                result = _refusal(*last)
                return SmtpResult(result.outcome, result.code, result.detail, refused)
        except (smtplib.SMTPException, OSError) as error:
            # Nothing was handed over yet: the next attempt may go through.
            self._drop()
            return SmtpResult(RETRY, None, _describe(error))
        try:
            code, reply = connection.data(body)
        except smtplib.SMTPResponseException as error:
            # The server answered the message with a refusal: it did not take it.
            self._reset()
            return _refusal(error.smtp_code, error.smtp_error)
        except (smtplib.SMTPException, OSError) as error:
            # Broken while the message was handed over: it may have been delivered.
            self._drop()
            return SmtpResult(UNKNOWN, None, _describe(error))
        if code != 250:
            # The server answered the message with a refusal: it did not take it.
            self._reset()
            return _refusal(code, reply)
        return SmtpResult(SENT, code, _reply(code, reply), refused)

    def _reset(self) -> None:
        if self._connection is None:
            return
        try:
            self._connection.rset()
        except (smtplib.SMTPException, OSError):
            self._drop()

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()


def _describe(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def addresses(values: Sequence[str]) -> tuple[str, ...]:
    """Recipients in order, each once."""
    seen: list[str] = []
    for value in values:
        value = value.strip()
        if value and value.lower() not in (s.lower() for s in seen):
            seen.append(value)
    return tuple(seen)
