"""The CRM plugin: HubSpot, Salesforce, Pipedrive, Chatwoot, GoHighLevel and built-in adapters,
the sync activities and CrmSyncWorkflow on the CRM queue, and `request_crm_sync` on the
conversations queue.

Adding a CRM is one adapter module and one more entry in `crm_adapters` (or a plugin of its own
whose `crm_adapters` the registry merges in)."""

from __future__ import annotations

from collections.abc import Mapping

from temporalio.plugin import SimplePlugin

from activities.crm.activities import CrmActivities, CrmSyncRequester
from activities.crm.builtin import BuiltinAdapter
from activities.crm.chatwoot import ChatwootAdapter
from activities.crm.gohighlevel import GoHighLevelAdapter
from activities.crm.hubspot import HubSpotAdapter
from activities.crm.pipedrive import PipedriveAdapter
from activities.crm.salesforce import SalesforceAdapter
from activities.plugin_api import LeadflowPlugin, PluginContext
from models.crm import CrmKind
from models.task_queues import CONVERSATIONS, CRM


def crm_activities(ctx: PluginContext) -> CrmActivities:
    return CrmActivities(
        settings=ctx.settings, db=ctx.db, http=ctx.http, adapters=ctx.registry.crm_adapters
    )


def _build(ctx: PluginContext) -> Mapping[str, SimplePlugin]:
    from workflows.crm_sync import CrmConnectionTestWorkflow, CrmSyncWorkflow

    crm = crm_activities(ctx)
    requester = CrmSyncRequester(task_queue=CRM)
    return {
        CRM: SimplePlugin(
            "leadflow-crm",
            activities=[
                crm.load_crm_sync_plan,
                crm.read_crm_record,
                crm.write_crm_record,
                crm.compensate_crm_record,
                crm.add_crm_note,
                crm.record_crm_sync,
                crm.check_crm_connection,
                crm.erase_crm_records,
            ],
            workflows=[CrmSyncWorkflow, CrmConnectionTestWorkflow],
        ),
        CONVERSATIONS: SimplePlugin(
            "leadflow-crm-requests", activities=[requester.request_crm_sync]
        ),
    }


def crm_plugin() -> LeadflowPlugin:
    return LeadflowPlugin(
        name="crm",
        description="CRM sync sagas: HubSpot, Salesforce, Pipedrive, Chatwoot, GoHighLevel, "
        "built-in lead table.",
        crm_adapters={
            CrmKind.BUILTIN.value: BuiltinAdapter,
            CrmKind.HUBSPOT.value: HubSpotAdapter,
            CrmKind.SALESFORCE.value: SalesforceAdapter,
            CrmKind.PIPEDRIVE.value: PipedriveAdapter,
            CrmKind.CHATWOOT.value: ChatwootAdapter,
            CrmKind.GOHIGHLEVEL.value: GoHighLevelAdapter,
        },
        build=_build,
    )
