"""Take docs/lineage.png (the Dagster UI's global asset lineage graph) and docs/tenant_review.png (the
tenant_review asset's page with its table of every tenant), from a running `dagster dev`.

    .venv/bin/python scripts/screenshot_lineage.py [--out docs/lineage.png] [--review-out docs/tenant_review.png]

What it does, all on 127.0.0.1 and all stopped at the end (also on error):
1. makes sure Debian's `chromium` is there (as root: `apt-get install -y chromium`; Playwright's
   browser download cannot work here, and no test depends on Chromium);
2. starts the sandbox with the example estate and `dagster dev` on workspace.yaml with a throw-away
   DAGSTER_HOME (tests/e2e/helpers.py);
3. unless --no-materialise, runs `halo_sync_apply` once as a DRY RUN (the default run config: the
   whole plan is computed and checked, nothing is written to Halo) so every node shows a status;
4. drives headless Chromium over the DevTools protocol (no Playwright/Selenium needed): opens
   /asset-groups (the "Global asset lineage" page) with the UI's top-down layout, hides the side
   panels, expands every group (halo, m365, sync), waits until every asset is drawn with its status
   and the page has settled, and saves a PNG screenshot;
5. opens tenant_review's Events tab (three clicks from the asset catalog: Catalog, tenant_review, Events;
   the widest view of its latest materialisation) and saves it: the stories of the tenants needing review
   and the `tenants` table.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import httpx  # noqa: E402

from halo_sync_pipeline.sandbox import EXAMPLE_ESTATE  # noqa: E402
from tests.e2e.helpers import (  # noqa: E402
    dagster_dev,
    free_port,
    managed_process,
    wait_for_run,
    wait_until,
)

ASSETS = (
    "halo_companies",
    "halo_contacts",
    "halo_sites",
    "halo_tenant_mappings",
    "m365_tenants",
    "m365_domains",
    "m365_users",
    "company_mappings",
    "contact_changes",
    "tenant_review",
    "inactive_report",
    "applied_changes",
)
REVIEW_SHOT_HEIGHT = 2000
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--hide-scrollbars",
    "--mute-audio",
)


def ensure_chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        sys.exit("chromium is missing: install Debian's package `chromium` (apt-get install -y chromium) as root")
    print("installing Debian's chromium (apt-get) ...", flush=True)
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], env=env, check=True)
    subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], env=env, check=True)
    found = shutil.which("chromium")
    if not found:
        sys.exit("apt-get installed chromium but it is not on PATH")
    return found


class DevTools:
    """A minimal Chrome DevTools Protocol client over one page's websocket."""

    def __init__(self, ws_url: str) -> None:
        from websockets.sync.client import connect

        self._stack = contextlib.ExitStack()
        self._ws = self._stack.enter_context(connect(ws_url, max_size=64 * 1024 * 1024, open_timeout=30))
        self._ids = itertools.count(1)

    def call(self, method: str, params: dict[str, Any] | None = None, timeout: float = 60.0) -> dict[str, Any]:
        message_id = next(self._ids)
        self._ws.send(json.dumps({"id": message_id, "method": method, "params": params or {}}))
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"DevTools {method} did not answer in {timeout}s")
            reply = json.loads(self._ws.recv(timeout=remaining))
            if reply.get("id") == message_id:  # events (no id) are ignored
                if "error" in reply:
                    raise RuntimeError(f"DevTools {method}: {reply['error']}")
                return reply.get("result", {})

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        return result.get("result", {}).get("value")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._stack.close()


# Which of the assets are drawn as nodes of the graph, and whether something is still loading.
_DRAWN_JS = """
(() => {
  const names = %s;
  const text = document.body ? document.body.innerText : "";
  return JSON.stringify({present: names.filter(n => text.includes(n)), title: document.title,
                         loading: /Loading/.test(text)});
})()
""".replace("%s", json.dumps(list(ASSETS)))

# Hide the main navigation and the asset tree beside the graph (both are toggled by a
# "panel_show_right" button), so the graph gets the whole width.
_HIDE_PANELS_JS = """
Array.from(document.querySelectorAll('[aria-label="panel_show_right"]'))
  .map(icon => icon.closest('button')).filter(Boolean).map(button => { button.click(); return true; }).length
"""


@contextlib.contextmanager
def browser(chromium: str, width: int, height: int):
    """Headless Chromium with one page, driven over DevTools; stopped on exit."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="halo-sync-chromium-") as profile:
        cmd = [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            "--remote-debugging-address=127.0.0.1",
            f"--remote-debugging-port={port}",
            "about:blank",
        ]
        with managed_process(
            cmd, env=os.environ, cwd=REPO_ROOT, log_path=Path(profile) / "chromium.log", stop_timeout=15
        ):
            targets = wait_until(
                lambda: [
                    t
                    for t in httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=5).json()
                    if t.get("type") == "page"
                ],
                timeout=60,
                what="Chromium's DevTools endpoint",
            )
            with contextlib.closing(DevTools(targets[0]["webSocketDebuggerUrl"])) as tools:
                tools.call("Page.enable")
                tools.call(
                    "Emulation.setDeviceMetricsOverride",
                    {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
                )
                yield tools


def _settle(tools: DevTools) -> None:
    """Wait until the page text stops changing (statuses and tables load after the page)."""
    previous = None
    for _ in range(20):
        time.sleep(1.0)
        current = tools.evaluate("document.body.innerText")
        if current == previous:
            return
        previous = current


def screenshot_tenant_review(
    chromium: str, base_url: str, out: Path, *, width: int, height: int, settle_timeout: float
) -> None:
    """tenant_review's Events tab: its latest materialisation, with the stories and the table of every tenant."""
    with browser(chromium, width, height) as tools:
        tools.call("Page.navigate", {"url": base_url + "/assets/tenant_review?view=events"})

        def table_shown() -> bool:
            text = tools.evaluate("document.body ? document.body.innerText : ''") or ""
            return "needing_review" in text and "evidence" in text

        wait_until(table_shown, timeout=settle_timeout, interval=1.0, what="the tenant_review table")
        _settle(tools)
        # The page scrolls inside the app, not the document: a taller window shows more of the table.
        tools.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": REVIEW_SHOT_HEIGHT, "deviceScaleFactor": 1, "mobile": False},
        )
        _settle(tools)
        shot = tools.call("Page.captureScreenshot", {"format": "png"})
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(base64.b64decode(shot["data"]))


