"""Modules that add commands to the `leadflow` CLI; each defines `register(app: typer.Typer)`."""

CLI_MODULES = (
    "workers.cli_enrich",  # leadflow enrich
    "workers.cli_crm",  # leadflow integrations ...
    "workers.cli_eval",  # leadflow eval
    "workers.cli_simulate",  # leadflow simulate
    "workers.cli_keys",  # leadflow key ..., leadflow audit
    "workers.cli_tenant_delete",  # leadflow tenant delete
    "workers.cli_inventory",  # leadflow inventory ...
    "workers.cli_campaign",  # leadflow campaign ...
    "workers.cli_user",  # leadflow user ...
    "workers.cli_dashboard",  # leadflow dashboard
)
