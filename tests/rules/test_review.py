"""tenant_review: one row per tenant, its whole story, problems first."""

import json

from halo_sync_pipeline.rules.contacts import plan_contact_changes
from halo_sync_pipeline.rules.matching import match_companies
from halo_sync_pipeline.rules.review import review_stories, review_summary, tenant_review
from halo_sync_pipeline.schemas.plan import TenantReviewSchema
from halo_sync_pipeline.settings import SyncSettings
from tests.rules import frames as f
from tests.rules.estate import DOMAINS, MAIN_SITE, contact, user


def _review(settings=SyncSettings()):
    tenants = f.tenants(
        {"tenant_id": "t1", "display_name": "Contoso", "default_domain": "contoso.com"},
        {"tenant_id": "t2", "display_name": "Zeta", "default_domain": "zeta.com"},
        {
            "tenant_id": "t3",
            "display_name": "Broken",
            "default_domain": "b.com",
            "status": "failed",
            "error": "401 Authorization_IdentityNotFound",
        },
        {"tenant_id": "t4", "display_name": "Alpha", "default_domain": "alpha.com"},
    )
    companies = f.companies({"company_id": 1, "name": "Contoso"}, {"company_id": 4, "name": "Alpha"})
    mappings = match_companies(tenants, DOMAINS, companies, f.tenant_mappings(), f.contacts(), settings)
    leavers = [contact(100 + i, email=f"left{i}@contoso.com") for i in range(11)]
    changes = plan_contact_changes(
        mappings, f.users(user("u1", "ann")), DOMAINS, f.contacts(*leavers), MAIN_SITE, settings
    )
    return tenant_review(mappings, changes, tenants), changes


def test_problems_first_with_their_full_story():
    review, _ = _review()
    TenantReviewSchema.validate(review, lazy=True)
    assert review["tenant_name"].tolist() == ["Broken", "Contoso", "Zeta", "Alpha"]
    assert review["needs_review"].tolist() == [True, True, True, False]
    row = review.set_index("tenant_name").loc["Contoso"]
    assert (row["method"], row["company_id"], row["creates"], row["deactivates"], row["held"]) == ("name", 1, 1, 11, 11)
    assert row["hold_reasons"].startswith(
        "11 × deactivate: guard: 11 deactivations > max(10, 0.5 × 11 active contacts)"
    )
    assert row["write_back"].startswith('add tenant t1 to the Azure AD mappings of company 1 "Contoso"')
    broken = review.set_index("tenant_name").loc["Broken"]
    assert "users failed to load (see load_error)" in broken["warnings"]
    assert broken["load_error"] == "401 Authorization_IdentityNotFound"
    zeta = review.set_index("tenant_name").loc["Zeta"]
    assert zeta["warnings"] == "unmatched (no_candidate): nothing is written for this tenant"
    assert len(zeta["evidence"]) > 80  # the full evidence, never cut


def test_review_summary_names_tenants_not_guids():
    review, changes = _review()
    summary = review_summary(review, changes, quarantined_records=2)
    assert summary == {
        "held_deactivations": [{"tenant": "Contoso", "count": 11}],
        "conflicts": [],
        "unmatched": ["Broken", "Zeta"],
        "failed_to_load": ["Broken"],
        "quarantined_records": 2,
    }
    json.dumps(summary)


def test_deactivations_held_by_the_switched_off_setting_are_no_alert():
    review, changes = _review(SyncSettings(deactivate_contacts=False))
    assert review_summary(review, changes, 0)["held_deactivations"] == []
    assert review.set_index("tenant_name").loc["Contoso", "held"] == 11


def test_review_stories_one_paragraph_per_problem_tenant_escaped():
    review, _ = _review()
    stories = review_stories(review, limit=2)
    paragraphs = stories.split("\n\n")
    assert paragraphs[0].startswith("**Broken** — unmatched (no\\_candidate):")
    assert "Load error: 401 Authorization\\_IdentityNotFound" in paragraphs[0]
    assert paragraphs[1].startswith('**Contoso** — name, company 1 "Contoso": 11 action(s) held')
    assert "Held: 11 × deactivate: guard: 11 deactivations" in paragraphs[1]
    assert paragraphs[-1] == "_1 more in the table and the CSV._"
