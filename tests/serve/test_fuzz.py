"""Fuzzing every v1 operation from the app's own OpenAPI schema (schemathesis) against the real server:
whatever the body, query or path, the answer is never a server error. Seeded and bounded (a fixed number of
valid-by-schema and invalid-by-schema examples per operation) so it is deterministic and takes well under
two minutes."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

pytestmark = pytest.mark.slow
ADMIN = {"Authorization": "Bearer ad_test_key_0001"}  # admin may call everything: the deepest code paths
EXAMPLES = 15  # per operation and generation mode


def test_no_generated_request_makes_a_server_error(server):
    # given the service's own OpenAPI schema
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json").include(
        path_regex=r"^/(v1/|healthz|readyz|metrics)")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    failures = []
    for op in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=op.as_strategy(generation_mode=mode))
            @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                      suppress_health_check=list(HealthCheck))
            def fuzz(case):
                # when any generated request (valid or not) is sent with an admin key
                response = case.call(base_url=server.url, headers=ADMIN, timeout=30)
                # then the answer is never a 5xx, and every JSON error names the field and the reason
                if response.status_code >= 500:
                    failures.append((case.method, case.formatted_path, case.query, case.body,
                                     response.status_code, response.text[:300]))
                elif response.status_code >= 400 and "json" in response.headers.get("content-type", ""):
                    detail = response.json().get("detail")
                    if not (isinstance(detail, list) and all({"field", "reason"} <= set(d) for d in detail)):
                        failures.append((case.method, case.formatted_path, "bad error body", response.text[:300]))

            try:
                fuzz()
            except Unsatisfiable:  # an operation without inputs (e.g. /healthz) has no invalid variant
                assert mode is GenerationMode.NEGATIVE
    assert failures == [], failures[:5]
