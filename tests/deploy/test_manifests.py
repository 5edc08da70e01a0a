"""deploy/: every manifest is valid against the real CRD schema of its kind, as
`kubectl apply` (strict field validation) would find it; the validator can fail; the
manifests agree with each other and with envoy/envoy.yaml."""

from __future__ import annotations

import json
import re
import urllib.parse

import pytest
import yaml

import validate_manifests as vm

REPO = vm.REPO
DEPLOY = REPO / "deploy"
PLUGIN_CONFIGS_OUT = REPO / "target" / "deploy-plugin-configs.json"

MANIFEST_FILES = vm.manifest_files([DEPLOY])


@pytest.fixture(scope="module")
def store() -> vm.SchemaStore:
    return vm.SchemaStore()


@pytest.fixture(scope="module")
def results(store) -> list[vm.Result]:
    return vm.validate_paths([DEPLOY], store, relative_to=REPO)


def by_kind(results, kind, file_part=""):
    found = [r for r in results if r.kind == kind and file_part in r.file]
    assert found, f"no {kind} in deploy/{file_part}"
    return found


# --- every manifest, against its CRD ------------------------------------------------------


def test_deploy_has_the_manifests():
    names = {str(p.relative_to(DEPLOY)) for p in MANIFEST_FILES}
    for expected in ("istio/wasmplugin.yaml", "istio/telemetry.yaml", "istio/envoyfilter-span-name.yaml",
                     "istio/alternatives/trafficextension.yaml", "istio/alternatives/paired-layout.yaml",
                     "envoy-gateway/envoyextensionpolicy.yaml", "envoy-gateway/gateway.yaml",
                     "envoy-gateway/envoyproxy.yaml"):
        assert expected in names


@pytest.mark.parametrize("path", MANIFEST_FILES, ids=[str(p.relative_to(DEPLOY)) for p in MANIFEST_FILES])
def test_manifest_is_valid(path, store):
    results = vm.validate_paths([path], store, relative_to=REPO)
    assert results
    problems = [f"{r.label()}: {e}" for r in results for e in r.errors]
    assert not problems, "\n".join(problems)
    for r in results:
        # Explicit namespaces: `kubectl apply -f` must not depend on the current context.
        assert r.namespace, f"{r.label()}: metadata.namespace is not set"


def test_only_envoyproxy_uses_a_hand_written_schema(results, store):
    """Everything else is checked against a real CRD; a subset schema is a known gap."""
    subset = [(r.file, r.kind) for r in results if r.schema_source and not r.schema_source.startswith(
        tuple(p.name for p in store.schema_dir.glob("*.yaml")))]
    assert subset == [("deploy/envoy-gateway/envoyproxy.yaml", "EnvoyProxy")]
    # Once the real CRD is in k8s-schemas, drop the subset so that it is used.
    assert store.subset_kinds_with_crd() == []


# --- CEL rules: not evaluated by the validator, checked here -------------------------------
# Each x-kubernetes-validations rule that applies to a node present in deploy/ has a Python
# equivalent below, written from the rule's CEL text (`python tests/deploy/
# validate_manifests.py deploy/` lists where each applies). A rule without one fails
# test_cel_rules_hold, so a new manifest or a new CRD version cannot bring an unchecked rule
# in silently.

ROUTE_KINDS = ["HTTPRoute", "GRPCRoute", "UDPRoute", "TCPRoute", "TLSRoute"]
POLICY_TARGET_KINDS = ["Gateway", "ListenerSet", *ROUTE_KINDS]
GWAPI = "gateway.networking.k8s.io"
PATH_CHARS = re.compile(r"^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+$")


def _duration_s(text: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)(ms|h|m|s)", text))


def _same_parent_refs_ok(refs, unique: bool) -> bool:
    groups: dict[tuple, list] = {}
    for ref in refs:
        key = (ref.get("group", GWAPI), ref.get("kind", "Gateway"), ref.get("namespace", ""), ref["name"])
        groups.setdefault(key, []).append(ref)
    for same in groups.values():
        if len(same) < 2:
            continue
        if not unique and not all("sectionName" in r or "port" in r for r in same):
            return False
        if unique and len({(r.get("sectionName"), r.get("port")) for r in same}) != len(same):
            return False
    return True


