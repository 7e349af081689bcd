"""Rule 13: validating admission webhooks, called over HTTPS by the emulator as kube-apiserver calls them."""

from __future__ import annotations

import base64
import dataclasses
import http.server
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support.emulator import KubeEmulator, running_emulator
from tests.support.kube import ApiStatusError, KubeClient, deployment_manifest

ROOT = Path(__file__).parents[2]
DEPLOYMENT = ("apps/v1", "Deployment")
CONFIGURATIONS = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"
DEPLOYMENTS = "/apis/apps/v1/namespaces/default/deployments"
Answer = Callable[[dict[str, Any]], Any]


@dataclasses.dataclass(frozen=True)
class Tls:
    """A test CA, a server certificate it signed (IP 127.0.0.1, DNS guard.hooks.svc), and an unrelated CA."""

    ca_bundle: str
    other_ca_bundle: str
    cert: Path
    key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def _self_signed_ca(directory: Path, name: str) -> None:
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "1",
        "-subj",
        f"/CN={name}",
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.crt",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
        cwd=directory,
    )


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    directory = tmp_path_factory.mktemp("tls")
    _self_signed_ca(directory, "test-ca")
    _self_signed_ca(directory, "other-ca")
    (directory / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:guard.hooks.svc\n")
    _openssl(
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-subj",
        "/CN=guard",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        cwd=directory,
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "test-ca.crt",
        "-CAkey",
        "test-ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "server.ext",
        "-out",
        "server.crt",
        cwd=directory,
    )

    def bundle(name: str) -> str:
        return base64.b64encode((directory / name).read_bytes()).decode()

    return Tls(bundle("test-ca.crt"), bundle("other-ca.crt"), directory / "server.crt", directory / "server.key")


def review_response(review: dict[str, Any], **response: Any) -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": review["request"]["uid"], **response},
    }


def allow(review: dict[str, Any]) -> dict[str, Any]:
    return review_response(review, allowed=True)


class WebhookServer:
    """An HTTPS webhook in a thread: records every call (path with query, review) and answers with `answer`."""

    def __init__(self, tls: Tls) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.answers: dict[str, Answer] = {}
        self.delay = 0.0
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.calls.append((self.path, review))
                time.sleep(owner.delay)
                answer = owner.answers.get(self.path.split("?")[0], allow)(review)
                payload = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.handle_error = lambda *args: None  # type: ignore[method-assign]  # clients that time out
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(tls.cert, tls.key)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    def called(self) -> list[str]:
        """The paths called (one per webhook in these tests), without the query."""
        return [path.split("?")[0] for path, _ in self.calls]

    def reviews(self, path: str) -> list[dict[str, Any]]:
        return [review for called, review in self.calls if called.split("?")[0] == path]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def webhook(tls: Tls) -> Iterator[WebhookServer]:
    server = WebhookServer(tls)
    yield server
    server.close()


@dataclasses.dataclass(frozen=True)
class Setup:
    """An emulator, a client of it, and a webhook server whose CA the configurations trust."""

    emulator: KubeEmulator
    kube: KubeClient
    webhook: WebhookServer
    tls: Tls

    def at(self, path: str) -> dict[str, Any]:
        """A clientConfig for the test webhook at this path."""
        return {"url": self.webhook.url(path), "caBundle": self.tls.ca_bundle}


@pytest.fixture
def setup(emulator: KubeEmulator, kube: KubeClient, webhook: WebhookServer, tls: Tls) -> Setup:
    return Setup(emulator, kube, webhook, tls)


def hook(
    name: str,
    client_config: dict[str, Any],
    *,
    rules: list[dict[str, Any]] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """A webhook of a ValidatingWebhookConfiguration; by default for every write to apps/v1 deployments."""
    rule = {"operations": ["*"], "apiGroups": ["apps"], "apiVersions": ["v1"], "resources": ["deployments"]}
    return {
        "name": name,
        "clientConfig": client_config,
        "rules": rules or [rule],
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
        **fields,
    }


def rule(*resources: str, operations: tuple[str, ...] = ("*",), groups: tuple[str, ...] = ("*",)) -> dict[str, Any]:
    return {"operations": list(operations), "apiGroups": list(groups), "apiVersions": ["*"], "resources": [*resources]}


def on(*operations: str) -> list[dict[str, Any]]:
    """Rules for these operations on apps/v1 deployments."""
    return [
        {"operations": list(operations), "apiGroups": ["apps"], "apiVersions": ["v1"], "resources": ["deployments"]}
    ]


def register(emulator: KubeEmulator, *hooks: dict[str, Any], name: str = "guard") -> dict[str, Any]:
    configuration = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": list(hooks),
    }
    return emulator.create_object(configuration)


