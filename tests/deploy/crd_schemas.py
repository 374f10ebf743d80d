"""JSON Schemas of the two custom kinds the manifests use, written here from their documented
APIs (KEDA 2.18+ ScaledObject, prometheus-operator ServiceMonitor), for the fields those APIs
document and strict on unknown fields, like `kubectl apply --validate=strict`.

They are not the upstream CRDs' OpenAPI schemas (those are not vendored: no pinned PyPI or npm
package ships them as data). test_k8s.py also validates against the upstream CRD files when
DEPLOY_UPSTREAM_CRD_DIR points at them (deploy/README.md says when that was done)."""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]


def strict(properties: Schema, *required: str) -> Schema:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


STRING_MAP: Schema = {"type": "object", "additionalProperties": {"type": "string"}}
INT32: Schema = {"type": "integer", "minimum": 0, "maximum": 2**31 - 1}
LABEL_SELECTOR: Schema = strict(
    {
        "matchLabels": STRING_MAP,
        "matchExpressions": {
            "type": "array",
            "items": strict(
                {
                    "key": {"type": "string"},
                    "operator": {"type": "string"},
                    "values": {"type": "array", "items": {"type": "string"}},
                },
                "key",
                "operator",
            ),
        },
    }
)
OBJECT_META: Schema = strict(
    {
        "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
        "namespace": {"type": "string"},
        "labels": STRING_MAP,
        "annotations": STRING_MAP,
    },
    "name",
)


def resource(api_version: str, kind: str, spec: Schema) -> Schema:
    return strict(
        {
            "apiVersion": {"const": api_version},
            "kind": {"const": kind},
            "metadata": OBJECT_META,
            "spec": spec,
        },
        "apiVersion",
        "kind",
        "metadata",
        "spec",
    )


# https://keda.sh/docs/2.18/reference/scaledobject-spec/ (and the scaler pages for `triggers`).
SCALED_OBJECT = resource(
    "keda.sh/v1alpha1",
    "ScaledObject",
    strict(
        {
            "scaleTargetRef": strict(
                {
                    "apiVersion": {"type": "string"},
                    "kind": {"type": "string"},
                    "name": {"type": "string"},
                    "envSourceContainerName": {"type": "string"},
                },
                "name",
            ),
            "pollingInterval": INT32,
            "cooldownPeriod": INT32,
            "initialCooldownPeriod": INT32,
            "idleReplicaCount": INT32,
            "minReplicaCount": INT32,
            "maxReplicaCount": INT32,
            "fallback": strict(
                {"failureThreshold": INT32, "replicas": INT32, "behavior": {"type": "string"}},
                "failureThreshold",
                "replicas",
            ),
            "advanced": strict(
                {
                    "restoreToOriginalReplicaCount": {"type": "boolean"},
                    "horizontalPodAutoscalerConfig": strict(
                        {
                            "name": {"type": "string"},
                            # autoscaling/v2 HorizontalPodAutoscalerBehavior (validated as such
                            # by test_k8s.py through kubernetes-validate).
                            "behavior": {"type": "object"},
                        }
                    ),
                    "scalingModifiers": {"type": "object"},
                }
            ),
            "triggers": {
                "type": "array",
                "minItems": 1,
                "items": strict(
                    {
                        "type": {"type": "string"},
                        "name": {"type": "string"},
                        "useCachedMetrics": {"type": "boolean"},
                        "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                        # The scaler reads a map of strings: a bare number or boolean here is
                        # refused by the API server.
                        "metadata": STRING_MAP,
                        "authenticationRef": strict(
                            {"name": {"type": "string"}, "kind": {"type": "string"}}, "name"
                        ),
                    },
                    "type",
                    "metadata",
                ),
            },
        },
        "scaleTargetRef",
        "triggers",
    ),
)

# A Prometheus duration (30s, 1m30s).
DURATION = (
    "^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
)

# https://prometheus-operator.dev/docs/api-reference/api/#monitoring.coreos.com/v1.ServiceMonitor
ENDPOINT: Schema = strict(
    {
        "port": {"type": "string"},
        "targetPort": {"type": ["string", "integer"]},
        "path": {"type": "string", "pattern": "^/"},
        "scheme": {"enum": ["http", "https", "HTTP", "HTTPS"]},
        "interval": {
            "type": "string",
            "pattern": DURATION,
        },
        "scrapeTimeout": {"type": "string"},
        "honorLabels": {"type": "boolean"},
        "relabelings": {"type": "array", "items": {"type": "object"}},
        "metricRelabelings": {"type": "array", "items": {"type": "object"}},
    }
)
SERVICE_MONITOR = resource(
    "monitoring.coreos.com/v1",
    "ServiceMonitor",
    strict(
        {
            "selector": LABEL_SELECTOR,
            "namespaceSelector": strict(
                {
                    "any": {"type": "boolean"},
                    "matchNames": {"type": "array", "items": {"type": "string"}},
                }
            ),
            "endpoints": {"type": "array", "minItems": 1, "items": ENDPOINT},
            "jobLabel": {"type": "string"},
            "targetLabels": {"type": "array", "items": {"type": "string"}},
            "podTargetLabels": {"type": "array", "items": {"type": "string"}},
        },
        "selector",
        "endpoints",
    ),
)

CRD_SCHEMAS: dict[tuple[str, str], Schema] = {
    ("keda.sh/v1alpha1", "ScaledObject"): SCALED_OBJECT,
    ("monitoring.coreos.com/v1", "ServiceMonitor"): SERVICE_MONITOR,
}

# The metadata keys of KEDA's `temporal` trigger (KEDA 2.18-2.20 scaler docs and
# pkg/scalers/temporal_scaler.go): a misspelt key is ignored by KEDA, so it is checked here.
TEMPORAL_TRIGGER_KEYS = frozenset(
    {
        "endpoint",
        "endpointFromEnv",
        "namespace",
        "taskQueue",
        "targetQueueSize",
        "activationTargetQueueSize",
        "queueTypes",
        "workerDeploymentName",
        "workerDeploymentBuildId",
        "minConnectTimeout",
        "unsafeSsl",
        "tlsServerName",
        "apiKeyFromEnv",
    }
)
TEMPORAL_QUEUE_TYPES = frozenset({"workflow", "activity", "nexus"})