def _no_rule_filters(rule) -> bool:
    # The filter rules below are all of the form "when filter X is used ...": they hold
    # trivially without filters, and need a real check once a manifest uses one.
    return "filters" not in rule and all("filters" not in b for b in rule.get("backendRefs", []))


def _url_scheme_ok(url: str) -> bool:
    schemes = {"", "http", "https", "file", "oci"}
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme and parsed.netloc:
        return parsed.scheme in schemes
    return bool(urllib.parse.urlparse("http://" + url).netloc)  # e.g. "ghcr.io/o/i:1"


CEL_CHECKS = {
    # Istio: WasmPlugin, TrafficExtension, Telemetry, EnvoyFilter
    "only one of targetRefs or selector can be set":
        lambda s: sum(k in s for k in ("selector", "targetRef", "targetRefs")) <= 1,
    "only one of targetRefs or workloadSelector can be set":
        lambda s: sum(k in s for k in ("workloadSelector", "targetRefs")) <= 1,
    "exactly one of wasm or lua must be set": lambda s: ("wasm" in s) != ("lua" in s),
    "wildcard not allowed in label key match": lambda m: all("*" not in k for k in m),
    "key must not be empty": lambda m: all(len(k) != 0 for k in m),
    "wildcard not allowed in label value match": lambda v: "*" not in v,
    "wildcard is not supported in selector": lambda v: "*" not in v,
    "url must have schema one of [http, https, file, oci]": _url_scheme_ok,
    "only support waypointMatch when context is WAYPOINT":
        lambda m: (("waypoint" in m) == (m["context"] == "WAYPOINT")) if "context" in m else "waypoint" not in m,
    # Envoy Gateway: EnvoyExtensionPolicy
    "either targetRef or targetRefs must be used":
        lambda s: ("targetRef" in s) != ("targetRefs" in s) or len(s.get("targetSelectors", [])) > 0,
    "this policy can only have a targetRef.group of gateway.networking.k8s.io":
        lambda s: "targetRef" not in s or s["targetRef"]["group"] == GWAPI,
    "this policy can only have a targetRef.kind of Gateway/ListenerSet/HTTPRoute/GRPCRoute/TCPRoute/UDPRoute/TLSRoute":
        lambda s: "targetRef" not in s or s["targetRef"]["kind"] in POLICY_TARGET_KINDS,
    "this policy can only have a targetRefs[*].group of gateway.networking.k8s.io":
        lambda s: all(r["group"] == GWAPI for r in s.get("targetRefs", [])),
    "this policy can only have a targetRefs[*].kind of Gateway/ListenerSet/HTTPRoute/GRPCRoute/TCPRoute/UDPRoute/TLSRoute":
        lambda s: all(r["kind"] in POLICY_TARGET_KINDS for r in s.get("targetRefs", [])),
    "mergeType can only be used with xRoute targets":
        lambda s: "mergeType" not in s or all(r["kind"] in ROUTE_KINDS for r in s.get("targetRefs", [])),
    "If type is HTTP, http field needs to be set.": lambda c: (c["type"] == "HTTP") == ("http" in c),
    "If type is Image, image field needs to be set.": lambda c: (c["type"] == "Image") == ("image" in c),
    # Gateway API: Gateway
    "tls must not be specified for protocols ['HTTP', 'TCP', 'UDP']":
        lambda ls: all(l["protocol"] not in ("HTTP", "TCP", "UDP") or "tls" not in l for l in ls),
    "tls mode must be Terminate for protocol HTTPS":
        lambda ls: all(l["protocol"] != "HTTPS" or l.get("tls", {}).get("mode", "Terminate") == "Terminate" for l in ls),
    "tls mode must be set for protocol TLS":
        lambda ls: all(l["protocol"] != "TLS" or "mode" in l.get("tls", {}) for l in ls),
    "hostname must not be specified for protocols ['TCP', 'UDP']":
        lambda ls: all(l["protocol"] not in ("TCP", "UDP") or not l.get("hostname") for l in ls),
    "Listener name must be unique within the Gateway": lambda ls: len({l["name"] for l in ls}) == len(ls),
    "Combination of port, protocol and hostname must be unique for each listener":
        lambda ls: len({(l["port"], l["protocol"], l.get("hostname", "")) for l in ls}) == len(ls),
    # Gateway API: HTTPRoute
    "sectionName or port must be specified when parentRefs includes 2 or more references to the same parent":
        lambda refs: _same_parent_refs_ok(refs, unique=False),
    "sectionName or port must be unique when parentRefs includes 2 or more references to the same parent":
        lambda refs: _same_parent_refs_ok(refs, unique=True),
    "While 16 rules and 64 matches per rule are allowed, the total number of matches across all rules in a route must be less than 128":
        lambda rules: sum(len(r.get("matches", [])) for r in rules) < 128,
    "Rule name must be unique within the route":
        lambda rules: len([r["name"] for r in rules if "name" in r]) == len({r["name"] for r in rules if "name" in r}),
    "RequestRedirect filter must not be used together with backendRefs": _no_rule_filters,
    **{prefix + " path.replacePrefixMatch, exactly one PathPrefix match must be specified": _no_rule_filters
       for prefix in ("When using RequestRedirect filter with", "When using URLRewrite filter with",
                      "Within backendRefs, when using RequestRedirect filter with",
                      "Within backendRefs, When using URLRewrite filter with")},
    "value must be an absolute path and start with '/' when type one of ['Exact', 'PathPrefix']":
        lambda p: p["type"] not in ("Exact", "PathPrefix") or p["value"].startswith("/"),
    **{f"must not contain '{s}' when type one of ['Exact', 'PathPrefix']":
        (lambda s: lambda p: p["type"] not in ("Exact", "PathPrefix") or s not in p["value"])(s)
       for s in ("//", "/./", "/../", "%2f", "%2F", "#")},
    **{f"must not end with '{s}' when type one of ['Exact', 'PathPrefix']":
        (lambda s: lambda p: p["type"] not in ("Exact", "PathPrefix") or not p["value"].endswith(s))(s)
       for s in ("/..", "/.")},
    "type must be one of ['Exact', 'PathPrefix', 'RegularExpression']":
        lambda p: p["type"] in ("Exact", "PathPrefix", "RegularExpression"),
    f"must only contain valid characters (matching {PATH_CHARS.pattern}) for types ['Exact', 'PathPrefix']":
        lambda p: p["type"] not in ("Exact", "PathPrefix") or bool(PATH_CHARS.match(p["value"])),
    "Must have port for Service reference":
        lambda b: not (b.get("group", "") == "" and b.get("kind", "Service") == "Service") or "port" in b,
    "backendRequest timeout cannot be longer than request timeout":
        lambda t: not ("request" in t and "backendRequest" in t and _duration_s(t["request"]) != 0
                       and _duration_s(t["backendRequest"]) > _duration_s(t["request"])),
}


