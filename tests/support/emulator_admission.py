"""Validating admission webhooks, called the way kube-apiserver's ValidatingAdmissionWebhook plugin calls them.

`ValidatingWebhookConfiguration` objects are stored like any built-in (with the real defaults and the main parts of
the real validation). Before the store commits a write it asks `WebhookAdmission.gate()`: when a webhook matches
(rules, namespaceSelector, objectSelector, then matchConditions in CEL), the gate raises `AdmissionPending` with
nothing stored. The emulator then awaits `review()` (the HTTPS calls run in parallel while the event loop serves
other clients) and runs the same write again, which is stored only if it is still the write the webhooks admitted;
otherwise it is reviewed again, as a real server reruns admission when its optimistic update has to retry.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import functools
import json
import ssl
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import aiohttp
import celpy
import yarl
from celpy.adapter import json_to_cel
from celpy.celparser import CELParseError
from celpy.evaluation import CELEvalError
from tests.support.emulator_resources import (
    NAMESPACE_RESOURCE,
    WEBHOOK_CONFIGURATION_RESOURCE,
    Body,
    ResourceRegistry,
    ResourceType,
)
from tests.support.emulator_selectors import label_selector_requirements
from tests.support.emulator_store import SCALE_KIND, AdmissionAttributes, ApiError, ObjectStore, invalid

USER_INFO = {"username": "kubernetes-admin", "groups": ["system:masters", "system:authenticated"]}
"""Who every request is from, as far as webhooks can tell (the emulator does not authenticate)."""
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
_REVIEW_VERSIONS = ("v1", "v1beta1")
_OPERATIONS = ("*", "CONNECT", "CREATE", "DELETE", "UPDATE")
_SCOPES = ("*", "Cluster", "Namespaced")
_SELECTOR_OPERATORS = ("DoesNotExist", "Exists", "In", "NotIn")
_MAX_MATCH_CONDITIONS = 64
# The configuration kinds a real server never sends to webhooks, so that no webhook can lock itself in.
_EXEMPT_KINDS = frozenset(
    {
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "MutatingAdmissionPolicy",
        "MutatingAdmissionPolicyBinding",
    }
)
_CEL = celpy.Environment()


def _supported(value: Any, allowed: Sequence[str]) -> str:
    return f'Unsupported value: "{value}": supported values: ' + ", ".join(f'"{item}"' for item in allowed)


def _go_strings(values: Sequence[Any]) -> str:
    return "[]string{" + ", ".join(json.dumps(str(value)) for value in values) + "}"


# Configurations: the real server's defaults and validation (the parts that matter when calling webhooks).


def webhook_configuration_strategy(resource_type: ResourceType, obj: Body) -> Body:
    """Default a ValidatingWebhookConfiguration as admissionregistration/v1 does, and refuse invalid ones (422)."""
    webhooks = obj.get("webhooks") or []
    causes: list[tuple[str, str]] = []
    names: set[str] = set()
    for index, hook in enumerate(webhooks):
        path = f"webhooks[{index}]"
        if not isinstance(hook, dict):
            causes.append((path, "Invalid value: must be an object"))
            continue
        _default_webhook(hook)
        causes += _webhook_errors(path, hook)
        if hook.get("name") in names:
            causes.append((f"{path}.name", f'Duplicate value: "{hook["name"]}"'))
        names.add(hook.get("name", ""))
    if causes:
        raise invalid(resource_type, obj["metadata"]["name"], *causes)
    return obj


def _default_webhook(hook: Body) -> None:
    defaults = {"failurePolicy": "Fail", "matchPolicy": "Equivalent", "timeoutSeconds": 10}
    for key, value in defaults.items():
        hook.setdefault(key, value)
    for key in ("namespaceSelector", "objectSelector"):
        if hook.get(key) is None:
            hook[key] = {}
    for rule in hook.get("rules") or []:
        if isinstance(rule, dict):
            rule.setdefault("scope", "*")
    service = (hook.get("clientConfig") or {}).get("service")
    if isinstance(service, dict):
        service.setdefault("port", 443)


def _webhook_errors(path: str, hook: Body) -> list[tuple[str, str]]:
    causes: list[tuple[str, str]] = []
    name = hook.get("name")
    if not name:
        causes.append((f"{path}.name", "Required value"))
    elif len(str(name).split(".")) < 3:
        causes.append((f"{path}.name", f'Invalid value: "{name}": should be a domain with at least three segments'))
    for index, rule in enumerate(hook.get("rules") or []):
        causes += _rule_errors(f"{path}.rules[{index}]", rule)
    for key, allowed in (("failurePolicy", ("Fail", "Ignore")), ("matchPolicy", ("Equivalent", "Exact"))):
        if hook[key] not in allowed:
            causes.append((f"{path}.{key}", _supported(hook[key], allowed)))
    side_effects = hook.get("sideEffects")
    if side_effects is None:
        causes.append((f"{path}.sideEffects", "Required value: must specify one of None, NoneOnDryRun"))
    elif side_effects not in ("None", "NoneOnDryRun"):
        causes.append((f"{path}.sideEffects", _supported(side_effects, ("None", "NoneOnDryRun"))))
    versions = hook.get("admissionReviewVersions")
    if not versions:
        causes.append((f"{path}.admissionReviewVersions", "Required value: must specify one of v1, v1beta1"))
    elif not set(versions) & set(_REVIEW_VERSIONS):
        message = f"Invalid value: {_go_strings(versions)}: must include at least one of v1, v1beta1"
        causes.append((f"{path}.admissionReviewVersions", message))
    timeout = hook["timeoutSeconds"]
    if not isinstance(timeout, int) or not 1 <= timeout <= 30:
        message = f"Invalid value: {timeout}: the timeout value must be between 1 and 30 seconds"
        causes.append((f"{path}.timeoutSeconds", message))
    causes += _client_config_errors(f"{path}.clientConfig", hook.get("clientConfig"))
    for key in ("namespaceSelector", "objectSelector"):
        causes += _selector_errors(f"{path}.{key}", hook[key])
    causes += _match_condition_errors(f"{path}.matchConditions", hook.get("matchConditions") or [])
    return causes


def _rule_errors(path: str, rule: Any) -> list[tuple[str, str]]:
    if not isinstance(rule, dict):
        return [(path, "Invalid value: must be an object")]
    required = ("operations", "apiGroups", "apiVersions", "resources")
    causes = [(f"{path}.{key}", "Required value") for key in required if not rule.get(key)]
    for index, operation in enumerate(rule.get("operations") or []):
        if operation not in _OPERATIONS:
            causes.append((f"{path}.operations[{index}]", _supported(operation, _OPERATIONS)))
    if rule["scope"] not in _SCOPES:
        causes.append((f"{path}.scope", _supported(rule["scope"], _SCOPES)))
    return causes


def _client_config_errors(path: str, config: Any) -> list[tuple[str, str]]:
    if not isinstance(config, dict) or (config.get("url") is None) == (config.get("service") is None):
        return [(path, "Required value: exactly one of url or service is required")]
    causes: list[tuple[str, str]] = []
    if config.get("caBundle"):
        try:
            base64.b64decode(config["caBundle"], validate=True)
        except (binascii.Error, ValueError) as exc:
            kind = "ValidatingWebhookConfiguration"
            message = f'{kind} in version "v1" cannot be handled as a {kind}: illegal base64 data in caBundle'
            raise ApiError(400, message) from exc
    if config.get("url") is not None:
        url = yarl.URL(str(config["url"]))
        if url.scheme != "https":
            causes.append((f"{path}.url", _supported(url.scheme, ("https",))))
        if url.query_string:
            causes.append((f"{path}.url", f'Invalid value: "{url}": query parameters are not allowed'))
        if url.fragment:
            causes.append((f"{path}.url", f'Invalid value: "{url}": fragments are not allowed'))
        return causes
    service = config["service"]
    for key in ("name", "namespace"):
        if not service.get(key):
            causes.append((f"{path}.service.{key}", f"Required value: service {key} is required"))
    port = service["port"]
    if not isinstance(port, int) or not 1 <= port <= 65535:
        message = f"Invalid value: {port}: port is not valid: must be between 1 and 65535, inclusive"
        causes.append((f"{path}.service.port", message))
    if service.get("path") and not str(service["path"]).startswith("/"):
        causes.append((f"{path}.service.path", f"Invalid value: \"{service['path']}\": must start with a '/'"))
    return causes


def _selector_errors(path: str, selector: Any) -> list[tuple[str, str]]:
    causes: list[tuple[str, str]] = []
    for index, expression in enumerate(selector.get("matchExpressions") or []):
        where = f"{path}.matchExpressions[{index}]"
        operator, values = expression.get("operator"), expression.get("values")
        if operator not in _SELECTOR_OPERATORS:
            causes.append((f"{where}.operator", f'Invalid value: "{operator}": not a valid selector operator'))
        elif operator in ("In", "NotIn") and not values:
            causes.append((f"{where}.values", "Required value: must be specified when `operator` is 'In' or 'NotIn'"))
        elif operator in ("Exists", "DoesNotExist") and values:
            message = "Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'"
            causes.append((f"{where}.values", message))
    return causes


def _match_condition_errors(path: str, conditions: Sequence[Any]) -> list[tuple[str, str]]:
    if len(conditions) > _MAX_MATCH_CONDITIONS:
        return [(path, f"Too many: {len(conditions)}: must have at most {_MAX_MATCH_CONDITIONS} items")]
    causes: list[tuple[str, str]] = []
    names: set[str] = set()
    for index, condition in enumerate(conditions):
        where = f"{path}[{index}]"
        name, expression = condition.get("name"), condition.get("expression")
        if not name:
            causes.append((f"{where}.name", "Required value"))
        elif name in names:
            causes.append((f"{where}.name", f'Duplicate value: "{name}"'))
        names.add(name)
        if not expression:
            causes.append((f"{where}.expression", "Required value"))
            continue
        try:
            _program(expression)
        except CELParseError as exc:
            position = f"<input>:{exc.line}:{exc.column}" if exc.line is not None else "<input>"
            message = f'Invalid value: "{expression}": compilation failed: ERROR: {position}: Syntax error'
            causes.append((f"{where}.expression", message))
    return causes


# CEL for matchConditions (cel-python; see docs/emulator.md for what it cannot evaluate).


@functools.lru_cache(maxsize=256)
def _program(expression: str) -> celpy.Runner:
    return _CEL.program(_CEL.compile(expression))


def _evaluate_condition(expression: str, variables: Mapping[str, Any]) -> tuple[bool, str | None]:
    """(matched, error): only a boolean false skips the webhook, as in kube-apiserver; errors are reported."""
    try:
        result = _program(expression).evaluate({key: json_to_cel(value) for key, value in variables.items()})
    except Exception as exc:  # CELEvalError, and plain Python errors for constructs cel-python does not support
        detail = str(exc.args[0] if isinstance(exc, CELEvalError) and exc.args else exc)
        detail = detail.split(" (in activation ", 1)[0]  # cel-python appends a dump of every variable
        return True, f"expression '{expression}' resulted in error: {detail}"
    return not (isinstance(result, celpy.celtypes.BoolType) and not result), None


# Matching a write against the registered webhooks.


@dataclasses.dataclass(frozen=True, kw_only=True)
class Invocation:
    """One webhook to call for a write, with the resource, kind and objects it asked for (matchPolicy)."""

    hook: Body
    """The webhook from its configuration (defaults set)."""
    resource: tuple[str, str, str]
    """Group, version and resource the webhook's rule matched."""
    kind: tuple[str, str, str]
    """Group, version and kind of the objects sent."""
    object: Body | None
    """The new object, in that version."""
    old_object: Body | None
    """The stored object, in that version."""


