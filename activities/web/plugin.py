"""The enrichment plugin: the EnrichmentJobWorkflow, its activities and the "duckduckgo" search
provider, loaded through the `leadflow.plugins` entry point like any third-party plugin."""

from __future__ import annotations

from collections.abc import Mapping

from temporalio.plugin import SimplePlugin

from activities.plugin_api import LeadflowPlugin, PluginContext
from activities.web.activities import EnrichmentActivities
from activities.web.search import duckduckgo_provider
from models.task_queues import ENRICHMENT


def enrichment_activities(ctx: PluginContext) -> EnrichmentActivities:
    return EnrichmentActivities(
        db=ctx.db,
        settings=ctx.settings,
        http=ctx.http,
        agent=ctx.the_agent(),
        search_providers=ctx.registry.search_providers,
    )


def _build(ctx: PluginContext) -> Mapping[str, SimplePlugin]:
    # Imported here: importing workflow code is the worker's business, not the plugin listing's.
    from workflows.enrichment import EnrichmentJobWorkflow

    acts = enrichment_activities(ctx)
    return {
        ENRICHMENT: SimplePlugin(
            "leadflow-enrichment",
            activities=[
                acts.store_rows,
                acts.set_job_status,
                acts.process_record,
                acts.mark_record_failed,
            ],
            workflows=[EnrichmentJobWorkflow],
        )
    }


def enrichment_plugin() -> LeadflowPlugin:
    return LeadflowPlugin(
        name="enrichment",
        description="Lead-enrichment jobs: CSV in, website research and personalised e-mails "
        "out; DuckDuckGo HTML search.",
        search_providers={"duckduckgo": duckduckgo_provider},
        build=_build,
    )
