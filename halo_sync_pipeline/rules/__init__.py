"""The sync's rules as pure functions over pandas DataFrames (no Dagster, no HTTP).

Source frames in, plan frames out; the shapes are the contracts in docs/architecture.md
and the pandera models in `halo_sync_pipeline.schemas.plan`.
"""
