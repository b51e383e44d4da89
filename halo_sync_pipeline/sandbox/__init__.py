"""A local, faithful simulator of the Halo PSA API and Microsoft identity + Graph, loaded from an estate file."""