def test_cel_rules_hold(results):
    unchecked, broken = set(), []
    for r in results:
        for where, rule, message, value in r.cel_rules:
            check = CEL_CHECKS.get(message)
            if check is None:
                unchecked.add(f"{message!r} (rule: {rule})")
            elif not check(value):
                broken.append(f"{r.label()} at {where}: {message}")
    assert not unchecked, "CEL rules with no Python equivalent in CEL_CHECKS:\n" + "\n".join(sorted(unchecked))
    assert not broken, "\n".join(broken)


def test_cel_checks_can_fail():
    assert not CEL_CHECKS["If type is Image, image field needs to be set."]({"type": "Image", "http": {"url": "x"}})
    assert not CEL_CHECKS["only one of targetRefs or selector can be set"]({"selector": {}, "targetRefs": []})
    assert not CEL_CHECKS["url must have schema one of [http, https, file, oci]"]("ftp://example.com/x.wasm")
    assert CEL_CHECKS["url must have schema one of [http, https, file, oci]"]("ghcr.io/owner/mcp-trace:0.1.0")
    assert not CEL_CHECKS["Must have port for Service reference"]({"name": "mcp-server"})


# --- the validator rejects what the API server would --------------------------------------


def _wasmplugin() -> dict:
    return yaml.safe_load((DEPLOY / "istio" / "wasmplugin.yaml").read_text())


