"""The settings are one definition: the rules' SyncSettings, inherited by the Dagster resource."""

import pydantic
import pytest

from halo_sync_pipeline.defs.resources import SyncSettingsResource
from halo_sync_pipeline.settings import SyncSettings


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"guard_fraction": 3}, "guard_fraction"),
        ({"guard_min_contacts": -1}, "guard_min_contacts"),
        ({"exclude_upn_patterns": ["("]}, "exclude_upn_patterns"),
    ],
)
def test_bad_settings_are_refused_naming_the_field(values, field):
    for model in (SyncSettings, SyncSettingsResource):
        with pytest.raises(pydantic.ValidationError, match=field):
            model(**values)


def test_the_resource_has_exactly_the_settings_fields_defaults_and_descriptions():
    resource_fields = SyncSettingsResource.model_fields
    for name, field in SyncSettings.model_fields.items():
        assert resource_fields[name].default == field.default and resource_fields[name].description == field.description
    assert SyncSettingsResource(guard_min_contacts=3).settings() == SyncSettings(guard_min_contacts=3)
