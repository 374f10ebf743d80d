"""Fakes of the remote systems leadflow talks to, at the HTTP (or SMTP) wire level.

Each fake is a real server on loopback built from the payloads in ../shared/wire/: FakeWaha,
FakeChatwoot, FakeMeta (Starlette apps served by `LiveServer`) and SmtpServer (aiosmtpd). Use them
as context managers or through the function-scoped fixtures in `tests.fakes.fixtures`
(`fake_waha`, `fake_chatwoot`, `fake_meta`, `smtp_server`)."""

from tests.fakes.chatwoot import FakeChatwoot
from tests.fakes.http_server import FailurePlan, LiveServer, RecordedRequest
from tests.fakes.meta import FakeMeta
from tests.fakes.smtp import ReceivedEmail, SmtpServer
from tests.fakes.waha import FakeWaha

__all__ = [
    "FailurePlan",
    "FakeChatwoot",
    "FakeMeta",
    "FakeWaha",
    "LiveServer",
    "ReceivedEmail",
    "RecordedRequest",
    "SmtpServer",
]
