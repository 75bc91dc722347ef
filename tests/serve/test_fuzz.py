"""Schemathesis against the real server, from the service's own OpenAPI document, with all its checks: no
server error; every status, content type, body and header as documented (so every error is the documented
field-and-reason body); valid input accepted and invalid input refused; the documented security enforced
(a request without the key, or with a wrong one, is refused); the Allow header of a 405 right. All phases
(coverage of each schema's edges, fuzzing, stateful sequences) with a fixed seed and a bounded number of
examples per operation, so it is reproducible and takes about a minute. Run the same command by hand to
explore further (more examples, other seeds): `schemathesis run http://127.0.0.1:8000/openapi.json ...`."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from support import KEYS

pytestmark = pytest.mark.slow
SEED = 1311
EXAMPLES = 20  # per operation and phase
OPERATIONS = r"^/(v1/|healthz|readyz|metrics)"  # the API and health; not the sales page


def test_the_service_keeps_every_promise_of_its_openapi_document(server, tmp_path):
    # given the service's own OpenAPI document, every operation of the API and health, and the admin key,
    # which may call everything (the deepest code paths)
    paths = httpx.get(f"{server.url}/openapi.json").json()["paths"]
    operations = sum(len(ops) for path, ops in paths.items() if re.match(OPERATIONS, path))
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        "run",
        f"{server.url}/openapi.json",
        "--checks",
        "all",
        "--header",
        f"Authorization: Bearer {KEYS['admin']}",
        "--include-path-regex",
        OPERATIONS,
        "--seed",
        str(SEED),
        "--max-examples",
        str(EXAMPLES),
        "--generation-database",
        "none",
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--no-color",
    ]
    # when schemathesis sends its generated requests (valid and invalid) and sequences of them
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    # then no check fails, and every operation was tested
    assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-3000:]
    assert operations >= 12 and f"Tested: {operations}\n" in run.stdout, run.stdout[-5000:]
