"""Where the command line starts and tells mailbox readers (models/mailbox.py): at the start of
`leadflow worker` (and so of `leadflow up`, whose workers are `leadflow worker` processes): a
reader for every tenant whose settings have an enabled `imap` block and none running (settings
saved while Temporal was down, a dev server whose state was reset); and after `leadflow tenant
configure` saved settings. Neither ever fails its
command: the settings are saved either way, and the next start catches up."""

from __future__ import annotations

import logging

from temporalio.client import Client

from models.db import Database
from models.mailbox import MailboxAction, ensure_all_mailbox_readers, ensure_mailbox_reader
from models.settings import Settings
from models.tenant import ImapSettings

log = logging.getLogger("leadflow.mailbox")


async def start_mailbox_readers(settings: Settings, client: Client) -> dict[str, MailboxAction]:
    """Start the readers that should run and do not; logs what it started, and why it could
    not (never raises: the worker starts regardless)."""
    db = Database(settings.resolved_database_url)
    try:
        async with db.session() as session:
            done = await ensure_all_mailbox_readers(
                client, session, secret_key=settings.secret_key.get_secret_value()
            )
    except Exception as exc:
        log.warning("mailbox readers not checked at start: %s", exc)
        return {}
    finally:
        await db.dispose()
    started = sorted(t for t, action in done.items() if action == MailboxAction.STARTED)
    if started:
        log.info("mailbox readers started for %s", ", ".join(started))
    return done


async def follow_saved_settings(
    settings: Settings, tenant_id: str, old: ImapSettings | None, new: ImapSettings | None
) -> str | None:
    """After the CLI saved a tenant's settings: the reader follows a changed `imap` block.
    Returns what to tell the user when Temporal could not be told (None: done or nothing to
    do)."""
    if old == new:
        return None
    from workers.client import connect

    try:
        client = await connect(settings)
        action = await ensure_mailbox_reader(client, tenant_id=tenant_id, imap=new, changed=True)
    except Exception as exc:
        return (
            f"the mailbox reader could not follow the new imap settings ({exc}); it starts "
            "with the next `leadflow worker` or `leadflow up`"
        )
    log.info("mailbox reader of %s: %s", tenant_id, action.value)
    return None
