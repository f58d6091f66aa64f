"""Schemathesis over the running API's /openapi.json, every operation, authenticated
as a fresh user: no answer may be a 5xx, and none may break its own documented schema.
Examples are bounded per operation (FUZZ_EXAMPLES) so CI stays short."""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "8"))

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("celery_worker")]


def _fuzz(operation, headers: dict[str, str]) -> None:
    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def run(case) -> None:
        case.call_and_validate(
            headers=headers,
            checks=[not_a_server_error, response_schema_conformance],
            timeout=30,
        )

    run()


def test_no_server_errors_and_answers_match_their_schema(api_server: str, make_user) -> None:
    # The worker (fixture above) answers chats the fuzzer starts, so streams end.
    schema = schemathesis.openapi.from_url(api_server + "/openapi.json")
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        # A fresh user per operation: an earlier one may have logged out or deleted itself.
        user = make_user()
        try:
            _fuzz(operation, {"Authorization": f"Bearer {user.access_token}"})
        # Schemathesis reports failures as an exception group: collected, so one run
        # lists every failing operation.
        except (AssertionError, BaseExceptionGroup) as exc:
            failures.append(f"{operation.label}: {str(exc)[:1500]}")
    assert operations > 40
    assert not failures, "\n\n".join(failures)
