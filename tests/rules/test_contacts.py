import json

import numpy as np
import pandas as pd
import pytest

from halo_sync_pipeline.halo_api_schema import check_body
from halo_sync_pipeline.rules.contacts import (
    NO_CODE,
    among,
    choose_site,
    create_contact_body,
    hold_contacts_acted_on_twice,
    pair_codes,
    plan_contact_changes,
    secondary_emails,
    shared_codes,
    user_addresses,
)
from halo_sync_pipeline.settings import SyncSettings
from tests.rules import frames as f
from tests.rules.estate import DOMAINS, MAIN_SITE, actions, contact, mappings, plan, user


def _body(changes, row=0):
    return json.loads(changes["body"].iloc[row])


# ------------------------------------------------------------ linked by azureoid


def test_linked_active_contact_needs_nothing():
    assert plan([user("u1", "ann")], [contact(5, email="ann@contoso.com", azureoid="u1")]).empty


def test_linked_inactive_contact_is_reactivated_case_insensitive():
    changes = plan([user("u1", "ann")], [contact(5, email="x@contoso.com", azureoid="U1", inactive=True)])
    assert actions(changes) == [("reactivate", 5, "azureoid_matches_user", False)]
    assert _body(changes) == {"id": 5, "inactive": False}


def test_update_only_when_enabled_and_blank_never_overwrites():
    users = [
        user(
            "u1",
            "ann",
            given_name="Ann",
            surname="Smith",
            display_name="Ann Smith",
            business_phone=None,
            mobile_phone="07700",
        )
    ]
    contacts = [
        contact(
            5,
            email="ann@contoso.com",
            azureoid="u1",
            firstname="Anne",
            surname="Smith",
            name="Ann Smith",
            phonenumber="0123",
            mobilenumber="07700",
        )
    ]
    assert plan(users, contacts).empty  # update_contact_fields is off by default
    changes = plan(users, contacts, SyncSettings(update_contact_fields=True))
    assert actions(changes) == [("update", 5, "fields_differ", False)]
    assert _body(changes) == {"id": 5, "firstname": "Ann"}  # phonenumber "0123" kept: M365 value blank
    assert 'firstname "Anne" → "Ann"' in changes["evidence"].iloc[0]


# ------------------------------------------------------------ paired by email


def test_pair_by_upn_with_empty_or_stale_azureoid():
    users = [user("u1", "ann"), user("u2", "bob")]
    contacts = [
        contact(5, email="ANN@contoso.com "),
        contact(6, email="bob@contoso.com", azureoid="deleted-user", inactive=True),
    ]
    changes = plan(users, contacts)
    assert actions(changes) == [("pair", 5, "email_matches_upn", False), ("pair", 6, "email_matches_upn", False)]
    assert _body(changes.loc[changes["contact_id"] == 6]) == {"id": 6, "azureoid": "u2", "inactive": False}


def test_no_pair_when_azureoid_belongs_to_another_current_user():
    users = [user("u1", "ann"), user("u2", "bob", licence_count=0)]
    changes = plan(users, [contact(5, email="ann@contoso.com", azureoid="u2")])
    # Contact 5 is bob's, not ann's, yet it carries ann's address: a create for ann would give the
    # company a second contact with it, so it is held and says which contact blocks it. Contact 5 is
    # left alone because its email is a selected user's address (never deactivated).
    assert actions(changes) == [("create", "u1", "new_user", True)]
    assert (
        "contact 5 of this company carries ann@contoso.com but it is linked to another user (u2)"
        in (changes["hold_reason"].iloc[0])
    )


def test_several_email_candidates_ambiguous_and_never_created():
    changes = plan(
        [user("u1", "ann")], [contact(5, email="ann@contoso.com"), contact(6, email="ann@contoso.com", azureoid="old")]
    )
    assert actions(changes) == [
        ("ambiguous", 5, "several_contacts_match_upn", True),
        ("ambiguous", 6, "several_contacts_match_upn", True),
    ]
    assert changes["body"].isna().all()


def test_paired_user_is_not_also_created():
    # Seed bug: it paired the contact and then created the same person again.
    changes = plan([user("u1", "ann")], [contact(5, email="ann@contoso.com")])
    assert changes["action"].tolist() == ["pair"]


# ------------------------------------------------------------ created


