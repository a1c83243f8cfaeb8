"""Fuzzing: the JSON API from its own /openapi.json (schemathesis), and the export form's
fields (hypothesis). Nothing a client sends may produce a 500 or an error outside the
contract's JSON shape.

Bounded and repeatable: a fixed number of examples per operation, derandomized (the same
inputs on every run), no example database, no deadline (the machine may be busy).
"""

from datetime import timedelta

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.test import Client
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from exports.models import ApiToken
from tests import api_support
from tests.api_support import T0

recordings, cameras, users, tokens = (
    api_support.recordings,
    api_support.cameras,
    api_support.users,
    api_support.tokens,
)

pytestmark = pytest.mark.django_db

FUZZ = hypothesis_settings(
    max_examples=25,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
CONTRACT_FIELDS = {"CameraId", "From", "To", "ArchiveTaskId", "ErrorMessage", "State"}


@pytest.fixture
def api_schema(users, exports_queue):
    # The WSGI handler closes the database connection after each request; the test's
    # transaction lives on it, so keep it open, as Django's test client does.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield schemathesis.openapi.from_wsgi("/openapi.json", get_wsgi_application())
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def token(users):
    return ApiToken.issue(users["alice"])[1]


def test_api_answers_every_generated_request_without_a_server_error(api_schema, token):
    # One hypothesis run per operation of the document (schemathesis' pytest plugin would do
    # the same, but its lazy fixture loading does not work with pytest 9).
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/createarchivetask", "/getarchivetaskstatus"}
    for operation in operations:

        @FUZZ
        @given(case=operation.as_strategy())
        def run(case):
            response = case.call(headers={"Authorization": f"Token {token}"})
            assert response.status_code < 500, (case.path, case.body, response.text[:300])
            if response.status_code >= 400:
                body = response.json()
                assert CONTRACT_FIELDS <= set(body), (case.path, body)
                assert isinstance(body["ErrorMessage"], str) and body["ErrorMessage"]

        run()


# -- the export form ----------------------------------------------------------------------------

TEXT = st.text(max_size=40)
TIMES = st.one_of(
    TEXT,
    st.datetimes().map(lambda moment: moment.strftime("%Y-%m-%dT%H:%M:%S")),
    st.sampled_from(
        [
            "0001-01-01T00:00:00",
            "9999-12-31T23:59:59",
            "2026-11-20T10:00:00Z",
            "9999-12-31T23:59:59-05:00",
            "2026-02-30T10:00:00",
            "",
        ]
    ),
)
FORM = st.fixed_dictionaries(
    {
        "camera": st.lists(st.one_of(st.sampled_from(["1", "2", "site/7"]), TEXT), max_size=3),
        "start": TIMES,
        "end": TIMES,
        "format": st.one_of(st.sampled_from(["mp4", "mkv", ""]), TEXT),
        "around": st.one_of(st.integers().map(str), TEXT),
        "quick": st.one_of(
            st.sampled_from(["", "around", "last-5", "last-99999999999", "last-²"]), TEXT
        ),
        "action": st.sampled_from(["", "preview", "export"]),
    }
)


def _clean(text: str) -> str:
    # Form-encoded bodies cannot carry lone surrogates or NULs; browsers never send them.
    return text.encode("utf-8", "replace").decode("utf-8").replace("\x00", "")


def _encoded(form: dict) -> dict:
    return {
        key: [_clean(v) for v in value] if isinstance(value, list) else _clean(value)
        for key, value in form.items()
    }


@pytest.fixture
def page(users, cameras, settings):
    settings.PSIMEXPORT_MAX_QUEUED_PER_USER = 10_000
    client = Client()
    client.force_login(users["alice"])
    return client


def test_export_form_fields_never_crash_a_page(page, django_capture_on_commit_callbacks):
    @FUZZ
    @given(form=FORM, day=st.one_of(TEXT, st.dates().map(str)))
    def run(form, day):
        data = _encoded(form)
        with django_capture_on_commit_callbacks(execute=False):
            assert page.post("/export/", data).status_code in (200, 302), data
        assert page.get("/export/preview/", data).status_code == 200, data
        assert page.get("/export/", {**data, "from": data["start"]}).status_code == 200, data
        assert page.get("/", {"day": _clean(day)}).status_code == 200, day
        assert page.get("/tasks/", {"day": _clean(day)}).status_code == 200, day

    run()


def test_fuzz_reaches_valid_requests_too(page):
    """The form fuzz is not only noise: a well-formed request still exports."""
    start = T0.strftime("%Y-%m-%dT%H:%M:%S")
    end = (T0 + timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%S")
    response = page.post(
        "/export/",
        {"camera": "1", "start": start, "end": end, "format": "mp4", "action": "preview"},
    )
    assert response.status_code == 200 and b"Entrance" in response.content
