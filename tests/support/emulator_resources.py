"""Resource types served by the emulated API server, and the discovery documents that describe them."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tests.support.emulator_schema import StructuralSchema

Body = dict[str, Any]
StorageKey = tuple[str, str]
"""Objects are stored per (group, plural): every served version of a CRD reads the same objects."""

SERVED_VERBS = ("create", "delete", "get", "list", "patch", "update", "watch")
SUBRESOURCE_VERBS = ("get", "patch", "update")
_VERSION_PATTERN = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ScaleSpec:
    """Where a resource keeps the numbers its `/scale` subresource exposes (CRD `subresources.scale`)."""

    spec_replicas_path: str = ".spec.replicas"
    """JSON path of the desired replica count."""
    status_replicas_path: str = ".status.replicas"
    """JSON path of the observed replica count."""
    label_selector_path: str | None = None
    """JSON path of a string selector; None derives it from `.spec.selector` (as Deployments do)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class PrinterColumn:
    """One `additionalPrinterColumns` entry of a CRD version."""

    name: str
    """Column header."""
    type: str
    """OpenAPI type: string, integer, number, boolean or date."""
    json_path: str
    """Simple JSONPath into the object, e.g. `.status.conditions[?(@.type=="Ready")].status`."""
    description: str = ""
    """Shown by `kubectl explain`-like tools."""
    priority: int = 0
    """0 = shown by default, >0 = only with `-o wide`."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class ResourceType:
    """Everything the emulator needs to know about one group/version/plural."""

    group: str
    """API group; "" for the core group."""
    version: str
    """API version, e.g. v1 or v1alpha1."""
    plural: str
    """Lower-case plural name used in URLs."""
    kind: str
    """Kind of the objects."""
    namespaced: bool
    """Whether objects live in namespaces."""
    short_names: tuple[str, ...] = ()
    """Aliases kubectl accepts (e.g. deploy)."""
    categories: tuple[str, ...] = ()
    """Categories (e.g. all) for `kubectl get all`."""
    status_subresource: bool = False
    """Writes to the main resource ignore `.status`; writes to `/status` change only `.status`."""
    scale: ScaleSpec | None = None
    """Serve `/scale` (autoscaling/v1 Scale) when set."""
    printer_columns: tuple[PrinterColumn, ...] = ()
    """Columns for `kubectl get` Table responses; empty means Name and Age."""
    tracks_generation: bool = True
    """Whether objects carry `metadata.generation` (events, leases, namespaces, pods do not)."""
    generation_tracks_annotations: bool = False
    """Deployments also bump generation on annotation changes (annotations are copied to ReplicaSets)."""
    spec_defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict, hash=False)
    """Top-level `.spec` keys defaulted on create (the only server-side defaulting emulated)."""
    extra_field_labels: frozenset[str] = frozenset()
    """Field selector labels supported in addition to metadata.name and metadata.namespace."""
    custom: bool = False
    """Defined by a CRD: strategic merge patch is refused and PUT requires metadata.resourceVersion."""
    unconditional_update: bool = True
    """Whether a PUT without metadata.resourceVersion overwrites; False (the Lease strategy's answer) makes it 422.
    Custom resources always need one."""
    create_on_update: bool = False
    """Whether a PUT to a missing object creates it (201), as the Lease strategy allows."""
    schema: StructuralSchema | None = dataclasses.field(default=None, compare=False, hash=False)
    """The CRD version's openAPIV3Schema: prunes, defaults and validates every write."""

    @property
    def api_version(self) -> str:
        """The apiVersion of objects of this resource."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def storage_key(self) -> StorageKey:
        """The key of the object storage shared by all versions of this resource."""
        return (self.group, self.plural)

    @property
    def qualified_name(self) -> str:
        """How the API server names the resource in error messages, e.g. deployments.apps."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def field_labels(self) -> frozenset[str]:
        """All field selector labels this resource supports."""
        return frozenset({"metadata.name", "metadata.namespace"}) | self.extra_field_labels

    def matches(self, spec: str) -> bool:
        """Whether a resource spec names this resource: plural, plural.group, apiVersion/plural or a short name."""
        return spec in (self.plural, self.qualified_name, f"{self.api_version}/{self.plural}", *self.short_names)


_EVENT_FIELDS = frozenset(
    {
        "involvedObject.kind",
        "involvedObject.name",
        "involvedObject.namespace",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "reason",
        "type",
        "reportingComponent",
    }
)

BUILTIN_RESOURCES: tuple[ResourceType, ...] = (
    ResourceType(
        group="",
        version="v1",
        plural="namespaces",
        kind="Namespace",
        namespaced=False,
        short_names=("ns",),
        status_subresource=True,
        tracks_generation=False,
    ),
    ResourceType(
        group="",
        version="v1",
        plural="events",
        kind="Event",
        namespaced=True,
        short_names=("ev",),
        tracks_generation=False,
        extra_field_labels=_EVENT_FIELDS,
    ),
    ResourceType(
        group="",
        version="v1",
        plural="pods",
        kind="Pod",
        namespaced=True,
        short_names=("po",),
        categories=("all",),
        status_subresource=True,
        tracks_generation=False,
        extra_field_labels=frozenset({"spec.nodeName", "status.phase"}),
    ),
    ResourceType(
        group="apps",
        version="v1",
        plural="deployments",
        kind="Deployment",
        namespaced=True,
        short_names=("deploy",),
        categories=("all",),
        status_subresource=True,
        scale=ScaleSpec(),
        generation_tracks_annotations=True,
        spec_defaults={"replicas": 1},
    ),
    ResourceType(
        group="apps",
        version="v1",
        plural="statefulsets",
        kind="StatefulSet",
        namespaced=True,
        short_names=("sts",),
        categories=("all",),
        status_subresource=True,
        scale=ScaleSpec(),
        # What apps/v1 defaulting gives a StatefulSet created without them.
        spec_defaults={"replicas": 1, "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}},
    ),
    ResourceType(
        group="autoscaling",
        version="v2",
        plural="horizontalpodautoscalers",
        kind="HorizontalPodAutoscaler",
        namespaced=True,
        short_names=("hpa",),
        categories=("all",),
        status_subresource=True,
    ),
    ResourceType(
        group="events.k8s.io",
        version="v1",
        plural="events",
        kind="Event",
        namespaced=True,
        short_names=("ev",),
        tracks_generation=False,
    ),
    ResourceType(
        group="coordination.k8s.io",
        version="v1",
        plural="leases",
        kind="Lease",
        namespaced=True,
        tracks_generation=False,
        unconditional_update=False,
        create_on_update=True,
    ),
    ResourceType(
        group="admissionregistration.k8s.io",
        version="v1",
        plural="validatingwebhookconfigurations",
        kind="ValidatingWebhookConfiguration",
        namespaced=False,
        categories=("api-extensions",),
    ),
    ResourceType(
        group="apiextensions.k8s.io",
        version="v1",
        plural="customresourcedefinitions",
        kind="CustomResourceDefinition",
        namespaced=False,
        short_names=("crd", "crds"),
        categories=("api-extensions",),
        status_subresource=True,
    ),
)

CRD_RESOURCE = BUILTIN_RESOURCES[-1]
NAMESPACE_RESOURCE = BUILTIN_RESOURCES[0]
WEBHOOK_CONFIGURATION_RESOURCE = BUILTIN_RESOURCES[-2]
LEASE_RESOURCE = BUILTIN_RESOURCES[-3]


def _peering_crd(*, plural: str, kind: str, scope: str) -> Body:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.kopf.dev"},
        "spec": {
            "group": "kopf.dev",
            "scope": scope,
            "names": {"plural": plural, "singular": kind.lower(), "kind": kind},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                }
            ],
        },
    }