@pytest.mark.parametrize("mutate, expected", [
    (lambda d: d["spec"].__setitem__("failstrategy", "FAIL_OPEN"), "spec.failstrategy: unknown field"),
    (lambda d: d["spec"]["match"][0].__setitem__("port", 8000), "spec.match[0].port: unknown field"),
    (lambda d: d["spec"].__setitem__("failStrategy", "FAIL_SOMETIMES"), "spec.failStrategy: 'FAIL_SOMETIMES' is not one of"),
    (lambda d: d["spec"].__setitem__("sha256", "sha256:" + "a" * 64), "spec.sha256: 'sha256:aaaa"),
    (lambda d: d["spec"].__setitem__("sha256", "A" * 64), "does not match '(^$|^[a-f0-9]{64}$)'"),
    (lambda d: d["spec"]["match"][0]["ports"][0].__setitem__("number", "8000"),
     "spec.match[0].ports[0].number: '8000' is not of type 'integer'"),
    (lambda d: d["spec"]["match"][0]["ports"].append({"number": 8000}), "duplicate entry for list-map keys ['number']"),
    (lambda d: d["spec"].pop("url"), "spec: 'url' is a required property"),
    (lambda d: d["spec"].__setitem__("phase", None), "spec.phase: null"),
    (lambda d: d["metadata"].__setitem__("lables", {"a": "b"}), "metadata.lables: unknown field"),
    (lambda d: d["metadata"].__setitem__("name", "MCP_trace"), "is not a DNS-1123 subdomain"),
    (lambda d: d.__setitem__("kind", "WasmPlugins"), "no schema for apiVersion 'extensions.istio.io/v1alpha1' kind 'WasmPlugins'"),
    (lambda d: d.__setitem__("apiVersion", "extensions.istio.io/v1"), "served versions of WasmPlugin: extensions.istio.io/v1alpha1"),
    (lambda d: d.__setitem__("specs", {}), "specs: unknown field"),
])
def test_validator_rejects(store, mutate, expected):
    doc = _wasmplugin()
    assert vm.validate_document(doc, store).ok
    mutate(doc)
    errors = vm.validate_document(doc, store).errors
    assert any(expected in e for e in errors), errors


def test_validator_keeps_what_the_schema_allows(store):
    doc = _wasmplugin()
    doc["spec"]["priority"] = None  # nullable
    doc["spec"]["pluginConfig"]["not_checked_here"] = {"any": ["thing"]}  # preserve-unknown-fields
    assert vm.validate_document(doc, store).ok


def test_validator_rejects_other_kinds(store):
    te = yaml.safe_load((DEPLOY / "istio" / "alternatives" / "trafficextension.yaml").read_text())
    te["spec"]["wasm"]["failStrategy"] = "FAIL_SOMETIMES"
    te["spec"]["wasm"]["sha256"] = "xyz"
    errors = vm.validate_document(te, store).errors
    assert any("FAIL_SOMETIMES" in e for e in errors) and any("spec.wasm.sha256" in e for e in errors), errors
    eep = yaml.safe_load((DEPLOY / "envoy-gateway" / "envoyextensionpolicy.yaml").read_text())
    eep["spec"]["wasm"][0]["code"]["image"]["pullPolicy"] = "Always"  # belongs one level up
    errors = vm.validate_document(eep, store).errors
    assert errors == ["spec.wasm[0].code.image.pullPolicy: unknown field"], errors
    proxy = yaml.safe_load((DEPLOY / "envoy-gateway" / "envoyproxy.yaml").read_text())
    proxy["spec"]["telemetry"]["tracing"]["customtags"] = {}
    assert vm.validate_document(proxy, store).errors == ["spec.telemetry.tracing.customtags: unknown field"]