def raw(
    kube: KubeClient, method: str, path: str, body: Any, *, content_type: str = "application/json"
) -> tuple[int, list[str], dict[str, Any]]:
    """One request, keeping the Warning headers (which KubeClient drops)."""
    data, headers = json.dumps(body).encode(), {"Content-Type": content_type}
    request = urllib.request.Request(kube.base_url + path, data=data, method=method, headers=headers)  # noqa: S310 (http only)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (http only)
            return response.status, response.headers.get_all("Warning") or [], json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get_all("Warning") or [], json.loads(error.read())


def test_configurations_are_stored_with_defaults_and_validated(emulator: KubeEmulator, kube: KubeClient) -> None:
    resources = kube.request("GET", "/apis/admissionregistration.k8s.io/v1")["resources"]
    service = {"service": {"namespace": "hooks", "name": "guard"}}
    created = register(emulator, hook("check.example.test", service))

    webhook = created["webhooks"][0]
    assert [(r["name"], r["namespaced"]) for r in resources] == [("validatingwebhookconfigurations", False)]
    assert (webhook["failurePolicy"], webhook["matchPolicy"], webhook["timeoutSeconds"]) == ("Fail", "Equivalent", 10)
    assert (webhook["namespaceSelector"], webhook["objectSelector"]) == ({}, {})
    assert (webhook["rules"][0]["scope"], webhook["clientConfig"]["service"]["port"]) == ("*", 443)
    assert kube.request("GET", f"{CONFIGURATIONS}/guard")["metadata"]["generation"] == 1
    bad = hook("bad.example.test", service)
    del bad["sideEffects"], bad["admissionReviewVersions"]
    with pytest.raises(ApiStatusError) as refused:
        kube.request("POST", CONFIGURATIONS, body={"metadata": {"name": "bad"}, "webhooks": [bad]})
    without_endpoint = {"metadata": {"name": "bad"}, "webhooks": [hook("bad.example.test", {})]}
    with pytest.raises(ApiStatusError) as no_endpoint:
        kube.request("POST", CONFIGURATIONS, body=without_endpoint)
    assert refused.value.status == 422
    assert [cause["field"] for cause in refused.value.body["details"]["causes"]] == [
        "webhooks[0].sideEffects",
        "webhooks[0].admissionReviewVersions",
    ]
    assert "webhooks[0].sideEffects: Required value" in refused.value.body["message"]
    assert no_endpoint.value.body["details"]["causes"][0]["field"] == "webhooks[0].clientConfig"
    kube.request("DELETE", f"{CONFIGURATIONS}/guard")
    assert kube.request("GET", CONFIGURATIONS)["items"] == []


