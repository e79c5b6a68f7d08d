"""The store's row types name exactly the fields of the wire models they mirror."""

from __future__ import annotations

import pytest

from gatewaytui.client.rows import ROW_TYPES
from gatewaytui.client.store import _ITEM_MODELS


@pytest.mark.parametrize("collection", sorted(ROW_TYPES))
def test_row_type_has_the_wire_models_fields(collection):
    row_type = ROW_TYPES[collection]
    model = _ITEM_MODELS[collection]
    wire = {field.alias or name for name, field in model.model_fields.items()}
    assert set(row_type.__annotations__) == wire
    assert row_type.__required_keys__ == frozenset({"id"})  # a delta patches any subset
