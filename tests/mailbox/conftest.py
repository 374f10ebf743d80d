"""A real IMAP server for the mailbox reader's tests: Debian's Dovecot (`./test` installs
dovecot-imapd), started per test module on a free loopback port with a configuration of its
own — plain IMAP (`ssl = no`), a passwd-file of test users, a static userdb with maildirs under
a temporary directory. Tests are skipped, saying why, where /usr/sbin/dovecot is absent.

    dovecot.user()                             # a user with an empty mailbox
    await dovecot.append(user, raw_bytes)      # IMAP APPEND, as a mail server delivers
    dovecot.settings(user)                     # ImapSettings pointing at it
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

import pytest
from aioimaplib import aioimaplib

from models.tenant import ImapSettings

DOVECOT = Path("/usr/sbin/dovecot")
PASSWORD = "imap-test-password"
MAIL_UID = 65534  # nobody: Dovecot refuses mail access as root
USERS = 40  # per server (one module's tests)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


CONFIG = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
first_valid_uid = {uid}
mail_location = maildir:{root}/mail/%u
mailbox_idle_check_interval = 1 secs
{capability}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={uid} home={root}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service stats {{
  inet_listener http {{
    port = 0
  }}
}}
"""


class Dovecot:
    def __init__(self, *, idle: bool = True) -> None:
        self.idle = idle
        self.port = 0
        self.root = Path(tempfile.mkdtemp(prefix="leadflow-dovecot-"))
        self._proc: subprocess.Popen[bytes] | None = None
        self._free_users: list[str] = []

    # -- the server ---------------------------------------------------------------------------

    def start(self) -> Dovecot:
        # Dovecot's mail processes run as `nobody`: the directory must be theirs to enter.
        self.root.chmod(0o755)
        (self.root / "mail").mkdir()
        os.chown(self.root / "mail", MAIL_UID, MAIL_UID)
        self.port = _free_port()
        # The users are written before the server starts: Dovecot re-reads a passwd-file when
        # its mtime changes, which a write within the same second does not.
        self._free_users = [f"sales-{uuid.uuid4().hex[:8]}@dealer.example" for _ in range(USERS)]
        (self.root / "passwd").write_text(
            "".join(f"{name}:{{PLAIN}}{PASSWORD}::::::\n" for name in self._free_users)
        )
        # Without IDLE in the capability list a client polls (the server would still accept it).
        capability = "" if self.idle else "imap_capability = IMAP4rev1 LITERAL+ UIDPLUS"
        (self.root / "dovecot.conf").write_text(
            CONFIG.format(root=self.root, port=self.port, uid=MAIL_UID, capability=capability)
        )
        self._proc = subprocess.Popen(
            [str(DOVECOT), "-F", "-c", str(self.root / "dovecot.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"dovecot exited: {self._stderr()}\n{self.log()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock,
            ):
                if sock.recv(100).startswith(b"* OK"):
                    return self
            time.sleep(0.1)
        raise RuntimeError(f"dovecot did not answer on port {self.port}: {self.log()}")

    def _stderr(self) -> str:
        if self._proc is None or self._proc.stderr is None:
            return ""
        return self._proc.stderr.read().decode(errors="replace")

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=5)
            self._proc = None
        shutil.rmtree(self.root, ignore_errors=True)

    # -- users and mail -----------------------------------------------------------------------

    def user(self) -> str:
        """A user of its own (password PASSWORD) with an empty mailbox."""
        return self._free_users.pop()

    def settings(self, user: str, **overrides: Any) -> ImapSettings:
        values: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": self.port,
            "username": user,
            "password": PASSWORD,
            "use_tls": False,
            "poll_seconds": 5,
        }
        values.update(overrides)
        return ImapSettings.model_validate(values)

    async def client(self, user: str) -> Any:
        client = aioimaplib.IMAP4(host="127.0.0.1", port=self.port, timeout=30)
        await client.wait_hello_from_server()
        response = await client.login(user, PASSWORD)
        assert response.result == "OK", response
        return client

    async def append(
        self, user: str, raw: bytes, *, folder: str = "INBOX", date: Any = None
    ) -> None:
        client = await self.client(user)
        try:
            if folder != "INBOX":
                await client.create(folder)
            response = await client.append(raw, mailbox=folder, date=date)
            assert response.result == "OK", response
        finally:
            await client.logout()

    async def flags(self, user: str, folder: str = "INBOX") -> list[bytes]:
        """The FLAGS of every mail in the folder (each FETCH line)."""
        client = await self.client(user)
        try:
            await client.select(folder)
            response = await client.fetch("1:*", "(FLAGS)")
            return [line for line in response.lines if b"FLAGS" in line]
        finally:
            await client.logout()

    def renumber(self, user: str) -> None:
        """Make the INBOX's UIDVALIDITY change (as after a server migration): drop Dovecot's
        UID list and indexes; the next session numbers the mails afresh."""
        home = self.root / "mail" / user
        for path in home.rglob("dovecot*"):
            if path.is_file() and (path.name.startswith("dovecot.index") or "uidlist" in path.name):
                path.unlink()


def mail(
    *,
    sender: str = "Jan Lead <jan@lead.example>",
    to: str = "Sales <sales@dealer.example>",
    subject: str = "Re: Your Golf",
    body: str = "Yes, I'd like a test drive on Saturday.",
    message_id: str | None = None,
    in_reply_to: str | None = None,
    headers: dict[str, str] | None = None,
) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = format_datetime(_now())
    message["Message-ID"] = message_id or make_msgid(domain="lead.example")
    if in_reply_to:
        message["In-Reply-To"] = in_reply_to
        message["References"] = in_reply_to
    for name, value in (headers or {}).items():
        message[name] = value
    message.set_content(body)
    return message.as_bytes()


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


def _need_dovecot() -> None:
    if not DOVECOT.exists():
        pytest.skip(
            "Debian's dovecot-imapd is not installed (/usr/sbin/dovecot): the mailbox reader's "
            "IMAP tests need a real IMAP server (`./test` installs it; apt-get install "
            "dovecot-imapd)"
        )


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    _need_dovecot()
    server = Dovecot().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def dovecot_without_idle() -> Iterator[Dovecot]:
    _need_dovecot()
    server = Dovecot(idle=False).start()
    try:
        yield server
    finally:
        server.stop()
