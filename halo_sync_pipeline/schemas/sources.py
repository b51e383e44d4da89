"""pandera models of the seven source frames (docs/architecture.md, "Source DataFrames").

Strict and never coercing: a frame with a missing, extra or wrongly typed column fails instead of
being repaired. `validation_failures` runs a model lazily and returns every failure as rows
(column, check, value, row) for the blocking asset checks to show as a markdown table.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from halo_sync_pipeline.schemas.common import StrictModel, Text, nullable

GUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
TENANT_STATUSES = ("loaded", "failed")
FAILURE_COLUMNS = ["column", "check", "value", "row"]


def _lower_stripped(series: pd.Series) -> pd.Series:
    return series == series.str.strip().str.lower()


def _not_blank(series: pd.Series) -> pd.Series:
    return series.str.strip().str.len() > 0


class HaloCompaniesSchema(StrictModel):
    """One row per Halo company (client)."""

    company_id: Series[int] = pa.Field(unique=True, gt=0)
    name: Text = nullable()
    website: Text = nullable()
    inactive: Series[bool]
    main_site_id: Series[pd.Int64Dtype] = nullable(gt=0)
    # What is odd about the record (rules/quarantine.py); the record is then treated conservatively.
    quarantine: Text = nullable()

    @pa.check("name", "website", name="not_blank")
    def _text(cls, series: pd.Series) -> pd.Series:
        return _not_blank(series)


class HaloTenantMappingsSchema(StrictModel):
    """One row per Azure tenant entry on a Halo company."""

    # Kept as Halo has it when it is not a GUID: such an entry is quarantined (and ignored).
    tenant_id: Text = nullable()
    tenant_name: Text = nullable()
    company_id: Series[int] = pa.Field(gt=0)
    company_name: Text = nullable()
    entry_id: Series[pd.Int64Dtype] = nullable(gt=0)
    connection_id: Series[pd.Int64Dtype] = nullable(gt=0)
    quarantine: Text = nullable()

    @pa.dataframe_check(name="guid_tenant_id_unless_quarantined")
    def _guid_unless_quarantined(cls, df: pd.DataFrame) -> pd.Series:
        guid = df["tenant_id"].str.fullmatch(GUID_PATTERN.strip("^$")).fillna(False).astype(bool)
        return guid | df["quarantine"].notna()

    @pa.dataframe_check(name="one_usable_entry_per_tenant_and_company")
    def _unique_usable(cls, df: pd.DataFrame) -> pd.Series:
        usable = df["quarantine"].isna()
        return ~(
            usable
            & df.loc[usable].duplicated(["tenant_id", "company_id"], keep=False).reindex(df.index, fill_value=False)
        )


class HaloContactsSchema(StrictModel):
    """One row per Halo contact (user), addresses lower-cased."""

    contact_id: Series[int] = pa.Field(unique=True, gt=0)
    company_id: Series[int] = pa.Field(gt=0)
    site_id: Series[pd.Int64Dtype] = nullable(gt=0)
    name: Text = nullable()
    firstname: Text = nullable()
    surname: Text = nullable()
    email: Text = nullable()
    email2: Text = nullable()
    email3: Text = nullable()
    phonenumber: Text = nullable()
    mobilenumber: Text = nullable()
    title: Text = nullable()
    # Only Azure AD sync writes this field, so anything but a GUID is corrupt data.
    azureoid: Text = nullable(str_matches=GUID_PATTERN)
    inactive: Series[bool]
    keep_active: Text = nullable()
    quarantine: Text = nullable()

    @pa.check("email", "email2", "email3", "azureoid", name="lower_case_stripped")
    def _lower(cls, series: pd.Series) -> pd.Series:
        return _lower_stripped(series)

    @pa.check("name", "firstname", "surname", "phonenumber", "mobilenumber", "title", "keep_active", name="not_blank")
    def _text(cls, series: pd.Series) -> pd.Series:
        return _not_blank(series)


class HaloSitesSchema(StrictModel):
    """One row per Halo site."""

    site_id: Series[int] = pa.Field(unique=True, gt=0)
    company_id: Series[int] = pa.Field(gt=0)
    name: Text = nullable()
    line1: Text = nullable()
    is_main: Series[bool]
    quarantine: Text = nullable()

    @pa.dataframe_check(name="at_most_one_main_site_per_company")
    def _one_main(cls, df: pd.DataFrame) -> pd.Series:
        mains = df[df["is_main"]].groupby("company_id")["site_id"].transform("size")
        return (mains.reindex(df.index).fillna(1) <= 1).astype(bool)


class M365TenantsSchema(StrictModel):
    """One row per customer tenant of the partner, with how its read went."""

    tenant_id: Text = pa.Field(unique=True, str_matches=GUID_PATTERN)
    display_name: Text = nullable()
    default_domain: Text = nullable()
    status: Text = pa.Field(isin=TENANT_STATUSES)
    error: Text = nullable()
    user_count: Series[pd.Int64Dtype] = nullable(ge=0)
    domain_count: Series[pd.Int64Dtype] = nullable(ge=0)

    @pa.check("default_domain", name="lower_case_stripped")
    def _lower(cls, series: pd.Series) -> pd.Series:
        return _lower_stripped(series)

    @pa.dataframe_check(name="error_iff_failed")
    def _error_iff_failed(cls, df: pd.DataFrame) -> pd.Series:
        return (df["status"] == "failed") == df["error"].notna()

    @pa.dataframe_check(name="counts_iff_loaded")
    def _counts_iff_loaded(cls, df: pd.DataFrame) -> pd.Series:
        loaded = df["status"] == "loaded"
        return (loaded == df["user_count"].notna()) & (loaded == df["domain_count"].notna())


class M365DomainsSchema(StrictModel):
    """One row per domain of a loaded tenant."""

    tenant_id: Text = pa.Field(str_matches=GUID_PATTERN)
    domain: Text
    is_verified: Series[bool]
    is_default: Series[bool]

    class Config:
        unique = ["tenant_id", "domain"]

    @pa.check("domain", name="lower_case_stripped")
    def _lower(cls, series: pd.Series) -> pd.Series:
        return _lower_stripped(series) & _not_blank(series)

    @pa.dataframe_check(name="at_most_one_default_domain_per_tenant")
    def _one_default(cls, df: pd.DataFrame) -> pd.Series:
        defaults = df["is_default"].astype(int).groupby(df["tenant_id"]).transform("sum")
        return (defaults <= 1).astype(bool)


class M365UsersSchema(StrictModel):
    """One row per user of a loaded tenant, before any sync filter."""

    tenant_id: Text = pa.Field(str_matches=GUID_PATTERN)
    user_id: Text = pa.Field(str_matches=GUID_PATTERN)
    upn: Text = pa.Field(str_matches=r"^[^@\s]+@[^@\s]+$")
    display_name: Text = nullable()
    given_name: Text = nullable()
    surname: Text = nullable()
    mail: Text = nullable()
    job_title: Text = nullable()
    business_phone: Text = nullable()
    mobile_phone: Text = nullable()
    fax: Text = nullable()
    street_address: Text = nullable()
    smtp_aliases: Text = nullable()
    # NA: Graph did not say (only allowed where the licence filter is off; see m365_frames).
    licence_count: Series[pd.Int64Dtype] = nullable(ge=0)
    account_enabled: Series[bool]
    user_type: Text = nullable()
    is_guest: Series[bool]

    class Config:
        unique = ["tenant_id", "user_id"]

    @pa.check("upn", "mail", "smtp_aliases", name="lower_case_stripped")
    def _lower(cls, series: pd.Series) -> pd.Series:
        return _lower_stripped(series)

    @pa.dataframe_check(name="upn_unique_per_tenant")
    def _upn_unique(cls, df: pd.DataFrame) -> pd.Series:
        return ~df.duplicated(["tenant_id", "upn"], keep=False)

    @pa.dataframe_check(name="is_guest_iff_user_type_guest")
    def _guest(cls, df: pd.DataFrame) -> pd.Series:
        return df["is_guest"] == df["user_type"].str.lower().eq("guest").fillna(False).astype(bool)


def _cell(value: Any) -> str:
    return "<NA>" if value is None or (not isinstance(value, (list, dict)) and pd.isna(value)) else str(value)


def validation_failures(schema: type[pa.DataFrameModel], df: pd.DataFrame) -> pd.DataFrame | None:
    """Validate `df` lazily; None when it passes, else one row per failure: column, check, value, row."""
    try:
        schema.validate(df, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
        return pd.DataFrame(
            {
                "column": [_cell(c) for c in cases["column"]],
                "check": [_cell(c) for c in cases["check"]],
                "value": [_cell(v) for v in cases["failure_case"]],
                "row": [_cell(i) for i in cases["index"]],
            },
            columns=FAILURE_COLUMNS,
        ).astype("string")
    return None
