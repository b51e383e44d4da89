"""`halo-sync-sandbox`: serve a sandbox in the foreground, generate an estate, export a state dir.

The script is installed with the package, the servers only with the sandbox extra: without it the
command says how to get it (exit 2) instead of failing on an import.
"""

from __future__ import annotations

import argparse
import inspect
import json
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from halo_sync_pipeline.sandbox.estate import EstateError

FAULT_KINDS = ["500", "503", "reset"]
# What the sandbox extra brings (pyproject.toml); a production install has none of them.
SANDBOX_EXTRA_MODULES = frozenset({"uvicorn", "starlette", "trustme"})
MISSING_EXTRA = (
    "halo-sync-sandbox needs the sandbox extra (no module {module}): pip install 'halo-sync-pipeline[sandbox]'"
)


def _missing_extra() -> str | None:
    """The name of the sandbox-extra module that cannot be imported, or None when the servers can run."""
    try:
        import halo_sync_pipeline.sandbox.server  # noqa: F401  (imports uvicorn, starlette and trustme)
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] in SANDBOX_EXTRA_MODULES:
            return exc.name
        raise  # anything else is a bug, not a missing extra
    return None


def _rate_limit(value: str) -> tuple[int, float] | None:
    from halo_sync_pipeline.sandbox.halo_app import parse_rate_limit  # sandbox extra: checked in main

    try:
        return parse_rate_limit(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _probability(value: str) -> float:
    number = float(value)
    if not 0 <= number <= 1:
        raise argparse.ArgumentTypeError(f"a probability is between 0 and 1, got {value}")
    return number


# `serve` options for how the services behave: (flag, start_sandbox's parameter, type, metavar, help).
_BEHAVIOUR_FLAGS: tuple[tuple[str, str, Callable[[str], Any], str | None, str], ...] = (
    ("--latency-ms", "latency_ms", float, None, "ms added to every request"),
    ("--jitter-ms", "jitter_ms", float, None, "at most this many random ms more"),
    ("--halo-rate-limit", "halo_rate_limit", _rate_limit, "N/SECONDS|off", "Halo requests per window"),
    ("--graph-rate", "graph_rate", float, None, "Graph requests/s per tenant"),
    ("--graph-burst", "graph_burst", int, None, "Graph burst per tenant"),
    ("--token-lifetime", "token_lifetime_s", float, "SECONDS", "lifetime of issued tokens"),
)
BEHAVIOUR_OPTIONS = frozenset(option for _, option, *_ in _BEHAVIOUR_FLAGS)


def _default_of(option: str, what: str) -> str:
    """Help text with start_sandbox's default for `option` (the sandbox extra is checked before parsing)."""
    from halo_sync_pipeline.sandbox.server import start_sandbox

    default = inspect.signature(start_sandbox).parameters[option].default
    shown = "/".join(map(str, default)) if isinstance(default, tuple) else default
    return f"{what} (default {shown})"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="halo-sync-sandbox", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the Halo and Microsoft servers until SIGINT/SIGTERM")
    serve.add_argument("--estate", type=Path, help="estate JSON to start from (omit to resume --state-dir)")
    serve.add_argument("--state-dir", type=Path, required=True)
    serve.add_argument("--env-file", type=Path, required=True, help="where to write the variables for the pipeline")
    serve.add_argument("--reset", action="store_true", help="start again from the estate, dropping saved state")
    # How the services behave: passed on only when given, so that start_sandbox's defaults are the one source.
    behaviour = serve.add_argument_group("how the services behave")
    for flag, option, kind, metavar, what in _BEHAVIOUR_FLAGS:
        behaviour.add_argument(
            flag, dest=option, type=kind, metavar=metavar, default=argparse.SUPPRESS, help=_default_of(option, what)
        )
    serve.add_argument(
        "--fault-rate",
        type=_probability,
        default=0.0,
        help="probability of a 500, 503 or connection reset on every API request",
    )

    generate = commands.add_parser("generate", help="print a generated estate as JSON")
    generate.add_argument("--tenants", type=int, required=True)
    generate.add_argument("--users-per-tenant", type=int, required=True)
    generate.add_argument("--seed", type=int, default=0)
    generate.add_argument("--pretty", action="store_true", help="indented JSON (for small estates meant to be read)")

    export = commands.add_parser("export", help="print the estate of a stopped state dir")
    export.add_argument("--state-dir", type=Path, required=True)
    return parser


def _behaviour(args: argparse.Namespace) -> dict[str, Any]:
    """The service-behaviour options given on the command line, under start_sandbox's parameter names."""
    return {name: value for name, value in vars(args).items() if name in BEHAVIOUR_OPTIONS}


def _serve(args: argparse.Namespace) -> int:
    from halo_sync_pipeline.sandbox.server import start_sandbox  # sandbox extra: checked in main

    stop_requested = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop_requested.set())
    faults = (
        {"endpoints": [{"path": ".*", "error_rate": args.fault_rate, "kinds": FAULT_KINDS}]}
        if args.fault_rate
        else None
    )
    sandbox = start_sandbox(args.state_dir, args.estate, reset=args.reset, faults=faults, **_behaviour(args))
    try:
        env_file = sandbox.write_env_file(args.env_file)
        print(f"Halo API:        {sandbox.halo_url}", flush=True)
        print(f"Microsoft API:   {sandbox.ms_url}", flush=True)
        print(f"CA bundle:       {sandbox.ca_bundle}", flush=True)
        print(f"env file:        {env_file.resolve()}  (set -a; . {env_file})", flush=True)
        print("sandbox ready; stop with Ctrl-C", flush=True)
        stop_requested.wait()
    finally:
        sandbox.stop()
    print("sandbox stopped", flush=True)
    return 0


def _generate(args: argparse.Namespace) -> int:
    from halo_sync_pipeline.sandbox.generator import generate_estate  # only this command needs it

    estate = generate_estate(args.tenants, args.users_per_tenant, args.seed)
    # Compact by default: an indented 200k-user estate takes minutes to print and is too big to read anyway.
    sys.stdout.write(json.dumps(estate, indent=2) if args.pretty else json.dumps(estate, separators=(",", ":")))
    sys.stdout.write("\n")
    return 0


def _export(args: argparse.Namespace) -> int:
    from halo_sync_pipeline.sandbox.server import export_state_dir  # sandbox extra: checked in main

    sys.stdout.write(json.dumps(export_state_dir(args.state_dir), separators=(",", ":")))
    sys.stdout.write("\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    if missing := _missing_extra():
        print(MISSING_EXTRA.format(module=missing), file=sys.stderr)
        return 2
    from halo_sync_pipeline.sandbox.server import SandboxStateError

    args = _parser().parse_args(argv)
    command = {"serve": _serve, "generate": _generate, "export": _export}[args.command]
    try:
        return command(args)
    except (EstateError, SandboxStateError) as exc:
        print(f"halo-sync-sandbox: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