class AdmissionPending(Exception):
    """Raised by the gate: the write must be reviewed by these webhooks before it may be stored."""

    def __init__(self, attributes: AdmissionAttributes, invocations: Sequence[Invocation]) -> None:
        super().__init__(f"{attributes.operation} {attributes.resource_type.qualified_name} needs admission")
        self.attributes = attributes
        self.invocations = tuple(invocations)


def _request_namespace(attributes: AdmissionAttributes) -> str:
    """A Namespace's own requests carry its name as the namespace, as on a real server."""
    if attributes.resource_type.storage_key == NAMESPACE_RESOURCE.storage_key:
        obj = attributes.object or attributes.old_object or {}
        return str(obj.get("metadata", {}).get("name", ""))
    return attributes.namespace or ""


def _labels(obj: Body | None) -> dict[str, str]:
    return dict(((obj or {}).get("metadata") or {}).get("labels") or {})


def _selects(selector: Body, labels: Mapping[str, str]) -> bool:
    return all(requirement.matches(labels) for requirement in label_selector_requirements(selector))


def _object_selected(selector: Body, attributes: AdmissionAttributes) -> bool:
    """The new or the old object's labels must match (absent objects match nothing); empty selects all."""
    if not label_selector_requirements(selector):
        return True
    objects = (attributes.object, attributes.old_object)
    return any(obj is not None and _selects(selector, _labels(obj)) for obj in objects)


