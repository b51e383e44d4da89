"""A local, faithful simulator of the Halo PSA API and Microsoft identity + Graph, loaded from an estate file."""

from pathlib import Path

# The small estate the demo, `make dev` and many tests start from (`generate 12 8 7 --pretty`).
EXAMPLE_ESTATE = Path(__file__).with_name("example_estate.json")