def test_create_body_uses_real_halo_fields_and_validates():
    u = user(
        "u1",
        "ann",
        given_name="Ann",
        surname="Smith",
        job_title="CFO",
        business_phone="+44 1",
        mobile_phone="07700",
        fax=" ",
        street_address="9 Nowhere",
        smtp_aliases="ann.smith@contoso.com;sip:ann@contoso.com;x500:/o=exch/cn=ann;ann@contoso.onmicrosoft.com;ann@contoso.com;a2@contoso.com;a3@contoso.com",
    )
    changes = plan([u], [])
    body = _body(changes)
    assert body == {
        "client_id": 1,
        "site_id": 10,
        "name": "Ann",
        "firstname": "Ann",
        "surname": "Smith",
        "title": "CFO",
        "emailaddress": "ann@contoso.com",
        "email2": "ann.smith@contoso.com",
        "email3": "a2@contoso.com",
        "phonenumber": "+44 1",
        "mobilenumber": "07700",
        "azureoid": "u1",
    }
    # Seed bug: companyID / lastName, which Halo silently drops.
    assert check_body("Users", body).ok
    assert "companyID" not in body and "lastName" not in body
    assert changes[["name", "email", "phonenumber", "mobilenumber"]].iloc[0].tolist() == [
        "Ann",
        "ann@contoso.com",
        "+44 1",
        "07700",
    ]


def test_secondary_emails_drop_sip_x500_onmicrosoft_and_upn():
    # Seed bug: sip: and x500: proxy addresses ended up in email2/email3.
    aliases = (
        "sip:ann@contoso.com;X500:/o=x;ann@contoso.onmicrosoft.com;ANN@contoso.com;ann.s@contoso.com;ann.s@contoso.com"
    )
    assert secondary_emails(aliases, "ann@contoso.com", "ann@contoso.com") == ["ann.s@contoso.com"]
    assert secondary_emails(pd.NA, "ann@contoso.com", "ann@contoso.com") == []


def test_secondary_emails_upn_first_then_aliases_in_graph_order():
    aliases = "ann@contoso.com;zed@contoso.com;ann.s@contoso.com"
    # The UPN differs from mail and is a real domain: it comes first, then the aliases in Graph's order.
    assert secondary_emails(aliases, "ann.old@contoso.com", "ann@contoso.com") == [
        "ann.old@contoso.com",
        "zed@contoso.com",
        "ann.s@contoso.com",
    ]
    # An onmicrosoft.com UPN is never an email2/email3.
    assert secondary_emails(aliases, "ann@contoso.onmicrosoft.com", "ann@contoso.com") == [
        "zed@contoso.com",
        "ann.s@contoso.com",
    ]


def test_create_body_omits_blank_fields():
    record = {
        "upn": "a@b.com",
        "mail": None,
        "smtp_aliases": None,
        "display_name": "A",
        "given_name": "",
        "user_surname": None,
        "job_title": None,
        "business_phone": None,
        "mobile_phone": None,
        "fax": None,
        "user_key": "u1",
    }
    assert create_contact_body(record, 3, None) == (
        {"client_id": 3, "name": "A", "emailaddress": "a@b.com", "azureoid": "u1"},
        [],
    )


def test_create_body_primary_address_is_mail_else_upn():
    record = {
        "upn": "ann@contoso.onmicrosoft.com",
        "mail": "Ann@Contoso.com ",
        "smtp_aliases": "ann@contoso.com;a.x@contoso.com",
        "display_name": "Ann",
        "given_name": None,
        "user_surname": None,
        "job_title": None,
        "business_phone": None,
        "mobile_phone": None,
        "fax": None,
        "user_key": "u1",
    }
    body, _ = create_contact_body(record, 3, 7)
    assert (body["emailaddress"], body["email2"]) == ("ann@contoso.com", "a.x@contoso.com")
    assert "email3" not in body


def test_create_body_cleans_m365_text_and_notes_it():
    record = {
        "upn": "a@b.com",
        "mail": None,
        "smtp_aliases": None,
        "display_name": "x" * 5000,
        "given_name": " \u202eAnn ",
        "user_surname": "Sm\x00ith\r\n",
        "job_title": None,
        "business_phone": None,
        "mobile_phone": None,
        "fax": None,
        "user_key": "u1",
    }
    body, notes = create_contact_body(record, 3, None)
    assert body["name"] == "x" * 255 and body["firstname"] == "Ann" and body["surname"] == "Smith"
    assert "name: cut from 5000 to 255 characters" in notes
    assert (
        "surname: 1 control/bidi character(s) removed" in notes
        and "firstname: 1 control/bidi character(s) removed" in notes
    )
    # The note reaches the action's evidence.
    changes = plan([user("u1", "ann", display_name="y" * 300)], [])
    assert "name: cut from 300 to 255 characters" in changes["evidence"].iloc[0]