def _rule_matches(rule: Body, operation: str, resource: tuple[str, str, str], subresource: str, namespace: str) -> bool:
    group, version, plural = resource
    is_namespace = (group, version, plural) == ("", "v1", "namespaces")
    scope = rule["scope"]
    if scope == "Namespaced" and (is_namespace or not namespace):
        return False
    if scope == "Cluster" and not (is_namespace or not namespace):
        return False
    if not ({"*", operation} & set(rule["operations"])):
        return False
    if not ({"*", group} & set(rule["apiGroups"]) and {"*", version} & set(rule["apiVersions"])):
        return False
    for entry in rule["resources"]:
        wanted, _, wanted_sub = entry.partition("/")
        if wanted in ("*", plural) and wanted_sub in ("*", subresource):
            return True
    return False


def _serves(resource_type: ResourceType, subresource: str | None) -> bool:
    if subresource == "status":
        return resource_type.status_subresource
    if subresource == "scale":
        return resource_type.scale is not None
    return subresource is None


def _in_version(obj: Body | None, resource_type: ResourceType, subresource: str | None) -> Body | None:
    """The object as another served version presents it (conversion strategy None: only apiVersion changes)."""
    if obj is None or subresource == "scale":
        return obj
    return {**obj, "apiVersion": resource_type.api_version}


