"""The local environment: the sandbox plus the pipeline (`make demo`, `make dev`).

Not the sandbox package (which imports nothing from clients, rules or defs) and not the code location:
these entry points start a sandbox and point the pipeline's definitions at it, so they need both, and
the sandbox extra (`pip install 'halo-sync-pipeline[sandbox]'`).
"""