def screenshot(
    chromium: str, base_url: str, groups: list[str], out: Path, *, width: int, height: int, settle_timeout: float
) -> None:
    """Capture the global asset lineage page with every group expanded, top-down, fitted to the window."""
    expanded = "/asset-groups?" + urlencode({"expanded": ",".join(f"global@global:{g}" for g in groups)})
    with browser(chromium, width, height) as tools:

        def page_shows(*words: str) -> bool:
            text = tools.evaluate("document.body ? document.body.innerText : ''") or ""
            return all(word in text for word in words)

        # 1. Top-down layout (the UI's own setting, kept in localStorage): the three groups sit
        #    side by side and the whole graph fits the window with readable nodes.
        tools.call("Page.navigate", {"url": base_url + "/asset-groups"})
        wait_until(lambda: page_shows("Global asset lineage"), timeout=settle_timeout, what="the UI to load")
        tools.evaluate("localStorage.setItem('asset-graph-direction', JSON.stringify('vertical'))")
        tools.call("Page.navigate", {"url": base_url + "/asset-groups"})
        wait_until(
            lambda: page_shows("Global asset lineage", *groups),
            timeout=settle_timeout,
            what="the collapsed groups",
        )
        # 2. Give the graph the whole width, then expand every group through the app's router: the
        #    new layout is zoomed to fit the (now wider) viewport.
        tools.evaluate(_HIDE_PANELS_JS)
        time.sleep(1.0)
        tools.evaluate(
            f"window.history.pushState({{}}, '', {json.dumps(expanded)});"
            "window.dispatchEvent(new PopStateEvent('popstate', {state: {}})); true"
        )
        last: dict[str, Any] = {}

        def drawn() -> bool:
            nonlocal last
            last = json.loads(tools.evaluate(_DRAWN_JS) or "{}")
            return len(last.get("present", [])) == len(ASSETS) and not last.get("loading")

        try:
            wait_until(drawn, timeout=settle_timeout, interval=1.0, what="the lineage graph to render")
        except TimeoutError as exc:
            failed_shot = out.with_name(out.stem + ".failed.png")
            failed_shot.write_bytes(base64.b64decode(tools.call("Page.captureScreenshot", {"format": "png"})["data"]))
            raise SystemExit(f"{exc}; last state: {last}; what the page showed: {failed_shot}") from None
        # 3. Statuses load after the nodes and the zoom animates: wait until the text stops changing.
        _settle(tools)
        shot = tools.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": False})
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(base64.b64decode(shot["data"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "lineage.png")
    parser.add_argument("--review-out", type=Path, default=REPO_ROOT / "docs" / "tenant_review.png")
    parser.add_argument("--no-materialise", action="store_true", help="skip the dry-run materialisation")
    # Wide enough that every node of the lineage graph shows its whole name at the zoom that fits them all.
    parser.add_argument("--width", type=int, default=2200)
    parser.add_argument("--height", type=int, default=1100)
    args = parser.parse_args(argv)

    chromium = ensure_chromium()
    from halo_sync_pipeline.sandbox.server import start_sandbox

    with tempfile.TemporaryDirectory(prefix="halo-sync-screenshot-") as tmp:
        estate = json.loads(EXAMPLE_ESTATE.read_text())
        with (
            start_sandbox(Path(tmp) / "sandbox", estate, reset=True) as sandbox,
            dagster_dev(sandbox.env, workdir=Path(tmp) / "dagster") as dev,
        ):
            print(f"dagster dev on {dev.url}", flush=True)
            if not args.no_materialise:
                run_id = dev.client().submit_job_execution("halo_sync_apply")  # default config: dry run
                status = wait_for_run(dev, run_id, timeout=360)
                print(f"dry-run halo_sync_apply {run_id}: {status}", flush=True)
            # Dismiss the UI's one-time "join the community" dialog.
            dev.graphql("mutation { setNuxSeen }")
            groups = sorted({n["groupName"] for n in dev.graphql("{ assetNodes { groupName } }")["assetNodes"]})
            screenshot(chromium, dev.url, groups, args.out, width=args.width, height=args.height, settle_timeout=120)
            screenshot_tenant_review(
                chromium, dev.url, args.review_out, width=args.width, height=args.height, settle_timeout=120
            )
    for written in (args.out, args.review_out):
        print(f"wrote {written} ({written.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