def _same_write(write: AdmissionAttributes, admitted: AdmissionAttributes) -> bool:
    """Whether a rerun computed the write the webhooks saw (a create's uid and timestamp are drawn anew)."""

    def identity_free(obj: Body | None) -> Body | None:
        if obj is None or write.operation != "CREATE":
            return obj
        metadata = {k: v for k, v in obj["metadata"].items() if k not in ("uid", "creationTimestamp")}
        if write.name == "":  # generateName: each run draws a name
            metadata.pop("name", None)
        return {**obj, "metadata": metadata}

    same_target = (write.operation, write.resource_type, write.subresource, write.namespace, write.name) == (
        admitted.operation,
        admitted.resource_type,
        admitted.subresource,
        admitted.namespace,
        admitted.name,
    )
    return (
        same_target
        and write.old_object == admitted.old_object
        and identity_free(write.object) == identity_free(admitted.object)
    )


def _request(attributes: AdmissionAttributes, invocation: Invocation) -> Body:
    """The AdmissionRequest fields shared by the review and CEL's `request` (no uid, objects or options).

    Empty strings stay (CEL's typed request has them); the review drops them, as Go's omitempty does.
    """
    rt = attributes.resource_type

    def gvk(kind: tuple[str, str, str]) -> Body:
        return {"group": kind[0], "version": kind[1], "kind": kind[2]}

    def gvr(resource: tuple[str, str, str]) -> Body:
        return {"group": resource[0], "version": resource[1], "resource": resource[2]}

    return {
        "kind": gvk(invocation.kind),
        "resource": gvr(invocation.resource),
        "requestKind": gvk(attributes.kind),
        "requestResource": gvr((rt.group, rt.version, rt.plural)),
        "subResource": attributes.subresource or "",
        "requestSubResource": attributes.subresource or "",
        "name": attributes.name,
        "namespace": _request_namespace(attributes),
        "operation": attributes.operation,
        "userInfo": USER_INFO,
        "dryRun": False,
    }


def _operation_options(operation: str, params: Mapping[str, str], body: Any) -> Body:
    """The options the request came with, as the review's `request.options` (a PATCH has UpdateOptions)."""
    if operation == "DELETE":
        options = dict(body) if isinstance(body, dict) else {}
        return {**options, "kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1"}
    kind = "CreateOptions" if operation == "CREATE" else "UpdateOptions"
    given = {key: params[key] for key in ("fieldManager", "fieldValidation") if params.get(key)}
    return {"kind": kind, "apiVersion": "meta.k8s.io/v1", **given}


# Calling a webhook.


class WebhookCallError(Exception):
    """The webhook could not be called or answered nonsense: failurePolicy decides."""


