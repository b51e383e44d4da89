"""`make demo`'s entry point: sandbox + live apply + summary, in the project's own Dagster instance layout."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from halo_sync_pipeline.devenv import demo
from halo_sync_pipeline.sandbox.credentials import SandboxCredentials
from halo_sync_pipeline.sandbox.server import sandbox_env

REPO = Path(__file__).resolve().parents[2]
PARTNER = "0f0e0d0c-0000-4000-8000-000000000001"


def test_demo_runs_a_live_sync_on_the_example_estate_and_summarises_it(tmp_path, monkeypatch, capsys):
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("HALO_SYNC_STORAGE_DIR", str(tmp_path / "storage"))
    # The demo exports the sandbox's variables into the environment; register them for restoring.
    for name in sandbox_env("https://h", "https://m", tmp_path, SandboxCredentials.generate(PARTNER)):
        monkeypatch.setenv(name, "")

    assert demo.main(["--state-dir", str(tmp_path / "sandbox")]) == 0

    out = capsys.readouterr().out
    assert "succeeded" in out
    every_method = {
        "tenant_id",
        "name",
        "default_domain_website",
        "verified_domain_website",
        "contact_email_domain",
        "unmatched",
        "conflict",
    }
    assert {m for m in every_method if re.search(rf"^  {m}\s+\d+$", out, re.M)} == every_method
    assert re.search(r"^  \(conflicts: [1-9]\d*: .+\)$", out, re.M)
    quarantined = re.search(r"^quarantined Halo records: (\d+)$", out, re.M)
    assert quarantined and int(quarantined.group(1)) >= 5
    for kind in ("company", "contact", "site", "tenant mapping"):
        assert re.search(rf"^  {kind}\s+[1-9]\d*$", out, re.M), kind
    assert re.search(r"^  create\s+applied\s+\d+$", out, re.M)
    report = Path(re.search(r"^inactive report: (.+)$", out, re.M).group(1))
    assert report.is_file() and report.read_text(encoding="utf-8").startswith(
        "Company,Name,Email,Mobile,Phone,Reason,Tenant,Held,Hold reason"
    )
    assert str(tmp_path / "storage") in str(report)
