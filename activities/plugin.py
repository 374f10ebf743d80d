"""The built-in plugin: conversation workflow, channels, offline LLM, knowledge and store.

It is loaded through the same `leadflow.plugins` entry point as any third-party plugin."""

from __future__ import annotations

from collections.abc import Mapping

from temporalio.plugin import SimplePlugin

from activities.campaign import CampaignActivities
from activities.channels.activities import ChannelActivities
from activities.channels.chatwoot import ChatwootChannel
from activities.channels.meta import MessengerChannel, MetaWhatsAppChannel
from activities.channels.smtp import SmtpChannel
from activities.channels.waha import WahaChannel
from activities.erasure import ErasureActivities
from activities.ingestion import IngestionActivities
from activities.knowledge import KnowledgeActivities
from activities.llm.activities import LlmActivities
from activities.llm.model_backend import hosted_backend
from activities.llm.offline import offline_backend
from activities.mailbox import MailboxActivities
from activities.plugin_api import LeadflowPlugin, PluginContext
from activities.store import StoreActivities
from models.common import Channel
from models.task_queues import CONVERSATIONS, ENRICHMENT


def _build(ctx: PluginContext) -> Mapping[str, SimplePlugin]:
    from workflows.campaign import CampaignWorkflow
    from workflows.conversation import ConversationWorkflow
    from workflows.erasure import EraseContactWorkflow
    from workflows.ingestion import InventoryIngestionWorkflow
    from workflows.mailbox import MailboxReaderWorkflow

    adapters = {name: factory(ctx.http) for name, factory in ctx.registry.channels.items()}
    agent = ctx.the_agent()
    channels = ChannelActivities(ctx.db, ctx.settings, ctx.http, adapters, agent.resolver)
    llm = LlmActivities(agent)
    store = StoreActivities(ctx.db, ctx.settings, agent.resolver)
    knowledge = KnowledgeActivities(ctx.the_knowledge())
    erasure = ErasureActivities(ctx.db)
    ingestion = IngestionActivities(ctx.db, ctx.http, ctx.the_knowledge())
    campaigns = CampaignActivities(ctx.db, ctx.settings)  # starts conversations: activity.client()
    mailbox = MailboxActivities(ctx.db, ctx.settings)
    return {
        CONVERSATIONS: SimplePlugin(
            "leadflow-conversations",
            activities=[
                store.load_turn_context,
                store.record_turn,
                llm.analyse_messages,
                llm.draft_turn,
                llm.prepare_turn,
                llm.generate_reply,
                channels.send_message,
                channels.send_and_record,
                channels.notify_specialist,
                knowledge.search_knowledge,
                erasure.purge_contact_workflows,
                erasure.erase_contact_rows,
            ],
            workflows=[ConversationWorkflow, EraseContactWorkflow],
        ),
        # Inventory ingestion fetches dealers' pages and feeds: web work, on the queue (and
        # workers) that fetch company websites, away from the conversations' latency. Campaigns
        # pace their sends here too: a campaign's step starts a conversation (which then runs on
        # the conversations queue), so a big campaign never queues ahead of a lead's turn. And
        # the mailbox readers, whose IDLE holds a slot for minutes (models/mailbox.py).
        ENRICHMENT: SimplePlugin(
            "leadflow-ingestion-campaigns-mailboxes",
            activities=[
                ingestion.ingest_inventory_source,
                ingestion.record_ingestion_failure,
                campaigns.send_campaign_step,
                campaigns.set_campaign_status,
                mailbox.read_mailbox,
            ],
            workflows=[InventoryIngestionWorkflow, CampaignWorkflow, MailboxReaderWorkflow],
        ),
    }


def builtin_plugin() -> LeadflowPlugin:
    return LeadflowPlugin(
        name="builtin",
        description="Conversations: WAHA, Meta WhatsApp/Messenger, Chatwoot, SMTP channels, "
        "the agent's providers (offline rules, Anthropic, OpenAI, OpenAI-compatible), "
        "full-text knowledge, the outbox.",
        channels={
            Channel.WAHA.value: WahaChannel,
            Channel.WHATSAPP.value: MetaWhatsAppChannel,
            Channel.MESSENGER.value: MessengerChannel,
            Channel.CHATWOOT.value: ChatwootChannel,
            Channel.EMAIL.value: SmtpChannel.for_worker,
        },
        llm_providers={
            "offline": offline_backend,
            "anthropic": hosted_backend,
            "openai": hosted_backend,
            "openai_compatible": hosted_backend,
        },
        build=_build,
    )