def test_choose_site_by_street_address_highest_id_then_main():
    sites = f.sites(
        {"site_id": 10, "company_id": 1, "name": "HQ", "line1": "1 Main St", "is_main": True},
        {"site_id": 11, "company_id": 1, "name": "A", "line1": "2 side st"},
        {"site_id": 12, "company_id": 1, "name": "B", "line1": " 2 SIDE ST "},
        {"site_id": 20, "company_id": 2, "name": "Only", "line1": "x"},
    )
    users = pd.DataFrame(
        {"company_id": [1, 1, 2, 3], "street_address": pd.array(["2 Side St ", None, "x", "x"], dtype="string")}
    )
    chosen = choose_site(users, sites)
    assert chosen["site_id"].tolist() == [12, 10, 20, pd.NA]
    assert "the company's main site" in chosen["site_evidence"].iloc[1]
    assert chosen["site_evidence"].iloc[3] == "the company has no usable site"


def test_user_without_street_address_never_lands_on_a_site_without_address():
    # pandas merges missing keys as equal; a missing street address must still mean "main site".
    sites = f.sites(
        {"site_id": 10, "company_id": 1, "name": "HQ", "line1": "1 Main St", "is_main": True},
        {"site_id": 11, "company_id": 1, "name": "Warehouse", "line1": None},
    )
    users = pd.DataFrame({"company_id": [1, 1], "street_address": pd.array([None, "  "], dtype="string")})
    chosen = choose_site(users, sites)
    assert chosen["site_id"].tolist() == [10, 10]
    assert chosen["site_evidence"].str.startswith('site 10 "HQ"').all()


def test_company_without_site_gets_held_create():
    changes = plan([user("u1", "ann")], [], sites=f.sites())
    assert actions(changes) == [("create", "u1", "no_site", True)]
    assert "site_id" not in _body(changes)


def test_no_creates_when_create_contacts_off():
    assert plan([user("u1", "ann")], [], SyncSettings(create_contacts=False)).empty


# ------------------------------------------------------------ deactivated


@pytest.mark.parametrize(
    ("user_fields", "reason"),
    [({"licence_count": 0}, "unlicensed"), ({"account_enabled": False}, "disabled"), ({"is_guest": True}, "guest")],
)
def test_deactivate_reason_from_filtered_user(user_fields, reason):
    changes = plan([user("u1", "ann", **user_fields)], [contact(5, email="ann@contoso.com", azureoid="u1")])
    assert actions(changes) == [("deactivate", 5, reason, False)]
    assert _body(changes) == {"id": 5, "inactive": True}
    assert changes["user_id"].iloc[0] == "u1"


def test_user_listed_twice_in_its_tenant_gives_the_plan_of_one_listing():
    # Never from Graph (the blocking m365_users_schema check names such rows); the rule must not crash on
    # it, nor act twice: this used to raise "Length mismatch" when a gone contact's azureoid named the user.
    twice = [user("u1", "ann", licence_count=0), user("u1", "ann", licence_count=0), user("u2", "bob")]
    contacts = [contact(5, email="ann@contoso.com", azureoid="u1"), contact(6, email="left@contoso.com")]
    changes = plan(twice, contacts)
    assert actions(changes) == actions(plan(twice[1:], contacts))
    assert ("deactivate", 5, "unlicensed", False) in actions(changes)


def test_deactivate_found_by_upn_when_no_azureoid():
    changes = plan([user("u1", "ann", licence_count=0)], [contact(5, email="ann@contoso.com")])
    assert actions(changes) == [("deactivate", 5, "unlicensed", False)]


def test_deactivate_gone_from_m365_and_no_contact_details():
    contacts = [
        contact(5, email="left@contoso.com"),
        contact(6, name="Empty"),
        contact(7, name="Phone only", phonenumber="1"),
    ]
    changes = plan([], contacts)
    assert actions(changes) == [
        ("deactivate", 5, "gone_from_m365", False),
        ("deactivate", 6, "no_contact_details", False),
    ]