KOPF_PEERING_CRDS: tuple[Body, ...] = (
    _peering_crd(plural="kopfpeerings", kind="KopfPeering", scope="Namespaced"),
    _peering_crd(plural="clusterkopfpeerings", kind="ClusterKopfPeering", scope="Cluster"),
)
"""kopf's peering CRDs, installed at start as in a cluster prepared for kopf (no status subresource)."""


def _printer_columns(version: Mapping[str, Any]) -> tuple[PrinterColumn, ...]:
    return tuple(
        PrinterColumn(
            name=column["name"],
            type=column.get("type", "string"),
            json_path=column["jsonPath"],
            description=column.get("description", ""),
            priority=column.get("priority", 0),
        )
        for column in version.get("additionalPrinterColumns", [])
    )


def _scale_spec(subresources: Mapping[str, Any]) -> ScaleSpec | None:
    scale = subresources.get("scale")
    if scale is None:
        return None
    return ScaleSpec(
        spec_replicas_path=scale["specReplicasPath"],
        status_replicas_path=scale["statusReplicasPath"],
        label_selector_path=scale.get("labelSelectorPath"),
    )


def resource_types_from_crd(crd: Mapping[str, Any]) -> list[ResourceType]:
    """One ResourceType per served version of a CustomResourceDefinition."""
    spec = crd["spec"]
    names = spec["names"]
    types = []
    for version in spec["versions"]:
        if not version.get("served", True):
            continue
        subresources = version.get("subresources") or {}
        schema = (version.get("schema") or {}).get("openAPIV3Schema")
        types.append(
            ResourceType(
                group=spec["group"],
                version=version["name"],
                plural=names["plural"],
                kind=names["kind"],
                namespaced=spec["scope"] == "Namespaced",
                short_names=tuple(names.get("shortNames", ())),
                categories=tuple(names.get("categories", ())),
                status_subresource="status" in subresources,
                scale=_scale_spec(subresources),
                printer_columns=_printer_columns(version),
                custom=True,
                schema=StructuralSchema(schema) if schema else None,
            )
        )
    return types