def test_rules_match_operations_groups_and_subresources_exactly(setup: Setup) -> None:
    emulator, kube, webhook = setup.emulator, setup.kube, setup.webhook
    register(
        emulator,
        hook("updates.example.test", setup.at("/updates"), rules=on("UPDATE")),
        hook("main.example.test", setup.at("/main"), rules=[rule("*", groups=("apps",))]),
        hook("scale.example.test", setup.at("/scale"), rules=[rule("*/scale")]),
        hook("every.example.test", setup.at("/every"), rules=[rule("*/*")]),
        hook("widgets.example.test", setup.at("/widgets"), rules=[rule("widgets", groups=("example.test",))]),
    )
    called: dict[str, list[str]] = {}

    def record(action: str, request: Callable[[], Any]) -> None:
        webhook.calls.clear()
        request()
        called[action] = sorted(webhook.called())

    record("create", lambda: kube.create_object(deployment_manifest("web")))
    record("patch", lambda: kube.patch_object(*DEPLOYMENT, "web", {"spec": {"paused": True}}, namespace="default"))
    scale = {"spec": {"replicas": 3}}
    record("scale", lambda: kube.patch_object(*DEPLOYMENT, "web", scale, namespace="default", subresource="scale"))
    status = {"status": {"replicas": 1}}
    record("status", lambda: kube.patch_object(*DEPLOYMENT, "web", status, namespace="default", subresource="status"))
    widget = {"apiVersion": "example.test/v1", "kind": "Widget", "metadata": {"name": "w"}}
    record("widget", lambda: kube.create_object(widget))
    another = {"metadata": {"name": "another"}, "webhooks": []}
    record("configuration", lambda: kube.request("POST", CONFIGURATIONS, body=another))
    record("configuration delete", lambda: kube.request("DELETE", f"{CONFIGURATIONS}/another"))

    assert called == {
        "create": ["/every", "/main"],
        "patch": ["/every", "/main", "/updates"],
        "scale": ["/every", "/scale"],  # neither `deployments` nor `*` matches a subresource
        "status": ["/every"],
        "widget": ["/every", "/widgets"],
        "configuration": [],  # webhook configurations are never sent to webhooks
        "configuration delete": [],
    }


def test_equivalent_versions_are_matched_unless_the_policy_is_exact(setup: Setup) -> None:
    emulator, kube, webhook = setup.emulator, setup.kube, setup.webhook
    widgets_v1 = rule("widgets", groups=("example.test",)) | {"apiVersions": ["v1"]}
    register(
        emulator,
        hook("equivalent.example.test", setup.at("/equivalent"), rules=[widgets_v1]),
        hook("exact.example.test", setup.at("/exact"), rules=[widgets_v1], matchPolicy="Exact"),
    )
    kube.create_object({"apiVersion": "example.test/v1beta1", "kind": "Widget", "metadata": {"name": "w"}})

    [review] = webhook.reviews("/equivalent")
    request = review["request"]
    assert webhook.called() == ["/equivalent"]
    assert request["kind"] == {"group": "example.test", "version": "v1", "kind": "Widget"}
    assert request["requestKind"] == {"group": "example.test", "version": "v1beta1", "kind": "Widget"}
    assert request["resource"]["version"] == "v1"
    assert request["requestResource"]["version"] == "v1beta1"
    assert request["object"]["apiVersion"] == "example.test/v1"


def test_namespace_selector_matches_namespace_labels_and_its_name(setup: Setup) -> None:
    emulator, kube, webhook = setup.emulator, setup.kube, setup.webhook
    emulator.create_object(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop", "labels": {"team": "a"}}}
    )
    emulator.create_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "blog"}})
    by_name = {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["blog"]}]}
    namespaces = rule("namespaces", groups=("",))
    register(
        emulator,
        hook(
            "team.example.test",
            setup.at("/team"),
            rules=[rule("deployments"), namespaces],
            namespaceSelector={"matchLabels": {"team": "a"}},
        ),
        hook("name.example.test", setup.at("/name"), namespaceSelector=by_name),
    )
    kube.create_object(deployment_manifest("web", namespace="shop"))
    kube.create_object(deployment_manifest("web", namespace="blog"))
    kube.create_object(deployment_manifest("web", namespace="default"))
    kube.create_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ops", "labels": {"team": "a"}}})

    called = [(path.split("?")[0], review["request"]["namespace"]) for path, review in webhook.calls]
    assert called == [("/team", "shop"), ("/name", "blog"), ("/team", "ops")]  # a namespace by its own labels


def test_object_selector_matches_the_new_or_the_old_object(setup: Setup) -> None:
    emulator, kube, webhook = setup.emulator, setup.kube, setup.webhook
    register(
        emulator,
        hook("opt-in.example.test", setup.at("/opt-in"), objectSelector={"matchLabels": {"guard": "on"}}),
    )
    kube.create_object(deployment_manifest("plain"))
    kube.create_object(deployment_manifest("guarded", labels={"guard": "on"}))
    kube.patch_object(*DEPLOYMENT, "guarded", {"metadata": {"labels": {"guard": None}}}, namespace="default")
    kube.patch_object(*DEPLOYMENT, "guarded", {"spec": {"paused": True}}, namespace="default")
    kube.delete_object(*DEPLOYMENT, "plain", namespace="default")

    operations = [review["request"]["operation"] for _, review in webhook.calls]
    assert operations == ["CREATE", "UPDATE"]  # the second update matches neither object; plain never matches


