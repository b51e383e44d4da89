"""Dagster wiring: resources, assets grouped by source system (halo, m365, sync), checks, jobs, schedules."""
