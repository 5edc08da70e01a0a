"""Validate Kubernetes manifests against the CRD schemas the API server would use.

Emulates `kubectl apply` with strict field validation (the default since Kubernetes 1.27)
against each CRD's `spec.versions[].schema.openAPIV3Schema`:

* apiVersion/kind must be a served version of a known CRD; an unknown kind is an error,
  so a new manifest cannot skip validation;
* unknown fields are errors, except under `x-kubernetes-preserve-unknown-fields: true`
  (and apiVersion/kind/metadata under `x-kubernetes-embedded-resource`);
* defaults are applied before validation, as the API server does;
* types, enums, patterns, lengths, ranges, required, oneOf/anyOf/not (JSON Schema draft 4,
  which OpenAPI 3.0 follows), `nullable`, `x-kubernetes-int-or-string`, the int32/int64
  formats, and the uniqueness of `x-kubernetes-list-type: map|set` lists;
* metadata as ObjectMeta: known fields only, DNS-1123 names, label syntax.

What is not evaluated: CEL rules (`x-kubernetes-validations`). They are collected per
document with the path they apply to (`Result.cel_rules`), so a caller can check each one
that applies to its manifests by other means.

Kinds with no CRD in the schema directory can be given a hand-written schema
(`SUBSET_SCHEMAS`); those results say so (`Result.schema_source`).

CLI: python validate_manifests.py [--schemas DIR] PATH... (files or directories; exit 1 on
any error).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import jsonschema
import yaml

REPO = Path(__file__).resolve().parents[2]
# The CRDs live beside the repository, in the workplace's shared/k8s-schemas (its README
# says where each came from), and are not copied in here; MCP_TRACE_K8S_SCHEMAS points
# elsewhere. /work/shared serves a clone made elsewhere on the same machine.
SCHEMA_DIRS = [Path(p) for p in (os.environ.get("MCP_TRACE_K8S_SCHEMAS"),) if p] + [
    REPO.parent / "shared" / "k8s-schemas",
    Path("/work/shared/k8s-schemas"),
]
DEFAULT_SCHEMA_DIR = next((d for d in SCHEMA_DIRS if d.is_dir()), SCHEMA_DIRS[0])

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
# ObjectMeta fields a manifest may set; the rest are written by the server.
OBJECT_META_FIELDS = {"name", "generateName", "namespace", "labels", "annotations", "finalizers", "ownerReferences"}
INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}
# libyaml when PyYAML has it: the CRD files are 45k lines.
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


# Envoy Gateway's EnvoyProxy CRD is not in ../shared/k8s-schemas. This is the subset of its
# schema that deploy/envoy-gateway/envoyproxy.yaml uses, written from envoyproxy/gateway
# api/v1alpha1 (envoyproxy_types.go ProxyTelemetry/ProxyBootstrap,
# envoyproxy_tracing_types.go ProxyTracing/TracingProvider, shared_types.go
# Tracing/TracingSpanName, BackendRef) at commit d32f282 (v1.9 dev). It catches typos and
# wrong types in those fields; anything else is refused as unknown, so a field added to the
# manifest needs adding here. Replace it with the real CRD when ../shared/k8s-schemas has one
# (the schema store then prefers the CRD, and a test fails until this entry is removed).
_STR = {"type": "string"}
_BACKEND_REF = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "group": _STR,
        "kind": _STR,
        "name": {"type": "string", "minLength": 1, "maxLength": 253},
        "namespace": {"type": "string", "minLength": 1, "maxLength": 63},
        "port": {"type": "integer", "format": "int32", "minimum": 1, "maximum": 65535},
    },
}
ENVOY_PROXY_SUBSET = {
    "type": "object",
    "required": ["spec"],
    "properties": {
        "spec": {
            "type": "object",
            "properties": {
                "telemetry": {
                    "type": "object",
                    "properties": {
                        "tracing": {
                            "type": "object",
                            "required": ["provider"],
                            "properties": {
                                "samplingRate": {"type": "integer", "format": "int32", "minimum": 0, "maximum": 100},
                                "provider": {
                                    "type": "object",
                                    "required": ["type"],
                                    "properties": {
                                        "type": {"type": "string", "enum": ["OpenTelemetry", "Zipkin", "Datadog"],
                                                 "default": "OpenTelemetry"},
                                        "backendRefs": {"type": "array", "maxItems": 16, "items": _BACKEND_REF},
                                        "serviceName": _STR,
                                    },
                                },
                                "tags": {"type": "object", "additionalProperties": _STR},
                                "spanName": {
                                    "type": "object",
                                    "required": ["client", "server"],
                                    "properties": {"client": _STR, "server": _STR},
                                },
                            },
                        },
                    },
                },
                "bootstrap": {
                    "type": "object",
                    "properties": {
                        "type": {"type": "string", "enum": ["Merge", "Replace", "JSONPatch"], "default": "Replace"},
                        "value": _STR,
                    },
                },
            },
        },
    },
}
SUBSET_SCHEMAS: dict[tuple[str, str], tuple[dict, str]] = {
    ("gateway.envoyproxy.io/v1alpha1", "EnvoyProxy"): (
        ENVOY_PROXY_SUBSET,
        "hand-written subset of envoyproxy/gateway api/v1alpha1 (no CRD in k8s-schemas)",
    ),
}


class UnknownKind(Exception):
    pass


@dataclass
class CrdVersion:
    schema: dict
    namespaced: bool
    source: str


@dataclass
class Result:
    """One document of one file."""

    file: str
    index: int
    api_version: str
    kind: str
    name: str
    namespace: str | None
    schema_source: str = ""
    errors: list[str] = field(default_factory=list)
    # (path, rule, message, node value) of every CEL rule whose node is present.
    cel_rules: list[tuple[str, str, str, Any]] = field(default_factory=list)
    document: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors

    def label(self) -> str:
        return f"{self.file}#{self.index} {self.kind}/{self.name}"


class SchemaStore:
    """The served versions of every CRD in a directory of YAML files."""

    def __init__(self, schema_dir: Path = DEFAULT_SCHEMA_DIR, subsets: dict | None = None):
        self.schema_dir = Path(schema_dir)
        self.versions: dict[tuple[str, str], CrdVersion] = {}
        files = sorted(self.schema_dir.glob("*.yaml"))
        if not files:
            raise FileNotFoundError(
                f"no CRD files in {self.schema_dir} (looked in {', '.join(map(str, SCHEMA_DIRS))}): "
                "the workplace's shared/k8s-schemas is missing; set MCP_TRACE_K8S_SCHEMAS")
        for path in files:
            for doc in yaml.load_all(path.read_text(), Loader=YAML_LOADER):
                if not doc or doc.get("kind") != "CustomResourceDefinition":
                    continue
                spec = doc["spec"]
                group, kind = spec["group"], spec["names"]["kind"]
                for version in spec["versions"]:
                    if not version.get("served", False):
                        continue
                    self.versions[(f"{group}/{version['name']}", kind)] = CrdVersion(
                        schema=version["schema"]["openAPIV3Schema"],
                        namespaced=spec["scope"] == "Namespaced",
                        source=f"{path.name} ({group}/{version['name']} {kind})",
                    )
        self.subsets = dict(SUBSET_SCHEMAS if subsets is None else subsets)

    def lookup(self, api_version: str, kind: str) -> CrdVersion:
        key = (api_version, kind)
        if key in self.versions:
            return self.versions[key]
        if key in self.subsets:
            schema, note = self.subsets[key]
            return CrdVersion(schema=schema, namespaced=True, source=note)
        known = sorted(v for (v, k) in self.versions if k == kind)
        hint = f"; served versions of {kind}: {', '.join(known)}" if known else ""
        raise UnknownKind(f"no schema for apiVersion {api_version!r} kind {kind!r} in {self.schema_dir}{hint}")

    def subset_kinds_with_crd(self) -> list[tuple[str, str]]:
        """Subset schemas made obsolete by a real CRD in the directory."""
        return [key for key in self.subsets if key in self.versions]


# --- schema walking -----------------------------------------------------------------------


def _path(parts: list) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "<root>"


def apply_defaults(value: Any, schema: dict) -> None:
    """Fill in `default`s of absent properties of present objects, in place."""
    if isinstance(value, dict):
        for key, sub in (schema.get("properties") or {}).items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                apply_defaults(value[key], sub)
        addl = schema.get("additionalProperties")
        if isinstance(addl, dict) and not schema.get("properties"):
            for item in value.values():
                apply_defaults(item, addl)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            apply_defaults(item, schema["items"])


def structural_checks(value: Any, schema: dict, parts: list, errors: list[str], cel: list) -> None:
    """Unknown fields, nulls, list-type uniqueness; collects the CEL rules that apply."""
    where = _path(parts)
    for rule in schema.get("x-kubernetes-validations") or []:
        cel.append((where, rule.get("rule", ""), rule.get("message", ""), value))
    if value is None:
        if not schema.get("nullable"):
            errors.append(f"{where}: null (the API server would drop it; remove the field or give it a value)")
        return
    preserve = schema.get("x-kubernetes-preserve-unknown-fields", False)
    if isinstance(value, dict):
        props = schema.get("properties")
        addl = schema.get("additionalProperties")
        embedded = schema.get("x-kubernetes-embedded-resource", False)
        for key, item in value.items():
            if props is not None and key in props:
                structural_checks(item, props[key], parts + [key], errors, cel)
            elif isinstance(addl, dict):
                structural_checks(item, addl, parts + [key], errors, cel)
            elif addl is True or preserve or (embedded and key in ("apiVersion", "kind", "metadata")):
                continue
            else:
                errors.append(f"{_path(parts + [key])}: unknown field")
    elif isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            for i, item in enumerate(value):
                structural_checks(item, items, parts + [i], errors, cel)
        list_type = schema.get("x-kubernetes-list-type")
        if list_type == "map":
            keys = schema.get("x-kubernetes-list-map-keys") or []
            seen = set()
            for i, item in enumerate(value):
                k = tuple(repr(item.get(key)) if isinstance(item, dict) else None for key in keys)
                if k in seen:
                    errors.append(f"{_path(parts + [i])}: duplicate entry for list-map keys {keys}")
                seen.add(k)
        elif list_type == "set":
            reprs = [repr(item) for item in value]
            if len(reprs) != len(set(reprs)):
                errors.append(f"{where}: duplicate entries in a set-type list")


def to_json_schema(schema: Any) -> Any:
    """The OpenAPI 3.0 extensions Kubernetes uses, as plain draft-4 JSON Schema."""
    if isinstance(schema, list):
        return [to_json_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: to_json_schema(v) for k, v in schema.items() if not k.startswith("x-kubernetes-") and k != "default"}
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if schema.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"] if isinstance(out["type"], str) else [*out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    if "properties" in out:
        out["properties"] = {k: to_json_schema(v) for k, v in schema["properties"].items()}
    return out


FORMATS = jsonschema.FormatChecker(formats=())


def _int_format(name: str):
    low, high = INT_RANGES[name]

    @FORMATS.checks(name)
    def check(value: Any) -> bool:
        return not isinstance(value, int) or isinstance(value, bool) or low <= value <= high

    return check


for _name in INT_RANGES:
    _int_format(_name)


def schema_errors(value: Any, schema: dict) -> list[str]:
    validator = jsonschema.Draft4Validator(to_json_schema(schema), format_checker=FORMATS)
    out = []
    for err in sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path)):
        out.append(f"{_path(list(err.absolute_path))}: {err.message}")
    return out


# --- metadata -----------------------------------------------------------------------------


def _qualified_name_ok(key: str) -> bool:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not DNS1123_SUBDOMAIN.match(prefix)):
        return False
    return 0 < len(name) <= 63 and bool(LABEL_NAME.match(name))


def metadata_errors(meta: Any, namespaced: bool) -> list[str]:
    if not isinstance(meta, dict):
        return ["metadata: missing or not an object"]
    errors = [f"metadata.{k}: unknown field (or written by the server)" for k in meta if k not in OBJECT_META_FIELDS]
    name = meta.get("name")
    if not name and not meta.get("generateName"):
        errors.append("metadata.name: required")
    elif name and (len(name) > 253 or not DNS1123_SUBDOMAIN.match(str(name))):
        errors.append(f"metadata.name: {name!r} is not a DNS-1123 subdomain")
    ns = meta.get("namespace")
    if ns is not None:
        if not namespaced:
            errors.append("metadata.namespace: set on a cluster-scoped resource")
        elif len(str(ns)) > 63 or not DNS1123_LABEL.match(str(ns)):
            errors.append(f"metadata.namespace: {ns!r} is not a DNS-1123 label")
    for section in ("labels", "annotations"):
        entries = meta.get(section)
        if entries is None:
            continue
        if not isinstance(entries, dict):
            errors.append(f"metadata.{section}: not a map")
            continue
        for key, val in entries.items():
            if not _qualified_name_ok(str(key)):
                errors.append(f"metadata.{section}: invalid key {key!r}")
            if not isinstance(val, str):
                errors.append(f"metadata.{section}.{key}: value must be a string, got {type(val).__name__}")
            elif section == "labels" and (len(val) > 63 or not LABEL_VALUE.match(val)):
                errors.append(f"metadata.labels.{key}: invalid value {val!r}")
    return errors


# --- documents ----------------------------------------------------------------------------


def validate_document(doc: Any, store: SchemaStore, file: str = "<doc>", index: int = 0) -> Result:
    if not isinstance(doc, dict):
        return Result(file, index, "", "", "", None, errors=["document is not a mapping"])
    api_version, kind = str(doc.get("apiVersion", "")), str(doc.get("kind", ""))
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    result = Result(file, index, api_version, kind, str(meta.get("name", "")), meta.get("namespace"), document=doc)
    if not api_version or not kind:
        result.errors.append("apiVersion and kind are required")
        return result
    try:
        crd = store.lookup(api_version, kind)
    except UnknownKind as e:
        result.errors.append(str(e))
        return result
    result.schema_source = crd.source
    result.errors += metadata_errors(doc.get("metadata"), crd.namespaced)

    body = {k: copy.deepcopy(v) for k, v in doc.items() if k not in ("apiVersion", "kind", "metadata")}
    schema = crd.schema
    apply_defaults(body, schema)
    structural_checks(body, schema, [], result.errors, result.cel_rules)
    result.errors += schema_errors(body, schema)
    return result


def iter_documents(path: Path) -> Iterator[tuple[int, Any]]:
    for index, doc in enumerate(yaml.safe_load_all(path.read_text())):
        if doc is not None:  # an empty document (e.g. a trailing ---)
            yield index, doc


def manifest_files(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out += sorted(q for q in p.rglob("*") if q.suffix in (".yaml", ".yml") and q.is_file())
        else:
            out.append(p)
    return out


def validate_paths(paths: list[Path], store: SchemaStore, relative_to: Path | None = None) -> list[Result]:
    results = []
    for path in manifest_files(paths):
        shown = str(path.relative_to(relative_to)) if relative_to else str(path)
        try:
            docs = list(iter_documents(path))
        except yaml.YAMLError as e:
            results.append(Result(shown, 0, "", "", "", None, errors=[f"YAML: {e}"]))
            continue
        if not docs:
            results.append(Result(shown, 0, "", "", "", None, errors=["no documents"]))
        for index, doc in docs:
            results.append(validate_document(doc, store, shown, index))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schemas", type=Path, default=DEFAULT_SCHEMA_DIR, help="directory of CRD YAML files")
    parser.add_argument("paths", nargs="+", type=Path)
    args = parser.parse_args(argv)
    store = SchemaStore(args.schemas)
    results = validate_paths(args.paths, store)
    failed = 0
    for r in results:
        status = "ok" if r.ok else "FAIL"
        print(f"{status:4} {r.label()}  [{r.schema_source or 'no schema'}]")
        for e in r.errors:
            print(f"       {e}")
        for where, _rule, message, _value in r.cel_rules:
            print(f"       CEL (not evaluated) at {where}: {message}")
        failed += not r.ok
    print(f"{len(results)} documents, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())


# --- mcp-trace: where each platform carries the filter's configuration ----------------------

WASM_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"


@dataclass
class PluginConfig:
    source: str  # file#index kind/name and where in it
    platform: str  # istio | envoy-gateway
    config: Any  # the JSON value the filter receives


def plugin_configs(results: list[Result]) -> list[PluginConfig]:
    """The filter configuration of every Wasm filter the manifests define."""
    out = []
    for r in results:
        spec = r.document.get("spec") or {}
        if r.kind == "WasmPlugin":
            out.append(PluginConfig(f"{r.label()} spec.pluginConfig", "istio", spec.get("pluginConfig") or {}))
        elif r.kind == "TrafficExtension" and "wasm" in spec:
            out.append(PluginConfig(f"{r.label()} spec.wasm.pluginConfig", "istio", spec["wasm"].get("pluginConfig") or {}))
        elif r.kind == "EnvoyExtensionPolicy":
            for i, wasm in enumerate(spec.get("wasm") or []):
                out.append(PluginConfig(f"{r.label()} spec.wasm[{i}].config", "envoy-gateway", wasm.get("config") or {}))
        elif r.kind == "EnvoyFilter":
            for i, patch in enumerate(spec.get("configPatches") or []):
                value = (patch.get("patch") or {}).get("value") or {}
                typed = value.get("typed_config") or {}
                if patch.get("applyTo") == "EXTENSION_CONFIG" and typed.get("@type") == WASM_TYPE:
                    raw = ((typed.get("config") or {}).get("configuration") or {}).get("value", "")
                    config = json.loads(raw) if raw.strip() else {}
                    out.append(PluginConfig(f"{r.label()} spec.configPatches[{i}] ({value.get('name')})", "istio", config))
    return out
