"""The names of the environment variables the pipeline reads: one place, used by the Dagster resources,
the schedules, the alerts and the sandbox's env file (which sets them to point the pipeline at it).

Pure constants (no imports), so every room may use them.
"""

# Halo PSA API application
HALO_URL = "HALO_URL"
HALO_CLIENT_ID = "HALO_CLIENT_ID"
HALO_CLIENT_SECRET = "HALO_CLIENT_SECRET"  # secret: only ever passed on as a Dagster EnvVar
HALO_TENANT = "HALO_TENANT"
HALO_USE_REPORTS = "HALO_USE_REPORTS"
HALO_WRITE_BATCH_SIZE = "HALO_WRITE_BATCH_SIZE"

# The partner's Microsoft Entra app
M365_LOGIN_URL = "M365_LOGIN_URL"
M365_GRAPH_URL = "M365_GRAPH_URL"
M365_PARTNER_TENANT_ID = "M365_PARTNER_TENANT_ID"
M365_CLIENT_ID = "M365_CLIENT_ID"
M365_CLIENT_SECRET = "M365_CLIENT_SECRET"  # secret
M365_REFRESH_TOKEN = "M365_REFRESH_TOKEN"  # secret
M365_TENANT_SOURCE = "M365_TENANT_SOURCE"

# The sync itself
CA_BUNDLE = "HALO_SYNC_CA_BUNDLE"  # the sandbox's CA; unset in real use
SETTINGS_FILE = "HALO_SYNC_SETTINGS_FILE"
PLAN_CRON = "HALO_SYNC_PLAN_CRON"
APPLY_CRON = "HALO_SYNC_APPLY_CRON"
TIMEZONE = "HALO_SYNC_TIMEZONE"
TEAMS_WEBHOOK_URL = "HALO_SYNC_TEAMS_WEBHOOK_URL"  # secret: it carries a signature
DAGSTER_URL = "HALO_SYNC_DAGSTER_URL"

SECRETS = (HALO_CLIENT_SECRET, M365_CLIENT_SECRET, M365_REFRESH_TOKEN, TEAMS_WEBHOOK_URL)