def test_contacts_outside_verified_domains_and_protected_contacts_kept():
    contacts = [
        contact(1, email="x@gmail.com"),  # not a verified domain
        contact(2, email="keep@contoso.com", keep_active="2"),
        contact(3, name=" general   USER "),
        contact(4, email="old@contoso.com", inactive=True),
        contact(5, email="admin@contoso.com"),  # excluded-pattern user's contact
        contact(6, email="x@contoso.com", azureoid="u9"),  # excluded-pattern user's azureoid
    ]
    users = [user("u8", "admin"), user("u9", "svc-admin", licence_count=0)]
    assert plan(users, contacts).empty


@pytest.mark.parametrize("value", ["2", " 2 ", "02", "2.0", "2.00"])
def test_keep_active_compared_as_a_person_would(value):
    assert plan([], [contact(2, email="a@contoso.com", keep_active=value)]).empty


def test_keep_active_other_values_do_not_protect():
    changes = plan(
        [], [contact(2, email="a@contoso.com", keep_active="3"), contact(3, email="b@contoso.com", keep_active="yes")]
    )
    assert changes["contact_id"].tolist() == [2, 3]


def test_keep_active_text_value_case_insensitive():
    settings = SyncSettings(keep_active_value="Y")
    assert plan([], [contact(2, email="a@contoso.com", keep_active=" y ")], settings).empty


def test_excluded_pattern_users_never_created_paired_or_reactivated():
    users = [user("u1", "admin"), user("u2", "sysadmin2")]
    contacts = [contact(5, email="admin@contoso.com"), contact(6, email="x@contoso.com", azureoid="u2", inactive=True)]
    assert plan(users, contacts).empty


def test_cloudadmins_domain_users_are_synced():
    # Seed bug: `admin` matched the domain of every cloudadmins.com user.
    mapping = mappings()
    changes = plan(
        [{"tenant_id": "t1", "user_id": "u1", "upn": "ann@cloudadmins.com", "display_name": "Ann"}],
        [],
        company_mappings=mapping,
    )
    assert changes["action"].tolist() == ["create"]


def test_deactivations_listed_but_held_when_setting_off():
    # The seed's review use: with deactivation off, the would-be deactivations are still listed, not applied.
    changes = plan([], [contact(5, email="left@contoso.com")], SyncSettings(deactivate_contacts=False))
    assert actions(changes) == [("deactivate", 5, "gone_from_m365", True)]
    assert changes["hold_reason"].iloc[0].startswith("deactivate_contacts is off")


# ------------------------------------------------------------ tenants without actions


@pytest.mark.parametrize(
    "mapping",
    [
        mappings(users_status="failed"),
        mappings(method="unmatched", company_id=None),
        mappings(method="excluded", company_id=None),
    ],
)
def test_failed_unmatched_excluded_tenants_get_no_rows(mapping):
    assert plan([user("u1", "ann")], [contact(5, email="left@contoso.com")], company_mappings=mapping).empty


def test_users_of_other_tenants_ignored():
    changes = plan([{**user("u1", "ann"), "tenant_id": "t2"}], [])
    assert changes.empty


def test_user_without_upn_is_a_clear_error():
    with pytest.raises(ValueError, match="u7"):
        plan([{"tenant_id": "t1", "user_id": "u7", "upn": None}], [])


# ------------------------------------------------------------ a user's several addresses


def test_upn_on_onmicrosoft_pairs_the_contact_at_mail_instead_of_creating():
    # Was: a new contact for ann, and the real ann@contoso.com contact deactivated.
    ann = user("u1", "ann", upn="ann@contoso.onmicrosoft.com", mail="ann@contoso.com")
    changes = plan([ann], [contact(5, email="ann@contoso.com")])
    assert actions(changes) == [("pair", 5, "email_matches_upn", False)]
    assert "carries ann@contoso.com" in changes["evidence"].iloc[0]


def test_contact_at_a_proxy_alias_or_in_email2_is_paired():
    ann = user("u1", "ann", smtp_aliases="ann@contoso.com;ann.smith@contoso.com")
    assert actions(plan([ann], [contact(5, email="ann.smith@contoso.com")])) == [
        ("pair", 5, "email_matches_upn", False)
    ]
    assert actions(plan([ann], [contact(6, email="other@x.com", email2="ann.smith@contoso.com")])) == [
        ("pair", 6, "email_matches_upn", False)
    ]


def test_two_contacts_carrying_different_addresses_of_one_user_are_ambiguous():
    ann = user("u1", "ann", mail="ann@contoso.com", smtp_aliases="ann@contoso.com;a.s@contoso.com")
    changes = plan([ann], [contact(5, email="ann@contoso.com"), contact(6, email="a.s@contoso.com")])
    assert actions(changes) == [
        ("ambiguous", 5, "several_contacts_match_upn", True),
        ("ambiguous", 6, "several_contacts_match_upn", True),
    ]
    assert changes["hold_reason"].str.contains("contacts 5, 6 all carry addresses of user ann@contoso.com").all()