def test_match_conditions_decide_and_errors_follow_the_failure_policy(setup: Setup) -> None:
    emulator, kube, webhook = setup.emulator, setup.kube, setup.webhook
    template_changed = [
        {"name": "updates", "expression": "request.operation == 'UPDATE'"},
        {
            "name": "template",
            "expression": "has(object.spec.template) && object.spec.template != oldObject.spec.template",
        },
    ]
    broken = [{"name": "broken", "expression": "object.spec.nope == 1"}]
    register(
        emulator,
        hook("template.example.test", setup.at("/template"), matchConditions=template_changed),
        hook("lenient.example.test", setup.at("/lenient"), matchConditions=broken, failurePolicy="Ignore"),
    )
    kube.create_object(deployment_manifest("web"))
    kube.patch_object(*DEPLOYMENT, "web", {"spec": {"replicas": 2}}, namespace="default")
    image = {"spec": {"template": {"metadata": {"annotations": {"rollout": "2"}}}}}
    kube.patch_object(*DEPLOYMENT, "web", image, namespace="default")
    register(emulator, hook("strict.example.test", setup.at("/strict"), matchConditions=broken), name="strict")
    status, _, refusal = raw(kube, "POST", DEPLOYMENTS, deployment_manifest("api"))

    assert webhook.called() == ["/template"]  # once, for the template change; lenient's error skipped it
    assert (status, refusal["reason"]) == (403, "Forbidden")
    assert refusal["message"].startswith(
        """deployments.apps "api" is forbidden: expression 'object.spec.nope == 1' resulted in error: """
    )
    assert emulator.read_object("deployments", "default", "api") is None


def test_reviews_carry_the_object_to_be_stored_and_the_old_one(setup: Setup) -> None:
    emulator, kube, webhook = setup.emulator, setup.kube, setup.webhook
    register(emulator, hook("check.example.test", setup.at("/check")))
    manifest = deployment_manifest("web")
    del manifest["spec"]["replicas"]
    created = kube.create_object(manifest)
    replaced = kube.replace_object(created | {"spec": {**created["spec"], "paused": True}})
    kube.delete_object(*DEPLOYMENT, "web", namespace="default")

    (create_path, create), (_, update), (_, delete) = webhook.calls
    request = create["request"]
    assert create_path == "/check?timeout=10s"
    assert (create["apiVersion"], create["kind"]) == ("admission.k8s.io/v1", "AdmissionReview")
    assert request["kind"] == request["requestKind"] == {"group": "apps", "version": "v1", "kind": "Deployment"}
    assert request["resource"] == {"group": "apps", "version": "v1", "resource": "deployments"}
    assert (request["name"], request["namespace"], request["operation"]) == ("web", "default", "CREATE")
    assert (request["userInfo"]["username"], request["dryRun"]) == ("kubernetes-admin", False)
    assert request["options"] == {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}
    assert request["object"]["spec"]["replicas"] == 1  # defaulted, as stored
    assert request["object"]["metadata"]["uid"] == created["metadata"]["uid"]  # the identity that was stored
    assert "resourceVersion" not in request["object"]["metadata"]
    assert request["oldObject"] is None
    assert (update["request"]["operation"], update["request"]["options"]["kind"]) == ("UPDATE", "UpdateOptions")
    assert update["request"]["object"]["spec"]["paused"] is True
    assert update["request"]["object"]["metadata"]["generation"] == replaced["metadata"]["generation"] == 2
    assert update["request"]["oldObject"] == created
    assert (delete["request"]["operation"], delete["request"]["options"]["kind"]) == ("DELETE", "DeleteOptions")
    assert (delete["request"]["object"], delete["request"]["oldObject"]) == (None, replaced)
    assert len({review["request"]["uid"] for _, review in webhook.calls}) == 3


