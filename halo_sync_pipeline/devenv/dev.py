"""`make dev`: the sandbox plus `dagster dev` on workspace.yaml, with the UI pointed at the sandbox.

The sandbox resumes its state folder if it exists (so what earlier runs wrote is still there);
delete the folder or pass --reset to start again from the example estate.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from halo_sync_pipeline.sandbox import EXAMPLE_ESTATE
from halo_sync_pipeline.sandbox.server import start_sandbox, state_exists


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--estate", type=Path, default=EXAMPLE_ESTATE)
    parser.add_argument("--reset", action="store_true")
    parser.add_argument("--port", type=int, default=3000)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    resume = state_exists(args.state_dir) and not args.reset
    estate = None if resume else json.loads(args.estate.read_text())
    with start_sandbox(args.state_dir, estate, reset=args.reset) as sandbox:
        env_file = args.state_dir / "sandbox.env"
        sandbox.write_env_file(env_file)
        print(f"sandbox ready (env: {env_file}); Dagster UI on http://127.0.0.1:{args.port}", flush=True)
        # Its own process group, so that stopping it reaches the webserver and daemon it starts.
        webserver = subprocess.Popen(
            [sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(args.port)],
            env=os.environ | sandbox.env,
            start_new_session=True,
        )
        try:
            return webserver.wait()
        except KeyboardInterrupt:
            return _stop(webserver)


def _stop(process: subprocess.Popen[bytes], grace_s: float = 10) -> int:
    """SIGINT to the whole group, as Ctrl-C in a terminal does, then SIGKILL: dagster dev 1.13 stops its
    daemon at once but its webserver can linger for minutes after an interrupt."""
    os.killpg(process.pid, signal.SIGINT)
    try:
        return process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        return process.wait()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM stops everything as cleanly as Ctrl-C


if __name__ == "__main__":
    sys.exit(main())
