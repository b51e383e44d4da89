"""`inherited_objects_frozen`: what is alive when the block starts is out of the collector's sight
inside it, and handed back when it ends, also when it raises."""

import gc

import pytest

from halo_sync_pipeline.defs.heap import inherited_objects_frozen


def test_objects_alive_at_the_start_are_frozen_inside_and_released_after() -> None:
    gc.unfreeze()
    with inherited_objects_frozen():
        frozen = gc.get_freeze_count()
        made_inside = [[] for _ in range(10)]
        assert gc.get_freeze_count() == frozen  # what the block makes stays collectable
    assert frozen > 0 and made_inside
    assert gc.get_freeze_count() == 0


def test_an_error_inside_still_unfreezes() -> None:
    gc.unfreeze()
    with pytest.raises(RuntimeError, match="boom"), inherited_objects_frozen():
        assert gc.get_freeze_count() > 0
        raise RuntimeError("boom")
    assert gc.get_freeze_count() == 0