def test_every_patch_is_an_update_of_the_patched_object(setup: Setup) -> None:
    emulator, kube, webhook = setup.emulator, setup.kube, setup.webhook
    emulator.create_object(deployment_manifest("web"))
    register(
        emulator,
        hook("check.example.test", setup.at("/check"), rules=[rule("deployments", "deployments/scale")]),
    )
    kube.patch_object(*DEPLOYMENT, "web", {"spec": {"paused": True}}, namespace="default")
    kube.patch_object(
        *DEPLOYMENT,
        "web",
        [{"op": "replace", "path": "/spec/replicas", "value": 2}],
        namespace="default",
        patch_type="json",
    )
    kube.patch_object(
        *DEPLOYMENT, "web", {"metadata": {"labels": {"tier": "web"}}}, namespace="default", patch_type="strategic"
    )
    kube.patch_object(*DEPLOYMENT, "web", {"spec": {"replicas": 5}}, namespace="default", subresource="scale")

    merge, json_patch, strategic, scale = (review["request"] for _, review in webhook.calls)
    assert {request["operation"] for request in (merge, json_patch, strategic, scale)} == {"UPDATE"}
    assert (merge["object"]["spec"]["paused"], "paused" in merge["oldObject"]["spec"]) == (True, False)
    assert (json_patch["object"]["spec"]["replicas"], json_patch["oldObject"]["spec"]["replicas"]) == (2, 1)
    assert strategic["object"]["metadata"]["labels"]["tier"] == "web"
    assert (scale["subResource"], scale["requestSubResource"]) == ("scale", "scale")
    assert scale["kind"] == {"group": "autoscaling", "version": "v1", "kind": "Scale"}
    assert scale["resource"] == {"group": "apps", "version": "v1", "resource": "deployments"}
    assert (scale["object"]["spec"]["replicas"], scale["oldObject"]["spec"]["replicas"]) == (5, 2)


@pytest.mark.parametrize(
    ("status", "code", "reason", "message"),
    [
        ({"message": "no images from there"}, 400, None, "denied the request: no images from there"),
        ({"code": 403, "reason": "Forbidden", "message": "no"}, 403, "Forbidden", "denied the request: no"),
        ({"code": 422, "reason": "Invalid"}, 422, "Invalid", "denied the request: Invalid"),
        (None, 400, None, "denied the request without explanation"),
    ],
)
def test_a_denial_fails_the_request_with_its_code_and_message(
    setup: Setup, status: dict[str, Any] | None, code: int, reason: str | None, message: str
) -> None:
    emulator, kube, webhook = setup.emulator, setup.kube, setup.webhook
    register(emulator, hook("deny.example.test", setup.at("/deny")))
    webhook.answers["/deny"] = lambda review: review_response(review, allowed=False, status=status)

    answered, _, body = raw(kube, "POST", DEPLOYMENTS, deployment_manifest("web"))

    assert (answered, body["code"], body.get("reason"), body["status"]) == (code, code, reason, "Failure")
    assert body["message"] == f'admission webhook "deny.example.test" {message}'
    assert emulator.read_object("deployments", "default", "web") is None


def test_a_denied_write_is_neither_stored_nor_watched_and_is_logged(setup: Setup) -> None:
    emulator, kube, webhook = setup.emulator, setup.kube, setup.webhook
    emulator.create_object(deployment_manifest("web"))
    register(emulator, hook("deny.example.test", setup.at("/deny")))
    webhook.answers["/deny"] = lambda review: review_response(
        review,
        allowed=review["request"]["object"]["metadata"]["name"] != "bad" and review["request"]["operation"] == "CREATE",
    )
    version = kube.list_objects(*DEPLOYMENT)["metadata"]["resourceVersion"]
    with kube.watch(*DEPLOYMENT, params={"resourceVersion": version}) as stream:
        with pytest.raises(ApiStatusError):
            kube.create_object(deployment_manifest("bad"))
        with pytest.raises(ApiStatusError):
            kube.patch_object(*DEPLOYMENT, "web", {"spec": {"paused": True}}, namespace="default")
        kube.create_object(deployment_manifest("good"))
        event = stream.next_event()

    assert event is not None
    assert (event["type"], event["object"]["metadata"]["name"]) == ("ADDED", "good")
    assert str(int(version) + 1) == event["object"]["metadata"]["resourceVersion"]
    assert [d["metadata"]["name"] for d in emulator.list_objects("deployments")] == ["good", "web"]
    assert "paused" not in (emulator.read_object("deployments", "default", "web") or {})["spec"]
    writes = emulator.writes_to("deployments", subresource=None)
    assert [(record.verb, record.name, record.status) for record in writes] == [
        ("create", "bad", 400),
        ("patch", "web", 400),
        ("create", "good", 201),
    ]


