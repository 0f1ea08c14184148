"""Issue 19: the REST API as an integrator tried it, one test per finding, each showing it
fixed. Every response these tests read is checked against the served schema
(``tests/api/schema_check.py``)."""

from __future__ import annotations

import http.server
import json
import threading
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.decisions.models import Decision
from apps.reviews.models import APV, APVStatus, Patch
from apps.wargaming.models import RunState, Verdict, WargameRun
from tests.api.schema_check import assert_conforms, raw_schema
from tests.factories import git

JUSTIFICATION = "Checked the changelog and the diff."


class Api:
    """An APIClient whose every answer is checked against the schema."""

    def __init__(self, user=None):
        self.client = APIClient()
        if user is not None:
            self.client.force_authenticate(user)

    def call(self, method: str, path: str, data=None, **extra):
        response = getattr(self.client, method.lower())(
            path, data, format="json" if method != "GET" else None, **extra)
        assert_conforms(method, path.split("?")[0], response.status_code,
                        response.headers.items(), response.content)
        return response

    def get(self, path, params=None, **extra):
        return self.call("GET", path, params, **extra)

    def post(self, path, data=None, **extra):
        return self.call("POST", path, data, **extra)


def error(response) -> dict:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    assert isinstance(body["error"]["details"], dict), body
    return body["error"]


def shared(package: str) -> list[APV]:
    """The demo's APVs of ``package``, which share one upgrade patch revision."""
    apvs = list(APV.objects.select_related("current_patch", "project")
                .filter(dependency__normalised_name=package).order_by("code"))
    assert len(apvs) > 1 and len({a.current_patch_id for a in apvs}) == 1
    return apvs


def decide(api: Api, apv: APV, decision: str = "approve", **fields):
    body = {"decision": decision, "justification": JUSTIFICATION, **fields}
    return api.post(f"/api/v1/apvs/{apv.code}/decisions/", body)


# --- "Deciding on one APV takes 7 calls ..." ------------------------------------------------
def test_the_detail_is_enough_to_decide_and_runs_are_reachable(demo, reviewer):
    api = Api(reviewer)
    apv = APV.objects.select_related("current_patch").get(advisory__osv_id="PYSEC-2021-142")
    patch = apv.current_patch
    run = WargameRun.objects.create(
        patch=patch, patch_revision=patch.revision, state=RunState.FINISHED,
        verdict=Verdict.PATCH_EFFECTIVE, confidence=0.9, reason="blocked on the patch",
        exploit="pyyaml_full_load", advisories=["PYSEC-2021-142"], package="pyyaml",
        finished_at=timezone.now())

    detail = api.get(f"/api/v1/apvs/{apv.code}/").json()  # call 1
    assert detail["summary"] and {"severity", "cvss_score", "cvss_vector", "epss_score",
                                  "kev_listed", "cwe_ids"} <= set(detail)
    assert (detail["version"], detail["manifest"], detail["line"]) == ("5.3.1",
                                                                      "requirements.txt", 2)
    current = detail["current_patch"]
    assert (current["id"], current["revision"], current["state"]) == (patch.pk, 1, "proposed")
    assert current["branch"] == patch.branch and current["branch_exists"] is True
    assert current["diff"] == patch.diff and current["verdict"] == "patch_effective"
    wargame = detail["wargame"]
    assert (wargame["run"], wargame["exploit_covers"], wargame["verdict"]) == (
        run.pk, True, "patch_effective")
    assert wargame["url"].endswith(f"/api/v1/wargaming/runs/{run.pk}/")
    assert "prediction" in detail and "approve" in detail["allowed_decisions"]
    made = decide(api, apv, patch_revision=current["revision"])  # call 2
    assert made.status_code == 201 and made.json()["action_taken"] == "merged"

    # The runs, from the APV, from the patch, and filtered.
    for path in (f"/api/v1/apvs/{apv.code}/runs/", f"/api/v1/patches/{patch.pk}/runs/"):
        rows = api.get(path).json()["results"]
        assert [r["id"] for r in rows] == [run.pk]
        assert rows[0]["scope"] == [{"apv": apv.code, "advisory": "PYSEC-2021-142",
                                     "covered": True, "verdict": "patch_effective",
                                     "reason": "blocked on the patch"}]
    listed = api.get("/api/v1/wargaming/runs/", {"apv": apv.code, "patch": patch.pk,
                                                 "verdict": "patch_effective"}).json()
    assert [r["id"] for r in listed["results"]] == [run.pk]
    assert api.get("/api/v1/wargaming/runs/", {"verdict": "error"}).json()["count"] == 0
    assert "/api/v1/ml/predictions/" in raw_schema()["paths"]
    assert api.get("/api/v1/ml/predictions/", {"patch": patch.pk}).status_code == 200


