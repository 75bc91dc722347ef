"""The lead id has one definition (`schemas.LeadId`); the sales page checks a URL's id with the same rule."""

from __future__ import annotations

import pytest
from leadscore.serve.schemas import LeadId, is_lead_id
from pydantic import TypeAdapter, ValidationError

LEAD_ID = TypeAdapter(LeadId)


@pytest.mark.parametrize(
    "value",
    ["a", "lead-42", "x" * 128, "x" * 129, "", "a b", "abc\n", "a/b", "é", "k:1@crm.example_2", "%2F"],
)
def test_the_sales_page_accepts_a_lead_id_exactly_when_the_api_does(value):
    try:
        LEAD_ID.validate_python(value)
        api_accepts = True
    except ValidationError:
        api_accepts = False
    assert is_lead_id(value) is api_accepts