def test_warnings_of_every_webhook_become_warning_headers(setup: Setup) -> None:
    emulator, kube, webhook = setup.emulator, setup.kube, setup.webhook
    register(
        emulator,
        hook("first.example.test", setup.at("/first")),
        hook("second.example.test", setup.at("/second")),
    )
    webhook.answers["/first"] = lambda review: review_response(review, allowed=True, warnings=['image "app:1" is old'])
    webhook.answers["/second"] = lambda review: review_response(
        review, allowed=False, warnings=["no owner label"], status={"code": 403, "message": "no owner"}
    )

    status, warnings, _ = raw(kube, "POST", DEPLOYMENTS, deployment_manifest("web"))

    assert status == 403  # a refused request still carries the warnings, as on a real server
    assert warnings == ['299 - "image \\"app:1\\" is old"', '299 - "no owner label"']


@pytest.fixture
def kubectl(kubeconfig: Path, tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed")
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = ["kubectl", "--cache-dir", str(tmp_path / "cache"), *args]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)

    return run


def test_kubectl_applies_a_configuration_and_shows_warnings_and_denials(
    kubectl: Callable[..., subprocess.CompletedProcess[str]], setup: Setup, tmp_path: Path
) -> None:
    configuration = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "guard"},
        "webhooks": [hook("owner.example.test", setup.at("/owner"))],
    }
    (tmp_path / "guard.yaml").write_text(yaml.safe_dump(configuration))
    (tmp_path / "web.yaml").write_text(yaml.safe_dump(deployment_manifest("web")))
    (tmp_path / "api.yaml").write_text(yaml.safe_dump(deployment_manifest("api")))

    def owner_check(review: dict[str, Any]) -> dict[str, Any]:
        if review["request"]["name"] == "api":
            return review_response(
                review, allowed=False, status={"code": 403, "reason": "Forbidden", "message": "no owner"}
            )
        return review_response(review, allowed=True, warnings=["no owner label: set one soon"])

    setup.webhook.answers["/owner"] = owner_check
    applied = kubectl("apply", "--validate=false", "-f", str(tmp_path / "guard.yaml"))
    warned = kubectl("apply", "--validate=false", "-f", str(tmp_path / "web.yaml"))
    denied = kubectl("apply", "--validate=false", "-f", str(tmp_path / "api.yaml"))

    assert (applied.returncode, applied.stdout.strip()) == (
        0,
        "validatingwebhookconfiguration.admissionregistration.k8s.io/guard created",
    )
    assert (warned.returncode, warned.stderr.strip()) == (0, "Warning: no owner label: set one soon")
    assert denied.returncode == 1
    assert 'Error from server (Forbidden): error when creating "' in denied.stderr
    assert 'admission webhook "owner.example.test" denied the request: no owner' in denied.stderr


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("policy", ["Fail", "Ignore"])
def test_an_unreachable_webhook_follows_the_failure_policy(
    emulator: KubeEmulator, kube: KubeClient, tls: Tls, policy: str
) -> None:
    port = _closed_port()
    dead = {"url": f"https://127.0.0.1:{port}/validate", "caBundle": tls.ca_bundle}
    register(emulator, hook("dead.example.test", dead, failurePolicy=policy))

    status, _, body = raw(kube, "POST", DEPLOYMENTS, deployment_manifest("web"))

    if policy == "Ignore":
        assert status == 201
        return
    assert (status, body["reason"]) == (500, "InternalError")
    assert body["message"] == (
        f'Internal error occurred: failed calling webhook "dead.example.test": failed to call webhook: '
        f'Post "https://127.0.0.1:{port}/validate?timeout=10s": dial tcp 127.0.0.1:{port}: connect: connection refused'
    )
    assert emulator.read_object("deployments", "default", "web") is None


