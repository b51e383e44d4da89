"""End-to-end tests: the real Dagster webserver over GraphQL, and PostgreSQL instance storage."""