def test_a_contact_at_any_address_of_a_selected_user_is_not_deactivated():
    # The person is still in M365 under an alias: the contact is paired, never deactivated.
    ann = user("u1", "ann", smtp_aliases="ann@contoso.com;old.name@contoso.com")
    changes = plan([ann], [contact(5, email="old.name@contoso.com", azureoid="u9")])
    assert "deactivate" not in changes["action"].tolist()


# ------------------------------------------------------------ one contact, one owner


TWO_TENANTS = pd.concat(
    [
        mappings(),
        mappings().assign(
            tenant_id=pd.array(["t2"], dtype="string"),
            tenant_name=pd.array(["Fabrikam"], dtype="string"),
            company_id=pd.array([2], dtype="Int64"),
            company_name=pd.array(["Fabrikam"], dtype="string"),
        ),
    ],
    ignore_index=True,
)


def test_contact_owned_by_a_user_of_another_tenant_is_left_alone():
    # Contact 5 sits in company 1 (t1) but its azureoid is u2, a selected user of t2: t1 must not deactivate
    # or pair it, and t2 does not act on another company's contacts.
    bob = {**user("u2", "bob"), "tenant_id": "t2", "upn": "bob@fabrikam.com"}
    changes = plan(
        [bob],
        [
            contact(5, email="bob@contoso.com", azureoid="u2"),
            contact(9, company_id=2, email="bob@fabrikam.com", azureoid="u2"),
        ],
        company_mappings=TWO_TENANTS,
    )
    assert 5 not in changes["contact_id"].tolist()


def test_unselected_owner_in_another_tenant_still_protects_the_contact():
    bob = {**user("u2", "bob", licence_count=0), "tenant_id": "t2", "upn": "bob@fabrikam.com"}
    changes = plan([bob], [contact(5, email="bob@contoso.com", azureoid="u2")], company_mappings=TWO_TENANTS)
    assert 5 not in changes["contact_id"].tolist()


def test_moved_person_gets_a_held_create_naming_the_contact_and_company():
    # u1 now works at Contoso (t1); company 2 still has an active contact with u1's azureoid.
    companies = f.companies({"company_id": 1, "name": "Contoso"}, {"company_id": 2, "name": "Fabrikam"})
    changes = plan_contact_changes(
        TWO_TENANTS,
        f.users(user("u1", "ann")),
        DOMAINS,
        f.contacts(contact(9, company_id=2, email="ann@fabrikam.com", azureoid="u1")),
        MAIN_SITE,
        SyncSettings(),
        companies=companies,
    )
    create = changes.loc[changes["action"] == "create"].iloc[0]
    assert bool(create["held"]) and create["reason"] == "new_user"
    assert create["hold_reason"].startswith(
        'moved person: active contact 9 of company 2 "Fabrikam" already has this user\'s azureoid'
    )


def test_inactive_contact_elsewhere_does_not_hold_the_create():
    changes = plan(
        [user("u1", "ann")],
        [contact(9, company_id=2, email="ann@old.com", azureoid="u1", inactive=True)],
        company_mappings=TWO_TENANTS,
    )
    assert actions(changes) == [("create", "u1", "new_user", False)]


def test_company_mapped_to_two_tenants_gets_one_action_per_contact():
    # Halo maps t1 and t2 to company 1 (allowed). A leaver at a domain both verify is deactivated once.
    both = pd.concat([mappings(), mappings().assign(tenant_id=pd.array(["t2"], dtype="string"))], ignore_index=True)
    domains = pd.concat([DOMAINS, DOMAINS.assign(tenant_id=pd.array(["t2"], dtype="string"))], ignore_index=True)
    changes = plan_contact_changes(
        both, f.users(), domains, f.contacts(contact(5, email="left@contoso.com")), MAIN_SITE, SyncSettings()
    )
    assert changes["contact_id"].tolist() == [5]
    # And a contact whose address is a selected user of the *other* tenant is protected from both.
    bob = {**user("u2", "bob"), "tenant_id": "t2"}
    changes = plan_contact_changes(
        both, f.users(bob), domains, f.contacts(contact(5, email="bob@contoso.com")), MAIN_SITE, SyncSettings()
    )
    assert changes["action"].tolist() == ["pair"]


