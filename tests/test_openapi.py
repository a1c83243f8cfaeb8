"""/openapi.json describes what the API really answers: real responses validated against it."""

from datetime import timedelta

import jsonschema
import pytest
from django.test import Client

from tests import api_support
from tests.api_support import T0, ApiClient, psim, run_worker

recordings, cameras, users, tokens = (
    api_support.recordings, api_support.cameras, api_support.users, api_support.tokens
)
alice, bob = api_support.alice, api_support.bob

pytestmark = pytest.mark.django_db


@pytest.fixture
def spec(db):
    response = Client().get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.")
    return document


def check(spec, method, path, response):
    """The response's status is documented for this operation and its JSON fits the schema."""
    operation = spec["paths"][path][method]
    documented = operation["responses"].get(str(response.status_code))
    assert documented is not None, f"{method} {path} answered undocumented {response.status_code}"
    schema = documented["content"]["application/json"]["schema"]
    jsonschema.Draft202012Validator(
        {**schema, "components": spec["components"]},
        format_checker=jsonschema.FormatChecker(),
    ).validate(response.json())


def test_real_responses_match_the_document(
    spec, alice, bob, exports_queue, django_capture_on_commit_callbacks
):
    good = {"CameraId": "1", "From": psim(T0), "To": psim(T0 + timedelta(seconds=2))}
    with django_capture_on_commit_callbacks(execute=True):
        created = alice.create(**good)
    check(spec, "post", "/createarchivetask", created)
    task_id = created.json()["ArchiveTaskId"]
    check(spec, "get", "/getarchivetaskstatus", alice.status(task_id))  # Created, Url null
    run_worker(exports_queue)
    check(spec, "get", "/getarchivetaskstatus", alice.status(task_id))  # ready, Url set

    for response in (
        alice.post("/createarchivetask", raw=b"nope"),
        alice.create(**{**good, "CameraId": "2"}),
        ApiClient().create(**good),
        alice.post("/createarchivetask", raw=b"{" + b" " * 70_000 + b"}"),
    ):
        check(spec, "post", "/createarchivetask", response)
    for response in (alice.status("nope"), bob.status(task_id), alice.get("/getarchivetaskstatus")):
        check(spec, "get", "/getarchivetaskstatus", response)

    check(spec, "get", "/getcameras", alice.get("/getcameras", {"from": psim(T0)}))
    check(spec, "get", "/getcameras", alice.get("/getcameras"))
    check(spec, "get", "/healthz", Client().get("/healthz"))
    check(spec, "post", "/deletearchivetask", alice.post("/deletearchivetask", {"ArchiveTaskId": task_id}))
    check(spec, "get", "/download", alice.get("/download", {"file": task_id}))  # 410
    check(spec, "post", "/deletearchivetask", alice.post("/deletearchivetask", {}))  # 400


def test_a_task_in_parts_matches_the_document(
    spec, alice, exports_queue, django_capture_on_commit_callbacks
):
    body = {
        "CameraId": "1", "From": psim(T0), "To": psim(T0 + timedelta(seconds=2)),
        "MaxFileSize": 2**20,
    }
    with django_capture_on_commit_callbacks(execute=True):
        created = alice.create(**body)
    check(spec, "post", "/createarchivetask", created)
    task_id = created.json()["ArchiveTaskId"]
    check(spec, "get", "/getarchivetaskstatus", alice.status(task_id))  # Parts empty
    run_worker(exports_queue)
    ready = alice.status(task_id)
    check(spec, "get", "/getarchivetaskstatus", ready)
    assert [part["Url"] for part in ready.json()["Parts"]] == [ready.json()["Url"]]
    check(spec, "post", "/createarchivetask", alice.create(**{**body, "MaxFileSize": 5}))


def test_a_group_matches_the_document(
    spec, alice, exports_queue, django_capture_on_commit_callbacks, users, cameras
):
    cameras[1].allowed_users.add(users["alice"])
    body = {"CameraIds": ["1", "2"], "From": psim(T0), "To": psim(T0 + timedelta(seconds=2))}
    with django_capture_on_commit_callbacks(execute=True):
        created = alice.create(**body)
    check(spec, "post", "/createarchivetask", created)
    group_id = created.json()["ArchiveTaskId"]
    check(spec, "get", "/getarchivetaskstatus", alice.status(group_id))
    run_worker(exports_queue)
    check(spec, "get", "/getarchivetaskstatus", alice.status(group_id))
    check(spec, "post", "/createarchivetask", alice.create(**{**body, "CameraIds": ["1", "9"]}))
    check(spec, "post", "/deletearchivetask", alice.post("/deletearchivetask", {"ArchiveTaskId": group_id}))
    with django_capture_on_commit_callbacks(execute=True):
        mosaic = alice.create(**body, Mosaic="2x2")
    check(spec, "post", "/createarchivetask", mosaic)
    run_worker(exports_queue)
    check(spec, "get", "/getarchivetaskstatus", alice.status(mosaic.json()["ArchiveTaskId"]))