class WebhookDenial(ApiError):
    """A webhook's `allowed: false`, rendered as kube-apiserver 1.32 renders it."""

    def __init__(self, webhook: str, result: Any) -> None:
        result = dict(result) if isinstance(result, dict) else {}
        denied_by = f'admission webhook "{webhook}" denied the request'
        if result.get("message"):
            message = f"{denied_by}: {result['message']}"
        elif result.get("reason"):
            message = f"{denied_by}: {result['reason']}"
        else:
            message = f"{denied_by} without explanation"
        code = result.get("code") if isinstance(result.get("code"), int) else 0
        super().__init__(max(code, 400), message)  # a rejection never answers below 400
        self._result = result

    def status(self) -> Body:
        """The webhook's own Status (reason, details kept) with the message, code and status the server sets."""
        status = {key: value for key, value in self._result.items() if key not in ("kind", "apiVersion")}
        if status.get("status") in (None, "", "Success"):
            status["status"] = "Failure"
        status.update(message=self.message, code=self.code)
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, **status}


def _failed_calling(webhook: str, cause: str) -> ApiError:
    message = f'failed calling webhook "{webhook}": {cause}'
    return ApiError(500, f"Internal error occurred: {message}", details={"causes": [{"message": message}]})


@functools.lru_cache(maxsize=64)
def _ssl_context(ca_bundle: str | None) -> ssl.SSLContext:
    """Trust only the caBundle (system roots without one), and check the server name, as client-go does."""
    if not ca_bundle:
        return ssl.create_default_context()
    try:
        return ssl.create_default_context(cadata=base64.b64decode(ca_bundle).decode())
    except (ssl.SSLError, ValueError) as exc:
        raise WebhookCallError(
            "could not get REST client: unable to load root certificates: unable to parse bytes as PEM block"
        ) from exc