# --- "Patch state is wrong and decisions act on it anyway ..." -------------------------------
def test_a_target_version_must_be_a_version_above_the_pin(demo, reviewer):
    api = Api(reviewer)
    urllib3 = shared("urllib3")
    before = Patch.objects.get(pk=urllib3[0].current_patch_id)
    states = dict(Patch.objects.values_list("pk", "state"))
    for target in ("not-a-version", "1.0"):
        refused = api.post(f"/api/v1/apvs/{urllib3[0].code}/patches/",
                           {"target_version": target})
        assert refused.status_code == 400
        assert (error(refused)["code"], list(error(refused)["details"])) == (
            "patch_invalid", ["target_version"])
    before.refresh_from_db()
    assert before.state == "proposed"  # nothing superseded by a refused proposal
    assert dict(Patch.objects.values_list("pk", "state")) == states


class _SimpleIndex(http.server.BaseHTTPRequestHandler):
    """A PEP 691 index knowing urllib3 1.26.18 and 2.0.7 (what the network would say)."""

    def do_GET(self):  # noqa: N802 (http.server's name)
        if self.path.rstrip("/") != "/simple/urllib3":
            self.send_response(404)
            self.end_headers()
            return
        body = json.dumps({"meta": {"api-version": "1.1"}, "name": "urllib3", "files": [
            {"filename": "urllib3-1.26.18-py2.py3-none-any.whl", "url": "x", "hashes": {}},
            {"filename": "urllib3-2.0.7.tar.gz", "url": "y", "hashes": {}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.pypi.simple.v1+json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def package_index(settings):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SimpleIndex)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.PACKAGE_INDEX_URL = f"http://127.0.0.1:{server.server_address[1]}/simple"
    yield settings.PACKAGE_INDEX_URL
    server.shutdown()


def test_a_target_version_must_be_a_release_where_the_index_is_known(demo, reviewer,
                                                                     package_index):
    api = Api(reviewer)
    urllib3 = shared("urllib3")
    missing = api.post(f"/api/v1/apvs/{urllib3[0].code}/patches/", {"target_version": "1.26.99"})
    assert missing.status_code == 400 and "no release 1.26.99" in error(missing)["message"]
    made = api.post(f"/api/v1/apvs/{urllib3[0].code}/patches/", {"target_version": "1.26.18"})
    assert made.status_code == 201, made.json()
    assert any(package_index in note for note in made.json()["notes"])


def test_one_current_revision_per_apv_and_decisions_name_it(demo, reviewer):
    api = Api(reviewer)
    urllib3 = shared("urllib3")
    first = urllib3[0].current_patch
    # A new revision asked for one APV of the shared upgrade covers all of them ...
    made = api.post(f"/api/v1/apvs/{urllib3[-1].code}/patches/", {"target_version": "1.26.18"})
    assert made.status_code == 201
    assert made["Location"].endswith(f"/api/v1/patches/{made.json()['id']}/")
    assert sorted(made.json()["apvs"]) == [a.code for a in urllib3]
    first.refresh_from_db()
    assert first.state == "superseded"
    # ... so no APV is left on the superseded one, and deciding it is refused, naming the
    # current revision.
    assert not APV.objects.filter(current_patch=first).exists()
    stale = decide(api, urllib3[1], patch_revision=first.revision)
    assert stale.status_code == 409
    assert error(stale)["code"] == "stale_revision"
    assert error(stale)["details"]["current_revision"] == made.json()["revision"] == 2
    # A missing revision is a 400 naming the field, not a 409 "you saw None".
    missing = decide(api, urllib3[1])
    assert missing.status_code == 400 and list(error(missing)["details"]) == ["patch_revision"]
    assert Decision.objects.count() == 0
    assert git(demo.path, "rev-list", "--merges", "main").split() == []


def test_a_code_patch_for_one_apv_leaves_its_siblings_on_their_revision(demo, reviewer):
    api = Api(reviewer)
    urllib3 = shared("urllib3")
    first = urllib3[0].current_patch
    diff = "--- /dev/null\n+++ b/SECURITY.md\n@@ -0,0 +1 @@\n+Report to security@.\n"
    made = api.post(f"/api/v1/apvs/{urllib3[0].code}/patches/",
                    {"strategy": "code_patch", "diff": diff})
    assert made.status_code == 201, made.json()
    first.refresh_from_db()
    assert first.state == "proposed"  # still the current revision of the siblings
    assert set(APV.objects.filter(current_patch=first).values_list("code", flat=True)) == {
        a.code for a in urllib3[1:]}


def test_a_rejected_patch_no_longer_reports_its_branch(demo, reviewer):
    api = Api(reviewer)
    apv = APV.objects.select_related("current_patch").get(advisory__osv_id="PYSEC-2021-142")
    assert decide(api, apv, "reject", patch_revision=1).json()["action_taken"] == \
        "branch_deleted"
    patch = api.get(f"/api/v1/patches/{apv.current_patch_id}/").json()
    assert (patch["state"], patch["branch_exists"]) == ("closed", False)
    assert api.get(f"/api/v1/apvs/{apv.code}/").json()["current_patch"]["branch_exists"] \
        is False


# --- "Effects on sibling APVs of a shared patch are invisible ..." ---------------------------
def test_siblings_show_the_shared_decision_and_the_audit_has_endpoints(demo, reviewer, lead):
    api = Api(reviewer)
    urllib3 = shared("urllib3")
    made = decide(api, urllib3[0], "approve", patch_revision=1).json()
    assert sorted(made["also_applied_to"]) == [a.code for a in urllib3[1:]]
    sibling = urllib3[1]
    history = api.get(f"/api/v1/apvs/{sibling.code}/decisions/").json()["results"]
    assert [(d["id"], d["apv"], d["via_shared_patch"]) for d in history] == [
        (made["id"], urllib3[0].code, True)]
    own = api.get(f"/api/v1/apvs/{urllib3[0].code}/decisions/").json()["results"]
    assert [d["via_shared_patch"] for d in own] == [False]
    assert api.get("/api/v1/decisions/", {"apv": sibling.code}).json()["count"] == 1

    audit = api.get(f"/api/v1/decisions/{made['id']}/audit/").json()
    assert audit["decision"] == made["id"] and audit["via"] == "api"
    assert audit["reviewer_username"] == "rita"
    assert audit["snapshot"]["patch"]["revision"] == 1
    assert sorted(audit["snapshot"]["also_applied_to"]) == [a.code for a in urllib3[1:]]
    trail = api.get("/api/v1/audit/", {"apv": sibling.code}).json()
    assert [row["decision"] for row in trail["results"]] == [made["id"]]
    assert api.get("/api/v1/decisions/999999/audit/").status_code == 404
    assert api.get(f"/api/v1/decisions/{made['id']}/").json()["outcome"] == "applied"


# --- "Bad filter values pass silently ..." ---------------------------------------------------
@pytest.mark.parametrize(("path", "params", "named"), [
    ("/api/v1/apvs/", {"status": "bogus"}, "status"),
    ("/api/v1/apvs/", {"severity": "urgent"}, "severity"),
    ("/api/v1/apvs/", {"overdue": "maybe"}, "overdue"),
    ("/api/v1/apvs/", {"ordering": "colour"}, "ordering"),
    ("/api/v1/apvs/", {"colour": "red"}, "colour"),
    ("/api/v1/patches/", {"state": "bogus"}, "state"),
    ("/api/v1/decisions/", {"since": "yesterday"}, "since"),
    ("/api/v1/advisories/", {"withdrawn": "perhaps"}, "withdrawn"),
    ("/api/v1/wargaming/runs/", {"verdict": "won"}, "verdict"),
    ("/api/v1/projects/", {"ordering": "path"}, "ordering"),
    ("/api/v1/audit/", {"via": "email"}, "via"),
    ("/api/v1/ml/predictions/", {"patch": "x"}, "patch"),
    ("/api/v1/ab-testing/results", {"correct": "maybe"}, "correct"),
])
def test_bad_filters_are_400_naming_them(demo, reviewer, path, params, named):
    response = Api(reviewer).get(path, params)
    assert response.status_code == 400
    assert error(response)["code"] == "validation_error"
    assert list(error(response)["details"]) == [named]


def test_projects_by_id_or_name_and_ties_keep_their_order(demo, reviewer):
    api = Api(reviewer)
    by_name = api.get("/api/v1/apvs/", {"project": "demo"}).json()
    by_id = api.get("/api/v1/apvs/", {"project": str(demo.pk)}).json()
    assert by_id["count"] == by_name["count"] == APV.objects.count()
    assert api.get(f"/api/v1/projects/{demo.pk}/").json() == \
        api.get("/api/v1/projects/demo/").json()
    assert api.get(f"/api/v1/patches/?project={demo.pk}").json()["count"] == \
        api.get("/api/v1/patches/?project=demo").json()["count"] > 0
    assert api.get("/api/v1/projects/nope/").status_code == 404

    # Every APV ties on status: pages of 7 walk them all once, in code order within a tie.
    codes = []
    for page in range(1, 100):
        body = api.get("/api/v1/apvs/", {"ordering": "-first_seen_at", "page_size": 7,
                                         "page": page}).json()
        codes += [row["code"] for row in body["results"]]
        if not body["next"]:
            break
    assert codes == sorted(codes) and len(codes) == len(set(codes)) == APV.objects.count()


# --- "Errors: ..." ---------------------------------------------------------------------------
def test_one_error_shape_json_404_and_location(demo, reviewer, settings):
    settings.DEBUG = True  # Django's HTML debug 404 was what integrators got
    api = Api(reviewer)
    for path in ("/api/v1/nothing-here/", "/api/v2/apvs/", "/api/v1/apvs/A/B/C/"):
        response = api.client.get(path)
        assert response.status_code == 404 and response["Content-Type"] == "application/json"
        assert error(response)["code"] == "not_found"
    hint = api.client.get("/api/v1/apvs")
    assert error(hint)["details"]["did_you_mean"] == "/api/v1/apvs/"

    # The same missing APV is the same error on GET and on POST.
    for response in (api.get("/api/v1/apvs/APV-19990101-0001/"),
                     api.post("/api/v1/apvs/APV-19990101-0001/decisions/",
                              {"decision": "approve", "justification": JUSTIFICATION}),
                     api.post("/api/v1/patches/", {"apv": "APV-19990101-0001",
                                                   "strategy": "dependency_upgrade"})):
        assert response.status_code == 404
        assert error(response)["code"] == "not_found"
        assert error(response)["details"] == {"apv": "APV-19990101-0001"}

    # details is an object even for a bare message (a JSON list body is not an object).
    listed = api.post("/api/v1/wargaming/validate", [1, 2])
    assert listed.status_code == 400 and "non_field_errors" in error(listed)["details"]

    project = api.client.post("/api/v1/projects/", {"name": "x", "path": "/nowhere"},
                              format="json")
    assert project.status_code == 403  # reviewers do not add projects
    apv = APV.objects.get(advisory__osv_id="PYSEC-2021-142")
    created = decide(api, apv, "false_positive", patch_revision=1)
    assert created.status_code == 201
    assert created["Location"].endswith(f"/api/v1/decisions/{created.json()['id']}/")


def test_error_codes_are_documented_and_in_the_schema():
    from apps.core.schema import stable_error_codes

    documented = _documented_codes()
    assert documented == set(stable_error_codes())
    enum = raw_schema()["components"]["schemas"]["ErrorCodeEnum"]["enum"]
    assert set(enum) == documented


def _documented_codes() -> set[str]:
    from tests.factories import ROOT

    text = (ROOT / "docs" / "api.md").read_text()
    section = text.split("## Error codes", 1)[1].split("\n## ", 1)[0]
    return {line.split("`")[1] for line in section.splitlines() if line.startswith("| `")}


# --- "The schema documents no 4xx response ..." ----------------------------------------------
def test_the_schema_is_typed_with_errors_and_roles():
    schema = raw_schema()

    def untyped(node, where):
        for name, prop in (node.get("properties") or {}).items():
            if not any(k in prop for k in ("type", "$ref", "allOf", "oneOf", "anyOf")):
                yield f"{where}.{name}"
            yield from untyped(prop, f"{where}.{name}")
        if isinstance(node.get("items"), dict):
            yield from untyped(node["items"], f"{where}[]")

    components = schema["components"]["schemas"]
    assert [p for n, c in components.items() for p in untyped(c, n)] == []
    for enum in ("APVStatusEnum", "PatchStateEnum", "PatchStrategyEnum", "VerdictEnum",
                 "OutcomeEnum", "RouteEnum", "DecisionTypeEnum", "RunStateEnum",
                 "SeverityEnum"):
        assert components[enum]["enum"], enum
    assert components["APVDetailOutput"]["properties"]["prediction"]["allOf"]
    assert components["APVStats"]["properties"]["pending_by_severity"]["type"] == "object"
    operations = [(p, m, op) for p, ops in schema["paths"].items() for m, op in ops.items()]
    assert len(operations) >= 40
    for path, method, op in operations:
        assert "**Roles:**" in op["description"], (method, path)
        codes = set(op["responses"])
        assert {"429", "503"} <= codes, (method, path)
        if "{" in path:
            assert "404" in codes, (method, path)
        for code in codes - {"200", "201", "202"}:
            body = op["responses"][code]["content"]["application/json"]["schema"]
            assert body == {"$ref": "#/components/schemas/Error"}, (method, path, code)


# --- "SARIF and CycloneDX exports and patch proposal exist only on the command line" ---------
def test_reports_over_http(demo, reviewer):
    api = Api(reviewer)
    sarif = api.get(f"/api/v1/projects/{demo.pk}/report.sarif")
    assert sarif.status_code == 200 and sarif["Content-Type"] == "application/sarif+json"
    log = json.loads(sarif.content)
    assert log["version"] == "2.1.0"
    assert len(log["runs"][0]["results"]) == APV.objects.exclude(status="resolved").count()
    cdx = api.get("/api/v1/projects/demo/report.cdx.json")
    assert cdx["Content-Type"] == "application/vnd.cyclonedx+json"
    assert json.loads(cdx.content)["bomFormat"] == "CycloneDX"
    assert Api().get(f"/api/v1/projects/{demo.pk}/report.sarif").status_code == 401


# --- "POST /wargaming/validate answers 202 'queued' for a finished run ..." ------------------
def test_validate_tells_a_finished_run_and_keeps_the_review_timer(transactional_db, demo,
                                                                  reviewer):
    # Committed rows, as on the embedded profile: the run's task runs when the request's
    # transaction commits, before the answer is written.
    api = Api(reviewer)
    apv = APV.objects.select_related("current_patch").get(advisory__osv_id="PYSEC-2021-142")
    waited_since = timezone.now() - timedelta(hours=5)
    APV.objects.filter(current_patch=apv.current_patch).update(pending_review_at=waited_since)
    started = api.post("/api/v1/wargaming/validate", {"patch": apv.current_patch_id})
    run = WargameRun.objects.get(patch=apv.current_patch)
    assert run.state == RunState.FINISHED  # tasks run in-process here
    assert started.status_code == 200
    assert started.json()["state"] == "finished" and started.json()["verdict"] == run.verdict
    assert started["Location"].endswith(f"/api/v1/wargaming/runs/{run.pk}/")
    apv.refresh_from_db()
    assert apv.status == APVStatus.PENDING_REVIEW
    assert apv.pending_review_at == waited_since  # the wargame did not restart the timer
    again = api.post("/api/v1/wargaming/validate", {"patch": apv.current_patch_id})
    assert (again.status_code, again.json()["created"]) == (200, False)


def test_validate_answers_202_while_the_run_is_queued(demo, reviewer):
    apv = APV.objects.select_related("current_patch").get(advisory__osv_id="PYSEC-2021-142")
    WargameRun.objects.create(patch=apv.current_patch, patch_revision=1,
                              state=RunState.QUEUED, package="pyyaml")
    queued = Api(reviewer).post("/api/v1/wargaming/validate", {"patch": apv.current_patch_id})
    assert queued.status_code == 202 and queued.json()["state"] == "queued"


def test_a_field_the_schema_lacks_fails_the_check(demo, reviewer):
    """GET /apvs/stats/ answered a field its schema lacked: the check closes every object
    the schema describes, so such an answer fails (and the stats now conform)."""
    stats = Api(reviewer).get("/api/v1/apvs/stats/").json()  # checked on the way
    assert "pending_by_severity" in stats
    widened = json.dumps({**stats, "undocumented": 1}).encode()
    with pytest.raises(AssertionError, match="undocumented"):
        assert_conforms("GET", "/api/v1/apvs/stats/", 200,
                        {"Content-Type": "application/json"}, widened)