def test_validator_reads_every_document_of_a_file(store, tmp_path):
    good = (DEPLOY / "istio" / "wasmplugin.yaml").read_text()
    bad = good.replace("failStrategy: FAIL_OPEN", "failStrategy: FAIL_SOMETIMES").replace("name: mcp-trace\n", "name: other\n", 1)
    unknown = "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w, namespace: x}\n"
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "multi.yaml").write_text(good + "---\n" + bad + "---\n")
    (tmp_path / "unknown.yml").write_text(unknown)
    results = vm.validate_paths([tmp_path], store, relative_to=tmp_path)
    assert [(r.file, r.index, r.ok) for r in results] == [
        ("sub/multi.yaml", 0, True), ("sub/multi.yaml", 1, False), ("unknown.yml", 0, False)]
    assert "kind 'Widget'" in results[2].errors[0]
    assert vm.main(["--schemas", str(store.schema_dir), str(tmp_path)]) == 1
    assert vm.main(["--schemas", str(store.schema_dir), str(DEPLOY)]) == 0


# --- the manifests agree with each other and with envoy/envoy.yaml ------------------------


def _reference_tracing() -> dict:
    config = yaml.safe_load((REPO / "envoy" / "envoy.yaml").read_text())
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    return hcm["tracing"]


def _reference_tags() -> dict:
    return {t["tag"]: {k: v for k, v in t.items() if k != "tag"} for t in _reference_tracing()["custom_tags"]}


def test_istio_telemetry_tags_are_envoy_yamls(results):
    (telemetry,) = by_kind(results, "Telemetry")
    (tracing,) = telemetry.document["spec"]["tracing"]
    as_envoy = {}
    for tag, spec in tracing["customTags"].items():
        (kind, body), = spec.items()
        as_envoy[tag] = {"formatter": {"value": body.get("value")}, "literal": {"literal": body},
                         "header": {"request_header": body}}[kind]
    assert as_envoy == _reference_tags()


def test_envoy_gateway_tags_and_span_name_are_envoy_yamls(results):
    (proxy,) = by_kind(results, "EnvoyProxy")
    tracing = proxy.document["spec"]["telemetry"]["tracing"]
    expected = {}
    for tag, spec in _reference_tags().items():
        if "value" in spec:
            expected[tag] = spec["value"]
        elif "literal" in spec:
            expected[tag] = spec["literal"]["value"]
        else:
            expected[tag] = f"%REQ({spec['request_header']['name']})%"
    assert tracing["tags"] == expected
    assert tracing["spanName"]["client"] == _reference_tracing()["operation"]


def test_istio_span_name_is_envoy_yamls(results):
    (ef,) = by_kind(results, "EnvoyFilter", "span-name")
    (patch,) = ef.document["spec"]["configPatches"]
    assert patch["patch"]["value"]["typed_config"]["tracing"] == {"operation": _reference_tracing()["operation"]}


def test_one_mcp_port_and_workload(results):
    """The WasmPlugin, TrafficExtension and every EnvoyFilter patch target the same port
    and pods, and Envoy Gateway routes to that port."""
    ports, selectors = set(), set()
    for r in results:
        spec = r.document["spec"]
        if r.kind in ("WasmPlugin", "TrafficExtension"):
            ports |= {p["number"] for m in spec["match"] for p in m["ports"]}
            selectors.add(tuple(sorted(spec["selector"]["matchLabels"].items())))
        elif r.kind == "EnvoyFilter":
            selectors.add(tuple(sorted(spec["workloadSelector"]["labels"].items())))
            ports |= {p["match"]["listener"]["portNumber"] for p in spec["configPatches"] if "listener" in p.get("match", {})}
        elif r.kind == "Telemetry":
            selectors.add(tuple(sorted(spec["selector"]["matchLabels"].items())))
        elif r.kind == "HTTPRoute":
            ports |= {b["port"] for rule in spec["rules"] for b in rule["backendRefs"]}
    assert ports == {8000}
    assert selectors == {(("app", "mcp-server"),)}


