"""A real SMTP server (aiosmtpd) on loopback that collects what it receives.

    with SmtpServer() as smtp:                   # or the `smtp_server` fixture
        settings = TenantSettings(smtp=smtp.settings())
        ...
        mail = smtp.messages[0]
        assert mail.message["Subject"] == "Re: Your offer"

`username`/`password` turn on AUTH (PLAIN/LOGIN, allowed without TLS because this is a loopback
test server); `reject_recipients` answers 550 to RCPT TO for those addresses; `fail_data(n)`
answers the next n DATA commands with 451 (a transient failure). STARTTLS and implicit TLS are not
offered: the server has no certificate."""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from models.tenant import SmtpSettings


@dataclass(frozen=True)
class ReceivedEmail:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes
    message: EmailMessage
    authenticated_as: str | None


def free_port(host: str = "127.0.0.1") -> int:
    # aiosmtpd's Controller connects to its own port to check readiness, so it needs a real port
    # number up front; the tiny race between closing this socket and the server binding is fine
    # on a test machine.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class _Handler:
    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if address.lower() in self.server.reject_recipients:
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self.server._lock:
            if self.server._data_failures > 0:
                self.server._data_failures -= 1
                return "451 4.3.0 Temporary failure, try again later"
        raw = envelope.original_content or b""
        message = message_from_bytes(raw, policy=policy.default)
        assert isinstance(message, EmailMessage)
        login = session.auth_data.login.decode() if session.auth_data else None
        self.server.messages.append(
            ReceivedEmail(
                mail_from=str(envelope.mail_from),
                rcpt_tos=tuple(envelope.rcpt_tos),
                raw=raw,
                message=message,
                authenticated_as=login,
            )
        )
        return "250 Message accepted for delivery"


class SmtpServer:
    def __init__(
        self,
        *,
        username: str | None = None,
        password: str | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.host = host
        self.port = 0
        self.username = username
        self.password = password
        self.messages: list[ReceivedEmail] = []
        self.reject_recipients: set[str] = set()
        self._data_failures = 0
        self._lock = threading.Lock()
        self._controller: Controller | None = None

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and data.login.decode() == self.username
            and data.password.decode() == self.password
        )
        # handled=False: let aiosmtpd answer "535 5.7.8 Authentication credentials invalid".
        return AuthResult(success=ok, handled=False, auth_data=data if ok else None)

    def start(self) -> SmtpServer:
        self.port = free_port(self.host)
        kwargs: dict[str, Any] = {}
        if self.username is not None:
            # AUTH offered without TLS (loopback only). Not *required*: aiosmtpd warns on every
            # connection about that combination; `authenticated_as` shows whether a client did.
            kwargs.update(authenticator=self._authenticate, auth_require_tls=False)
        self._controller = Controller(_Handler(self), hostname=self.host, port=self.port, **kwargs)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> SmtpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def fail_data(self, times: int = 1) -> None:
        """Answer the next `times` DATA commands with 451 (transient)."""
        with self._lock:
            self._data_failures += times

    def settings(self, **overrides: Any) -> SmtpSettings:
        values: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "username": self.username,
            "password": self.password,
            "from_address": "Sales <sales@dealer.example>",
            "starttls": False,
            "use_tls": False,
        }
        values.update(overrides)
        return SmtpSettings.model_validate(values)
