"""Temporal Worker Versioning for leadflow's workers (off unless configured).

With `LEADFLOW_WORKER_DEPLOYMENT_NAME` and `LEADFLOW_WORKER_BUILD_ID` set, every worker of the
process polls as that Worker Deployment Version (`<name>.<build id>`). The server then sends a
task queue's workflow tasks to the deployment's *current* version only (or its ramping one), so
a rollout is a switch (`temporal worker deployment set-current-version`) instead of a mixed fleet
where one workflow's tasks alternate between old and new code, and a rollback is the same
switch back. Unset (the default, `leadflow up`, the tests), workers are unversioned as before.

Every leadflow workflow is AUTO_UPGRADE: a running workflow moves to the current version at its
next workflow task. Why not PINNED (a run stays on the version it started on):
- ConversationWorkflow lives for weeks (follow-up timers, a human handoff, continue-as-new keeps
  the pin), so a pinned version would need its workers for as long as its oldest conversation.
- EnrichmentJobWorkflow can be paused for days; CrmSyncWorkflow and EraseContactWorkflow end in
  minutes to hours, but pinning them still needs each old version's workers kept until drained,
  which a rolling update of one Kubernetes Deployment per queue does not do.
- leadflow already changes workflows the AUTO_UPGRADE way: a change that alters commands is
  behind `workflow.patched` or the input's `version` field, and every recorded history under
  tests/histories/ replays against the new code in CI.
A workflow whose change cannot be patched can opt out with `@workflow.defn(versioning_behavior=
VersioningBehavior.PINNED)`: the decorator wins over this default (docs/upgrades.md).
"""

from __future__ import annotations

from temporalio.common import VersioningBehavior, WorkerDeploymentVersion
from temporalio.worker import WorkerDeploymentConfig

from models.settings import Settings

DEFAULT_BEHAVIOR = VersioningBehavior.AUTO_UPGRADE
"""For every workflow that does not declare its own (none of leadflow's does): see above."""


class VersioningMisconfigured(ValueError):
    """One of the two settings without the other, or a name the server cannot take."""


def deployment_config(settings: Settings) -> WorkerDeploymentConfig | None:
    """The workers' Worker Deployment options, or None for unversioned workers (the default)."""
    name = (settings.worker_deployment_name or "").strip()
    build_id = (settings.worker_build_id or "").strip()
    if not name and not build_id:
        return None
    if not name or not build_id:
        missing = "LEADFLOW_WORKER_DEPLOYMENT_NAME" if not name else "LEADFLOW_WORKER_BUILD_ID"
        raise VersioningMisconfigured(
            f"worker versioning needs a deployment name and a build id: {missing} is not set"
        )
    if "." in name:
        # The version's canonical form is `<deployment>.<build id>`: a dot would make it ambiguous.
        raise VersioningMisconfigured(
            f"LEADFLOW_WORKER_DEPLOYMENT_NAME {name!r} may not contain a dot"
        )
    return WorkerDeploymentConfig(
        version=WorkerDeploymentVersion(deployment_name=name, build_id=build_id),
        use_worker_versioning=True,
        default_versioning_behavior=DEFAULT_BEHAVIOR,
    )