def test_a_slow_webhook_times_out_by_policy_without_blocking_other_clients(setup: Setup) -> None:
    emulator, kube, webhook = setup.emulator, setup.kube, setup.webhook
    register(
        emulator,
        hook("slow.example.test", setup.at("/slow"), timeoutSeconds=1, rules=on("CREATE")),
        hook(
            "lenient.example.test", setup.at("/lenient"), timeoutSeconds=1, failurePolicy="Ignore", rules=on("UPDATE")
        ),
    )
    emulator.create_object(deployment_manifest("web"))
    webhook.delay = 1.5
    results: list[tuple[int, list[str], dict[str, Any]]] = []
    slow = threading.Thread(target=lambda: results.append(raw(kube, "POST", DEPLOYMENTS, deployment_manifest("api"))))
    slow.start()
    while not webhook.calls:
        time.sleep(0.01)
    started = time.monotonic()
    kube.get_object(*DEPLOYMENT, "web", namespace="default")  # served while the create waits for its webhook
    served = time.monotonic() - started
    slow.join(10)
    lenient = kube.patch_object(*DEPLOYMENT, "web", {"spec": {"paused": True}}, namespace="default")

    [(status, _, body)] = results
    assert served < 0.5  # the webhook answers only after 1.5 s
    assert (status, body["reason"]) == (500, "InternalError")
    assert body["message"].endswith(f'Post "{webhook.url("/slow")}?timeout=1s": context deadline exceeded')
    assert lenient["spec"]["paused"] is True  # Ignore: the write goes on after the timeout


@pytest.mark.parametrize(
    ("answer", "cause"),
    [
        (lambda review: {**allow(review), "response": {"uid": "not-mine", "allowed": True}}, 'expected response.uid="'),
        (lambda review: {**allow(review), "apiVersion": "admission.k8s.io/v2"}, "expected webhook response of"),
        (lambda review: b"<html>oops</html>", "failed to call webhook: couldn't decode the response"),
    ],
)
def test_a_malformed_response_fails_by_policy(setup: Setup, answer: Answer, cause: str) -> None:
    emulator, kube, webhook = setup.emulator, setup.kube, setup.webhook
    register(
        emulator,
        hook("strict.example.test", setup.at("/strict"), rules=on("CREATE")),
        hook("lenient.example.test", setup.at("/lenient"), failurePolicy="Ignore", rules=on("UPDATE")),
    )
    webhook.answers["/strict"] = webhook.answers["/lenient"] = answer
    emulator.create_object(deployment_manifest("web"))

    status, _, body = raw(kube, "POST", DEPLOYMENTS, deployment_manifest("api"))
    lenient = kube.patch_object(*DEPLOYMENT, "web", {"spec": {"paused": True}}, namespace="default")

    assert status == 500
    assert body["message"].startswith('Internal error occurred: failed calling webhook "strict.example.test": ')
    assert cause in body["message"]
    assert lenient["spec"]["paused"] is True


def test_tls_trusts_only_the_ca_bundle_and_checks_the_host(setup: Setup) -> None:
    emulator, kube, webhook = setup.emulator, setup.kube, setup.webhook
    untrusting = {"url": webhook.url("/strange"), "caBundle": setup.tls.other_ca_bundle}
    renamed = {"url": f"https://localhost:{webhook.port}/renamed", "caBundle": setup.tls.ca_bundle}
    register(
        emulator,
        hook("strange.example.test", untrusting, rules=on("CREATE")),
        hook("renamed.example.test", renamed, rules=on("UPDATE")),
    )
    emulator.create_object(deployment_manifest("web"))

    _, _, untrusted = raw(kube, "POST", DEPLOYMENTS, deployment_manifest("api"))
    _, _, misnamed = raw(
        kube, "PATCH", f"{DEPLOYMENTS}/web", {"spec": {"paused": True}}, content_type="application/merge-patch+json"
    )

    assert webhook.calls == []
    assert untrusted["message"].endswith(
        "tls: failed to verify certificate: x509: certificate signed by unknown authority"
    )
    assert misnamed["message"].endswith(
        "tls: failed to verify certificate: x509: certificate is not valid for localhost"
    )


