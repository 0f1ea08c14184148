"""Schemathesis over the whole API: no generated request answers 5xx (issue 13), and every
answer conforms to the schema: a documented status code, the documented content type, a
body valid against its schema (issue 19).

The schema is loaded from the app itself (``/api/schema/``, with a lead's token, as a client
would), and every operation gets ``EXAMPLES`` positive and ``EXAMPLES`` negative cases
(wrong types, missing fields, out-of-range values), derandomized so CI sees the same cases
each run. Schemathesis' default generation includes NUL bytes (``allow_x00``). Requests go
through Django's WSGI handler in this process, on the test database, as a lead with a real
APV, patch and project to find. The test collects every 5xx before it fails, so one run
names them all.
"""

from __future__ import annotations

import time

import hypothesis
import hypothesis.errors
import pytest
import schemathesis
from django.core import signals
from django.core.handlers.wsgi import WSGIHandler
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase
from rest_framework.authtoken.models import Token
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.factories import pyyaml_upgrade_patch

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(600)]

EXAMPLES = 5


@pytest.fixture
def app():
    # Django closes "old" connections around each request; in a test transaction that would
    # close the test's own connection (the test client disconnects these the same way).
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield WSGIHandler()
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


def test_no_operation_answers_5xx(app, lead, tmp_path, settings):
    settings.IMMUNE_DATA_DIR = tmp_path
    pyyaml_upgrade_patch(tmp_path)  # an advisory, a project, an APV and its patch
    auth = {"Authorization": f"Token {Token.objects.create(user=lead).key}"}
    schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", app, headers=auth)

    failures: list[str] = []
    nonconforming: list[str] = []
    operations = 0
    started = time.monotonic()
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            check = _no_5xx(operation.as_strategy(generation_mode=mode), auth, failures,
                            nonconforming, label=f"{operation.label} [{mode.value}]")
            try:
                check()
            except hypothesis.errors.Unsatisfiable:
                # Nothing to make invalid (an operation without parameters or body).
                assert mode is GenerationMode.NEGATIVE, operation.label
    elapsed = time.monotonic() - started
    print(f"schemathesis: {operations} operations × 2 modes × ≤{EXAMPLES} examples "
          f"in {elapsed:.1f} s, {len(failures)} × 5xx")
    assert operations >= 40  # the whole API, not a schema that failed to load
    assert not failures, "\n".join(failures)
    assert not nonconforming, "\n".join(nonconforming)


CONFORMANCE = [not_a_server_error, status_code_conformance, content_type_conformance,
               response_schema_conformance]


def _no_5xx(strategy, auth: dict[str, str], failures: list[str], nonconforming: list[str],
            *, label: str):
    @hypothesis.settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                         phases=[Phase.explicit, Phase.generate],
                         suppress_health_check=list(HealthCheck))
    @hypothesis.given(case=strategy)
    def check(case):
        response = case.call(headers=auth)
        if response.status_code >= 500:
            failures.append(f"{label} → {response.status_code}: {case.as_curl_command()}")
            return
        try:
            case.validate_response(response, checks=CONFORMANCE, headers=auth)
        except (Exception, BaseExceptionGroup) as exc:  # a group: every check that failed
            nonconforming.append(f"{label} → {response.status_code}: {exc}\n"
                                 f"  {case.as_curl_command()}")

    return check