def _connection_error(exc: aiohttp.ClientError, host: str) -> str:
    """The cause as Go's net/http words the common cases; Python's text otherwise."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        error = exc.certificate_error
        reason = str(getattr(error, "verify_message", None) or error)
        if "unable to get local issuer certificate" in reason or "self-signed certificate" in reason:
            return "tls: failed to verify certificate: x509: certificate signed by unknown authority"
        if "Hostname mismatch" in reason or "IP address mismatch" in reason:
            return f"tls: failed to verify certificate: x509: certificate is not valid for {host}"
        return f"tls: failed to verify certificate: {reason}"
    if isinstance(exc, aiohttp.ClientSSLError):
        return f"remote error: tls: {exc}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        if isinstance(exc.os_error, ConnectionRefusedError):
            return f"dial tcp {exc.host}:{exc.port}: connect: connection refused"
        return f"dial tcp {exc.host}:{exc.port}: {exc.os_error.strerror or exc.os_error}"
    return str(exc)


@dataclasses.dataclass(frozen=True)
class _Endpoint:
    url: str
    """Where the request goes (a service's mapped host)."""
    shown: str
    """The URL as a real server names it in errors (the service's DNS name)."""
    server_name: str | None
    """The TLS server name to check (None: the URL's host)."""


def _verified_response(review: Any, uid: str, version: str) -> Body:
    """The `response` of an AdmissionReview, checked as kube-apiserver checks it (v1beta1 more loosely)."""
    if not isinstance(review, dict):
        raise WebhookCallError("received invalid webhook response: the response is not a JSON object")
    response = review.get("response")
    if not isinstance(response, dict):
        raise WebhookCallError("received invalid webhook response: webhook response was absent")
    if version == "v1":
        if response.get("uid") != uid:
            got = response.get("uid", "")
            raise WebhookCallError(f'received invalid webhook response: expected response.uid="{uid}", got "{got}"')
        if (review.get("apiVersion"), review.get("kind")) != ("admission.k8s.io/v1", "AdmissionReview"):
            got = f"{review.get('apiVersion', '')}, Kind={review.get('kind', '')}"
            expected = "admission.k8s.io/v1, Kind=AdmissionReview"
            raise WebhookCallError(
                f"received invalid webhook response: expected webhook response of {expected}, got {got}"
            )
        for field in ("patch", "patchType"):
            if response.get(field):
                raise WebhookCallError(
                    f"received invalid webhook response: validating webhook may not return response.{field}"
                )
    return response


class WebhookAdmission:
    """The ValidatingAdmissionWebhook plugin: which webhooks a write needs, and their verdict."""

    def __init__(self, *, store: ObjectStore, registry: ResourceRegistry, services: Mapping[str, str]) -> None:
        self._store = store
        self._registry = registry
        self._services = dict(services)

    def gate(self, admitted: AdmissionPending | None) -> Callable[[AdmissionAttributes], Body | None] | None:
        """The store's admission hook for one run of a write; `admitted` is what the webhooks already allowed."""
        configurations = self._store.list_objects(WEBHOOK_CONFIGURATION_RESOURCE, None)
        hooks = [hook for configuration in configurations for hook in configuration.get("webhooks") or []]
        if not hooks and admitted is None:
            return None

        def gate(attributes: AdmissionAttributes) -> Body | None:
            if admitted is not None and _same_write(attributes, admitted.attributes):
                return admitted.attributes.object if attributes.operation == "CREATE" else None
            if attributes.kind[0] == "admissionregistration.k8s.io" and attributes.kind[2] in _EXEMPT_KINDS:
                return None
            invocations = [invocation for hook in hooks if (invocation := self._invocation(hook, attributes))]
            if invocations:
                raise AdmissionPending(attributes, invocations)
            return None

        return gate

    def _invocation(self, hook: Body, attributes: AdmissionAttributes) -> Invocation | None:
        """kube-apiserver's ShouldCallHook: namespaceSelector, objectSelector, rules, then matchConditions."""
        if not self._namespace_selected(hook["namespaceSelector"], attributes):
            return None
        if not _object_selected(hook["objectSelector"], attributes):
            return None
        invocation = self._matched_rule(hook, attributes)
        if invocation is None or not hook.get("matchConditions"):
            return invocation
        return invocation if self._conditions_hold(hook, attributes, invocation) else None

    def _namespace_selected(self, selector: Body, attributes: AdmissionAttributes) -> bool:
        is_namespace = attributes.resource_type.storage_key == NAMESPACE_RESOURCE.storage_key
        namespace = _request_namespace(attributes)
        if (not namespace and not is_namespace) or not label_selector_requirements(selector):
            return True  # other cluster-scoped objects are never exempted; an empty selector selects all
        if is_namespace and attributes.subresource is None and attributes.operation != "DELETE":
            labels = _labels(attributes.object)
        else:
            stored = self._store.find(NAMESPACE_RESOURCE, None, namespace)
            labels = _labels(stored)
        # The real server stores this label on every namespace; the emulator adds it when matching.
        return _selects(selector, {**labels, NAMESPACE_NAME_LABEL: namespace})

    def _matched_rule(self, hook: Body, attributes: AdmissionAttributes) -> Invocation | None:
        rt, subresource = attributes.resource_type, attributes.subresource
        namespace, operation = _request_namespace(attributes), attributes.operation
        for rule in hook.get("rules") or []:
            if _rule_matches(rule, operation, (rt.group, rt.version, rt.plural), subresource or "", namespace):
                return Invocation(
                    hook=hook,
                    resource=(rt.group, rt.version, rt.plural),
                    kind=attributes.kind,
                    object=attributes.object,
                    old_object=attributes.old_object,
                )
        if hook["matchPolicy"] != "Equivalent":
            return None
        equivalents = [
            other for other in self._registry.versions_of(rt.storage_key) if other != rt and _serves(other, subresource)
        ]
        for rule in hook.get("rules") or []:  # earlier rules first, as the real server honours them
            for other in equivalents:
                resource = (other.group, other.version, other.plural)
                if _rule_matches(rule, operation, resource, subresource or "", namespace):
                    kind = SCALE_KIND if subresource == "scale" else (other.group, other.version, other.kind)
                    return Invocation(
                        hook=hook,
                        resource=resource,
                        kind=kind,
                        object=_in_version(attributes.object, other, subresource),
                        old_object=_in_version(attributes.old_object, other, subresource),
                    )
        return None

    def _conditions_hold(self, hook: Body, attributes: AdmissionAttributes, invocation: Invocation) -> bool:
        variables = {
            "object": invocation.object,
            "oldObject": invocation.old_object,
            "request": _request(attributes, invocation),
        }
        errors = []
        for condition in hook["matchConditions"]:
            matched, error = _evaluate_condition(condition["expression"], variables)
            if not matched:
                return False  # any false condition skips the webhook, whatever the others did
            if error is not None:
                errors.append(error)
        if not errors or hook["failurePolicy"] == "Ignore":
            return not errors
        message = errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]"
        rt = attributes.resource_type
        details = {"name": attributes.name, "group": rt.group, "kind": rt.plural}
        raise ApiError(403, f'{rt.qualified_name} "{attributes.name}" is forbidden: {message}', details=details)

    async def review(
        self, pending: AdmissionPending, *, params: Mapping[str, str], body: Any
    ) -> tuple[list[str], ApiError | None]:
        """Call the webhooks in parallel; (every warning, the first refusal in registration order, if any)."""
        options = _operation_options(pending.attributes.operation, params, body)
        calls = [self._call(invocation, pending.attributes, options) for invocation in pending.invocations]
        results = await asyncio.gather(*calls)
        warnings = [warning for result_warnings, _ in results for warning in result_warnings]
        errors = [error for _, error in results if error is not None]
        return warnings, errors[0] if errors else None

    async def _call(
        self, invocation: Invocation, attributes: AdmissionAttributes, options: Body
    ) -> tuple[list[str], ApiError | None]:
        hook = invocation.hook
        version = next(v for v in hook["admissionReviewVersions"] if v in _REVIEW_VERSIONS)
        uid = str(uuid.uuid4())
        fields = {key: value for key, value in _request(attributes, invocation).items() if value != ""}
        request = {
            "uid": uid,
            **fields,
            "object": invocation.object,
            "oldObject": invocation.old_object,
            "options": options,
        }
        review = {"kind": "AdmissionReview", "apiVersion": f"admission.k8s.io/{version}", "request": request}
        try:
            response = _verified_response(await self._post(hook, review), uid, version)
        except WebhookCallError as exc:
            return [], None if hook["failurePolicy"] == "Ignore" else _failed_calling(hook["name"], str(exc))
        warnings = [str(warning) for warning in response.get("warnings") or []]
        if response.get("allowed") is True:
            return warnings, None
        return warnings, WebhookDenial(hook["name"], response.get("status"))

    def _endpoint(self, client_config: Body, timeout: int) -> _Endpoint:
        """The URL to POST to; a service goes to the host the emulator was given for it (no cluster DNS here)."""
        if client_config.get("url") is not None:
            url = str(yarl.URL(client_config["url"]).update_query(timeout=f"{timeout}s"))
            return _Endpoint(url=url, shown=url, server_name=None)
        service = client_config["service"]
        host = f"{service['name']}.{service['namespace']}.svc"
        suffix = f":{service['port']}{service.get('path') or ''}?timeout={timeout}s"
        shown = f"https://{host}{suffix}"
        address = self._services.get(f"{service['namespace']}/{service['name']}")
        if address is None:
            hint = "map it with --webhook-service or webhook_services"
            raise WebhookCallError(
                f'failed to call webhook: Post "{shown}": dial tcp: lookup {host}: no such host ({hint})'
            )
        return _Endpoint(url=f"https://{address}{suffix}", shown=shown, server_name=host)

    async def _post(self, hook: Body, review: Body) -> Any:
        client_config, timeout = hook["clientConfig"], hook["timeoutSeconds"]
        endpoint = self._endpoint(client_config, timeout)
        context = _ssl_context(client_config.get("caBundle"))
        target = yarl.URL(endpoint.url)
        prefix = f'failed to call webhook: Post "{endpoint.shown}"'
        headers = {"Content-Type": "application/json", "Accept": "application/json, */*"}
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
                session.post(
                    endpoint.url,
                    data=json.dumps(review),
                    headers=headers,
                    ssl=context,
                    server_hostname=endpoint.server_name,
                ) as response,
            ):
                payload = await response.read()
                status = response.status
        except TimeoutError as exc:
            raise WebhookCallError(f"{prefix}: context deadline exceeded") from exc
        except aiohttp.ClientError as exc:
            cause = _connection_error(exc, endpoint.server_name or target.host or "")
            raise WebhookCallError(f"{prefix}: {cause}") from exc
        if not 200 <= status < 300:
            message = f"the server responded with the status code {status} but did not return more information"
            raise WebhookCallError(f"failed to call webhook: {message}")
        try:
            return json.loads(payload)
        except ValueError as exc:
            raise WebhookCallError(f"failed to call webhook: couldn't decode the response: {exc}") from exc