def test_safety_net_holds_only_the_tenants_involved():
    base = plan([], [contact(5, email="left@contoso.com")])
    assert len(base) == 1
    doubled = pd.concat([base, base.assign(action=pd.array(["pair"], dtype="string"))], ignore_index=True)
    other = base.assign(tenant_id=pd.array(["t9"], dtype="string"), contact_id=pd.array([77], dtype="Int64"))
    held = hold_contacts_acted_on_twice(pd.concat([doubled, other], ignore_index=True))
    assert held.loc[held["tenant_id"] == "t1", "held"].all()
    assert held.loc[held["tenant_id"] == "t1", "hold_reason"].str.startswith("safety net: contact(s) 5").all()
    assert not held.loc[held["tenant_id"] == "t9", "held"].any()


# ------------------------------------------------------------ quarantined contacts


def test_quarantined_contact_is_never_written_and_blocks_a_duplicate_create():
    q = contact(5, email="ann@contoso.com", quarantine='azureoid "n/a" is not a GUID')
    changes = plan([user("u1", "ann")], [q, contact(6, email="left@contoso.com", quarantine="name missing")])
    assert actions(changes) == [("create", "u1", "new_user", True)]
    assert "contact 5 of this company carries ann@contoso.com but it is quarantined" in changes["hold_reason"].iloc[0]


def test_quarantined_linked_contact_reactivation_is_held():
    q = contact(5, email="ann@contoso.com", azureoid="u1", inactive=True, quarantine="name missing")
    changes = plan([user("u1", "ann")], [q])
    assert actions(changes) == [("reactivate", 5, "azureoid_matches_user", True)]
    assert changes["hold_reason"].iloc[0].startswith("contact 5 is quarantined (name missing)")


def test_user_addresses_lists_upn_then_mail_then_aliases_once_each_per_user() -> None:
    users = pd.DataFrame(
        {
            "tenant_id": ["t1", "t1", "t2"],
            "user_key": ["u1", "u2", "u1"],
            "upn": [" Ann@Contoso.com ", "bob@contoso.onmicrosoft.com", "ann@contoso.com"],
            "mail": ["ann@contoso.com", pd.NA, "  "],
            "smtp_aliases": ["a.smith@contoso.com;ANN@contoso.com;;a.smith@contoso.com", "bob@contoso.com", pd.NA],
        },
        dtype="string",
    )
    found = user_addresses(users)
    assert found.to_dict("split")["data"] == [
        # UPN rows first, then mail (none new here), then aliases; trimmed, lower-cased, blanks and repeats dropped.
        ["t1", "u1", "ann@contoso.com"],
        ["t1", "u2", "bob@contoso.onmicrosoft.com"],
        ["t2", "u1", "ann@contoso.com"],  # the same address in another tenant is another row
        ["t1", "u1", "a.smith@contoso.com"],
        ["t1", "u2", "bob@contoso.com"],
    ]
    assert all(str(dtype) == "string" for dtype in found.dtypes)


def test_user_addresses_of_a_user_listed_twice_are_listed_once() -> None:
    row = {"tenant_id": "t1", "user_key": "u1", "upn": "ann@contoso.com", "mail": "ann@x.com", "smtp_aliases": pd.NA}
    found = user_addresses(pd.DataFrame([row, row], dtype="string"))
    assert found["address"].tolist() == ["ann@contoso.com", "ann@x.com"]


def test_shared_codes_give_equal_values_equal_codes_and_values_new_in_the_second_no_code() -> None:
    first = pd.Series(["ann@x.com", "bob@x.com", "ann@x.com"], dtype="string")
    second = pd.Series(["bob@x.com", "eve@x.com", pd.NA, "ann@x.com"], dtype="string")
    first_codes, second_codes, n_first = shared_codes(first, second)
    assert n_first == 2
    assert first_codes.tolist() == [0, 1, 0]
    assert second_codes.tolist() == [1, NO_CODE, NO_CODE, 0]


def test_pair_codes_and_among_never_match_a_missing_code() -> None:
    tenants, users = np.array([0, 1, NO_CODE, 1]), np.array([2, 2, 2, NO_CODE])
    pairs = pair_codes(tenants, users, minor_size=3)
    assert pairs.tolist() == [2, 5, NO_CODE, NO_CODE]
    # Both sides missing a code must still not match: a contact without azureoid is nobody's.
    assert among(pairs, np.array([5, NO_CODE])).tolist() == [False, True, False, False]
