"""The base of every wire model (its own module, so that any schema module can build on it)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class WireModel(BaseModel):
    """Base for every wire model: unknown fields are kept, so newer gateways stay readable."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