def version_priority(version: str) -> tuple[int, int, int, str]:
    """Sort key, highest first, as Kubernetes orders versions: v2 > v1 > v1beta2 > v1beta1 > v1alpha1 > other."""
    match = _VERSION_PATTERN.match(version)
    if match is None:
        return (0, 0, 0, version)
    major, stage, minor = match.groups()
    stability = {"alpha": 1, "beta": 2, None: 3}[stage]
    return (stability, int(major), int(minor or 0), "")


class ResourceRegistry:
    """The resource types currently served, in the order they were registered."""

    def __init__(self, types: Iterable[ResourceType] = BUILTIN_RESOURCES) -> None:
        self._types: dict[tuple[str, str, str], ResourceType] = {}
        for resource_type in types:
            self.add(resource_type)

    def add(self, resource_type: ResourceType) -> None:
        """Serve a resource type (replacing an earlier definition of the same group/version/plural)."""
        self._types[(resource_type.group, resource_type.version, resource_type.plural)] = resource_type

    def remove(self, storage_key: StorageKey) -> None:
        """Stop serving every version of a resource."""
        for key, resource_type in list(self._types.items()):
            if resource_type.storage_key == storage_key:
                del self._types[key]

    def find(self, group: str, version: str, plural: str) -> ResourceType | None:
        """The resource type at that URL, if served."""
        return self._types.get((group, version, plural))

    def versions_of(self, storage_key: StorageKey) -> list[ResourceType]:
        """Every served version of one resource (they share storage), in registration order."""
        return [rt for rt in self._types.values() if rt.storage_key == storage_key]

    def find_kind(self, api_version: str, kind: str) -> ResourceType | None:
        """The resource type whose objects have that apiVersion and kind."""
        for resource_type in self._types.values():
            if resource_type.api_version == api_version and resource_type.kind == kind:
                return resource_type
        return None

    def resolve(self, spec: str) -> ResourceType:
        """Look a resource up as matches() does; the core group wins ties (events), then the first registered."""
        candidates = [rt for rt in self._types.values() if rt.matches(spec)]
        if not candidates:
            raise KeyError(f"unknown resource: {spec}")
        return min(candidates, key=lambda rt: (rt.group != "", self._rank(rt)))

    def _rank(self, resource_type: ResourceType) -> int:
        return list(self._types.values()).index(resource_type)

    def group_versions(self) -> dict[str, list[str]]:
        """Served versions per group, preferred version first."""
        groups: dict[str, set[str]] = {}
        for resource_type in self._types.values():
            groups.setdefault(resource_type.group, set()).add(resource_type.version)
        return {group: sorted(versions, key=version_priority, reverse=True) for group, versions in groups.items()}

    def in_group_version(self, group: str, version: str) -> list[ResourceType]:
        """The resources served in one group/version."""
        return [rt for rt in self._types.values() if (rt.group, rt.version) == (group, version)]


def api_versions(server_address: str) -> Body:
    """The `/api` document."""
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def _group_document(group: str, versions: Sequence[str]) -> Body:
    entries = [{"groupVersion": f"{group}/{version}", "version": version} for version in versions]
    return {"name": group, "versions": entries, "preferredVersion": entries[0]}


def api_group_list(registry: ResourceRegistry) -> Body:
    """The `/apis` document."""
    groups = [_group_document(group, versions) for group, versions in registry.group_versions().items() if group]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(registry: ResourceRegistry, group: str) -> Body | None:
    """The `/apis/{group}` document, or None when the group is not served."""
    versions = registry.group_versions().get(group)
    if not group or versions is None:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group_document(group, versions)}


def _main_entry(resource_type: ResourceType) -> Body:
    entry: Body = {
        "name": resource_type.plural,
        "singularName": resource_type.kind.lower(),
        "namespaced": resource_type.namespaced,
        "kind": resource_type.kind,
        "verbs": list(SERVED_VERBS),
    }
    if resource_type.short_names:
        entry["shortNames"] = list(resource_type.short_names)
    if resource_type.categories:
        entry["categories"] = list(resource_type.categories)
    return entry


def _subresource_entries(resource_type: ResourceType) -> list[Body]:
    common = {"singularName": "", "namespaced": resource_type.namespaced, "verbs": list(SUBRESOURCE_VERBS)}
    entries: list[Body] = []
    if resource_type.status_subresource:
        entries.append({"name": f"{resource_type.plural}/status", "kind": resource_type.kind, **common})
    if resource_type.scale is not None:
        scale_kind = {"group": "autoscaling", "version": "v1", "kind": "Scale"}
        entries.append({"name": f"{resource_type.plural}/scale", **scale_kind, **common})
    return entries


def api_resource_list(registry: ResourceRegistry, group: str, version: str) -> Body | None:
    """The `/api/v1` or `/apis/{group}/{version}` document, or None when nothing is served there."""
    types = registry.in_group_version(group, version)
    if not types:
        return None
    resources = [entry for rt in types for entry in [_main_entry(rt), *_subresource_entries(rt)]]
    group_version = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}