def test_a_service_reference_goes_to_the_mapped_host_with_the_service_name_checked(
    webhook: WebhookServer, tls: Tls
) -> None:
    services = {"hooks/guard": "127.0.0.1", "hooks/impostor": "127.0.0.1"}
    with running_emulator(webhook_services=services) as emulator:
        kube = KubeClient(str(emulator.url))

        def service(name: str) -> dict[str, Any]:
            reference = {"namespace": "hooks", "name": name, "path": "/validate", "port": webhook.port}
            return {"service": reference, "caBundle": tls.ca_bundle}

        register(
            emulator,
            hook("guard.example.test", service("guard"), rules=on("CREATE")),
            hook("impostor.example.test", service("impostor"), rules=on("UPDATE")),
            hook("unmapped.example.test", service("unmapped"), rules=on("DELETE")),
        )
        created = kube.create_object(deployment_manifest("web"))
        _, _, impostor = raw(kube, "PATCH", f"{DEPLOYMENTS}/web", {}, content_type="application/merge-patch+json")
        _, _, unmapped = raw(kube, "DELETE", f"{DEPLOYMENTS}/web", {})

    assert created["metadata"]["name"] == "web"
    assert [path for path, _ in webhook.calls] == ["/validate?timeout=10s"]
    assert impostor["message"].endswith("x509: certificate is not valid for impostor.hooks.svc")
    assert 'Post "https://impostor.hooks.svc:' in impostor["message"]
    assert 'Post "https://unmapped.hooks.svc:' in unmapped["message"]
    assert "lookup unmapped.hooks.svc: no such host" in unmapped["message"]


def test_the_process_maps_services_from_its_command_line(webhook: WebhookServer, tls: Tls) -> None:
    command = [
        sys.executable,
        "-m",
        "tests.support.emulator",
        "--port",
        "0",
        "--webhook-service",
        "hooks/guard=127.0.0.1",
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        kube = KubeClient(process.stdout.readline().strip())
        reference = {"namespace": "hooks", "name": "guard", "path": "/validate", "port": webhook.port}
        guard = hook("guard.example.test", {"service": reference, "caBundle": tls.ca_bundle})
        kube.request("POST", CONFIGURATIONS, body={"metadata": {"name": "guard"}, "webhooks": [guard]})
        kube.create_object(deployment_manifest("web"))
    finally:
        process.terminate()
        process.wait(30)
    assert [review["request"]["name"] for _, review in webhook.calls] == ["web"]


def test_a_write_changed_underneath_its_webhook_call_is_reviewed_again(setup: Setup) -> None:
    emulator, kube, webhook = setup.emulator, setup.kube, setup.webhook
    emulator.create_object(deployment_manifest("web"))
    register(emulator, hook("check.example.test", setup.at("/check")))
    webhook.delay = 0.3
    patching = threading.Thread(
        target=lambda: kube.patch_object(*DEPLOYMENT, "web", {"spec": {"paused": True}}, namespace="default")
    )
    patching.start()
    while not webhook.calls:
        time.sleep(0.01)
    emulator.patch_object("deployments", "default", "web", {"spec": {"replicas": 4}})  # lands while the call waits
    patching.join(10)

    first, second = (review["request"] for _, review in webhook.calls)
    stored = emulator.read_object("deployments", "default", "web") or {}
    assert (first["oldObject"]["spec"]["replicas"], second["oldObject"]["spec"]["replicas"]) == (1, 4)
    assert (second["object"]["spec"]["replicas"], second["object"]["spec"]["paused"]) == (4, True)
    assert (stored["spec"]["replicas"], stored["spec"]["paused"]) == (4, True)


def test_a_v1beta1_webhook_gets_a_v1beta1_review_and_its_looser_checks(setup: Setup) -> None:
    emulator, kube, webhook = setup.emulator, setup.kube, setup.webhook
    register(emulator, hook("old.example.test", setup.at("/old"), admissionReviewVersions=["v1beta1", "v1"]))
    webhook.answers["/old"] = lambda review: {"response": {"allowed": True}}  # no uid, apiVersion or kind

    kube.create_object(deployment_manifest("web"))

    [(_, review)] = webhook.calls
    assert (review["apiVersion"], review["kind"]) == ("admission.k8s.io/v1beta1", "AdmissionReview")
    assert emulator.read_object("deployments", "default", "web") is not None