def test_one_image_at_the_crate_version(results):
    version = re.search(r'^version = "(.+)"', (REPO / "Cargo.toml").read_text(), re.M).group(1)
    refs = set()
    for r in results:
        spec = r.document["spec"]
        if r.kind == "WasmPlugin":
            refs.add(spec["url"])
        elif r.kind == "TrafficExtension":
            refs.add(spec["wasm"]["url"])
        elif r.kind == "EnvoyExtensionPolicy":
            refs |= {"oci://" + w["code"]["image"]["url"] for w in spec["wasm"]}
        elif r.kind == "EnvoyFilter":
            refs |= {p["patch"]["value"]["typed_config"]["config"]["vm_config"]["code"]["remote"]["http_uri"]["uri"]
                     for p in spec["configPatches"] if p["applyTo"] == "EXTENSION_CONFIG"}
    assert len(refs) == 1, refs
    assert refs.pop().endswith(f"/mcp-trace:{version}")


def test_fail_open_everywhere(results):
    """A failed module pull must not block MCP traffic (see deploy/istio/wasmplugin.yaml)."""
    for r in results:
        spec = r.document["spec"]
        if r.kind == "WasmPlugin":
            assert spec["failStrategy"] == "FAIL_OPEN"
        elif r.kind == "TrafficExtension":
            assert spec["wasm"]["failStrategy"] == "FAIL_OPEN"
        elif r.kind == "EnvoyExtensionPolicy":
            assert all(w["failOpen"] is True for w in spec["wasm"])
        elif r.kind == "EnvoyFilter":
            for p in spec["configPatches"]:
                if p["applyTo"] == "EXTENSION_CONFIG":
                    assert p["patch"]["value"]["typed_config"]["config"]["failure_policy"] == "FAIL_OPEN"


# --- the filter configurations, handed to the Rust side -----------------------------------


def test_plugin_configs_are_collected(results):
    """Writes target/deploy-plugin-configs.json: every configuration the manifests give the
    filter, for a check against the filter's own parser (tests/deploy/test_envoy_configs.py
    loads them into the real filter; a Rust test can read the same file)."""
    configs = vm.plugin_configs(results)
    roles = sorted((c.platform, c.config.get("role", "standalone")) for c in configs)
    assert roles == [("envoy-gateway", "standalone"), ("istio", "downstream"), ("istio", "standalone"),
                     ("istio", "standalone"), ("istio", "upstream")]
    for c in configs:
        assert isinstance(c.config, dict), c.source
    PLUGIN_CONFIGS_OUT.parent.mkdir(parents=True, exist_ok=True)
    PLUGIN_CONFIGS_OUT.write_text(json.dumps(
        [{"source": c.source, "platform": c.platform, "config": c.config} for c in configs], indent=2) + "\n")
    assert json.loads(PLUGIN_CONFIGS_OUT.read_text())[0]["config"] == configs[0].config


def test_own_span_clusters_name_what_each_platform_has(results):
    """Istio: the collector Service's outbound cluster; Envoy Gateway: the cluster
    envoyproxy.yaml adds to the bootstrap."""
    (proxy,) = by_kind(results, "EnvoyProxy")
    bootstrap = yaml.safe_load(proxy.document["spec"]["bootstrap"]["value"])
    eg_clusters = {c["name"] for c in bootstrap["static_resources"]["clusters"]}
    for c in vm.plugin_configs(results):
        own = c.config.get("own_spans")
        if c.config.get("role") == "downstream":
            assert own is None, c.source  # does no MCP work, exports nothing
            continue
        if c.platform == "istio":
            assert re.fullmatch(r"outbound\|\d+\|\|[a-z0-9.-]+", own["cluster"]), c.source
        else:
            assert own["cluster"] in eg_clusters, c.source
