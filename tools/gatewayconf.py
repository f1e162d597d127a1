"""Load, adapt and check Switchyard's Envoy configuration.

`envoy/gateway.yaml` is a complete, valid Envoy config. This module adapts a copy of
it for a run (ports, the .wasm path, where the demo provider listens) or for a test
(replacing the model groups with ones pointing at mock providers), and lints the
invariants Envoy cannot check itself: every model the downstream filter serves has a
route and a cluster, every endpoint's metadata is what the filter accepts, every key
variable an endpoint names is passed to the VM, and stream routes keep their stall
detection.

Endpoint metadata is checked by the filter's own code, not by rules copied here: the
`switchyard` command line (`cli/`, `switchyard check-endpoints`) runs the schema in
src/endpoint.rs. `make lint`, `make run` and `make test` build it first
(`cargo build --release -p switchyard-cli`).
"""

from __future__ import annotations

import copy
import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "envoy" / "gateway.yaml"
WASM = ROOT / "target" / "wasm32-wasip1" / "release" / "switchyard.wasm"

ROUTE_HEADER = "x-switchyard-model"
STREAM_HEADER = "x-switchyard-stream"
PREVIOUS_PRIORITIES = "envoy.retry_priorities.previous_priorities"
METADATA_NAMESPACE = "switchyard"
# The native command line built from cli/ (`switchyard check-endpoints`, `switchyard schema`).
CLI = ROOT / "target" / "release" / "switchyard"
WASM_FILTER_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
# Request headers the route table must strip before a request leaves for a provider:
# client credentials and addresses, provider settings only adapters may set
# (anthropic-version, anthropic-beta), the routing headers, and accept-encoding
# (provider bodies are read and rewritten, so they must come uncompressed). The
# upstream filter relies on this instead of spending a host call per header on every
# first attempt (src/upstream.rs, PROVIDER_HEADERS).
MUST_REMOVE = {"authorization", "x-api-key", "api-key", "x-goog-api-key", "openai-organization", "openai-project",
               "anthropic-version", "anthropic-beta", ROUTE_HEADER, STREAM_HEADER, "x-forwarded-for",
               "x-envoy-external-address", "x-forwarded-proto", "accept-encoding", "x-switchyard-internal"}
SIDECAR_CLUSTER = "switchyard_sidecar"
# The admin API's path prefixes (src/downstream.rs, ADMIN_PREFIXES), routed to the sidecar.
ADMIN_PREFIXES = ("/key/", "/team/", "/user/", "/customer/", "/end_user/", "/budget/", "/spend/", "/global/",
                  "/health/")
PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def load(path: Path = SHIPPED) -> dict:
    with open(path) as f:
        return yaml.safe_load(f)


def write(doc: dict, path: Path) -> Path:
    """Writes JSON: Envoy reads it, and YAML anchors need no care."""
    path.write_text(json.dumps(doc, indent=1))
    return path


# --- navigation -------------------------------------------------------------------


def _listener(doc: dict) -> dict:
    return doc["static_resources"]["listeners"][0]


def _hcm(doc: dict) -> dict:
    return _listener(doc)["filter_chains"][0]["filters"][0]["typed_config"]


def _wasm_filters(doc: dict) -> list[dict]:
    """Every Wasm plugin config in the document: downstream first, then per cluster."""
    found = [f["typed_config"]["config"] for f in _hcm(doc)["http_filters"]
             if f.get("typed_config", {}).get("@type") == WASM_FILTER_TYPE]
    for cluster in doc["static_resources"]["clusters"]:
        for f in _upstream_filters(cluster):
            if f.get("typed_config", {}).get("@type") == WASM_FILTER_TYPE:
                found.append(f["typed_config"]["config"])
    return found


def _upstream_filters(cluster: dict) -> list[dict]:
    options = cluster.get("typed_extension_protocol_options", {}).get(PROTOCOL_OPTIONS, {})
    return options.get("http_filters", [])


def downstream_config(doc: dict) -> dict:
    for plugin in _wasm_filters(doc):
        value = plugin["configuration"]["value"]
        if value.get("stage") == "downstream":
            return value
    raise ValueError("no downstream Switchyard filter in the HCM")


def routes(doc: dict) -> list[dict]:
    return _hcm(doc)["route_config"]["virtual_hosts"][0]["routes"]


def route_model(route: dict) -> str | None:
    for h in route.get("match", {}).get("headers", []):
        if h.get("name") == ROUTE_HEADER:
            return h.get("string_match", {}).get("exact")
    return None


def is_stream_route(route: dict) -> bool:
    return any(h.get("name") == STREAM_HEADER for h in route.get("match", {}).get("headers", []))


def cluster(doc: dict, name: str) -> dict:
    for c in doc["static_resources"]["clusters"]:
        if c["name"] == name:
            return c
    raise KeyError(name)


def endpoints(c: dict) -> list[dict]:
    return [lb for group in c["load_assignment"]["endpoints"] for lb in group["lb_endpoints"]]


def endpoint_metadata(lb_endpoint: dict) -> dict | None:
    return lb_endpoint.get("metadata", {}).get("filter_metadata", {}).get(METADATA_NAMESPACE)


# --- adapting a copy --------------------------------------------------------------


def set_ports(doc: dict, gateway_port: int, admin_port: int) -> None:
    _listener(doc)["address"]["socket_address"]["port_value"] = gateway_port
    doc["admin"]["address"]["socket_address"]["port_value"] = admin_port


def set_wasm_path(doc: dict, wasm: Path = WASM) -> None:
    for plugin in _wasm_filters(doc):
        plugin["vm_config"]["code"]["local"]["filename"] = str(wasm)


def point_endpoint(doc: dict, cluster_name: str, host: str, port: int) -> None:
    """Points a cluster's (single) static endpoint at host:port, api_base included."""
    lb = endpoints(cluster(doc, cluster_name))[0]
    lb["endpoint"]["address"]["socket_address"].update(address=host, port_value=port)
    meta = endpoint_metadata(lb)
    if meta is not None and "api_base" in meta:
        scheme = meta["api_base"].split("://", 1)[0]
        meta["api_base"] = f"{scheme}://{host}:{port}"


@dataclass
class Deployment:
    """One endpoint of a model group, served by a (mock) provider on loopback."""

    provider: str
    port: int
    model: str | None = None
    api_key_env: str | None = None
    api_base_path: str = ""
    host: str = "127.0.0.1"
    extra: dict = field(default_factory=dict)
    # Envoy's priority (0 first; higher ones are the fallback chain) and load-balancing
    # weight within that priority.
    priority: int = 0
    weight: int | None = None

    def metadata(self) -> dict:
        meta = {"provider": self.provider, "api_base": f"http://{self.host}:{self.port}{self.api_base_path}"}
        if self.model:
            meta["model"] = self.model
        if self.api_key_env:
            meta["api_key_env"] = self.api_key_env
        meta.update(self.extra)
        return meta


@dataclass
class ModelGroup:
    name: str
    deployments: list[Deployment]
    route_timeout: str = "600s"
    connect_timeout: str = "1s"
    # Merged over the shipped template: keys of the route action (retry_policy, ...) and
    # of the cluster (lb_policy, outlier_detection, ...).
    route: dict = field(default_factory=dict)
    cluster: dict = field(default_factory=dict)
    # Merged over the shipped stream route's action (streams have a route of their own).
    stream_route: dict = field(default_factory=dict)
    # Downstream model entry fields (context_window, context_window_fallback).
    model: dict = field(default_factory=dict)


def replace_models(doc: dict, groups: list[ModelGroup], extra_env_keys: list[str] = ()) -> None:
    """Swaps the shipped model groups for `groups`, keeping the shipped listener,
    filters and cluster template, so tests run the configuration users run."""
    template = cluster(doc, "model.demo")
    template_route = next(r["route"] for r in routes(doc) if route_model(r) == "demo" and not is_stream_route(r))
    template_stream = next(r for r in routes(doc) if route_model(r) == "demo" and is_stream_route(r))
    clusters, route_list, models = [], [], []
    for g in groups:
        c = copy.deepcopy(template)
        c["name"] = f"model.{g.name}"
        c["connect_timeout"] = g.connect_timeout
        c["load_assignment"] = {"cluster_name": c["name"], "endpoints": _localities(g.deployments)}
        _merge(c, g.cluster)
        clusters.append(c)
        match = {"prefix": "/", "headers": [{"name": ROUTE_HEADER, "string_match": {"exact": g.name}}]}
        stream = copy.deepcopy(template_stream)
        stream["name"] = g.name
        stream["match"]["headers"][0] = copy.deepcopy(match["headers"][0])
        stream["route"]["cluster"] = c["name"]
        _merge(stream["route"], g.route)
        # A group's per-attempt timeout is for its other route: on a stream route Envoy
        # would delete the idle timer when it fires (the lint refuses it there).
        stream["route"].get("retry_policy", {}).pop("per_try_timeout", None)
        _merge(stream["route"], g.stream_route)
        action = copy.deepcopy(template_route)
        action.update(cluster=c["name"], timeout=g.route_timeout)
        _merge(action, g.route)
        route_list.append(stream)
        route_list.append({"name": g.name, "match": match, "route": action})
        models.append({"id": g.name, "owned_by": "switchyard", **g.model})
    # Everything that is not a model group (the sidecar, its admin routes) stays.
    kept_clusters = [c for c in doc["static_resources"]["clusters"] if not c["name"].startswith("model.")]
    doc["static_resources"]["clusters"] = kept_clusters + clusters
    kept_routes = [r for r in routes(doc) if route_model(r) is None]
    routes(doc)[:] = kept_routes + route_list
    downstream_config(doc)["models"] = models
    keys = {d.api_key_env for g in groups for d in g.deployments if d.api_key_env} | set(extra_env_keys)
    for plugin in _wasm_filters(doc):
        env = plugin["vm_config"].setdefault("environment_variables", {}).setdefault("host_env_keys", [])
        env.extend(sorted(k for k in keys if k not in env))


def point_sidecar(doc: dict, host: str, port: int) -> None:
    """Points the sidecar cluster at host:port."""
    lb = endpoints(cluster(doc, SIDECAR_CLUSTER))[0]
    lb["endpoint"]["address"]["socket_address"].update(address=host, port_value=port)


def enable_virtual_keys(doc: dict, master_key_env: str = "SWITCHYARD_MASTER_KEY",
                        internal_secret_env: str = "SWITCHYARD_INTERNAL_SECRET", **settings) -> None:
    """Requires a key from clients: the master key (from `master_key_env`) or one of the
    sidecar's virtual keys. `settings` override the virtual_keys defaults (cache_ttl, ...)."""
    down = downstream_config(doc)
    down["master_key_env"] = master_key_env
    down["virtual_keys"] = {"sidecar_cluster": SIDECAR_CLUSTER, "internal_secret_env": internal_secret_env, **settings}
    for plugin in _wasm_filters(doc):
        env = plugin["vm_config"].setdefault("environment_variables", {}).setdefault("host_env_keys", [])
        env.extend(k for k in (master_key_env, internal_secret_env) if k not in env)


def set_upstream_config(doc: dict, **values) -> None:
    """Sets upstream filter settings (`stream_stall_timeout`, ...) on every cluster."""
    for plugin in _wasm_filters(doc):
        value = plugin["configuration"]["value"]
        if value.get("stage") == "upstream":
            value.update(values)


def _localities(deployments: list[Deployment]) -> list[dict]:
    """One locality per priority, in priority order (Envoy requires each priority it
    uses from 0 up)."""
    out = []
    for priority in sorted({d.priority for d in deployments}):
        lbs = []
        for d in deployments:
            if d.priority != priority:
                continue
            lb = {"endpoint": {"address": {"socket_address": {"address": d.host, "port_value": d.port}}},
                  "metadata": {"filter_metadata": {METADATA_NAMESPACE: d.metadata()}}}
            if d.weight is not None:
                lb["load_balancing_weight"] = d.weight
            lbs.append(lb)
        out.append({"priority": priority, "lb_endpoints": lbs} if priority else {"lb_endpoints": lbs})
    return out


def _merge(base: dict, overrides: dict) -> None:
    """Deep-merges `overrides` into `base`; a None value deletes the key."""
    for key, value in overrides.items():
        if value is None:
            base.pop(key, None)
        elif isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)


# --- lint -------------------------------------------------------------------------


def check_endpoints(metadata: list[dict], cli: Path = CLI) -> list[str | None]:
    """Checks endpoint metadata objects by the filter's own rules (src/endpoint.rs, through
    `switchyard check-endpoints`): per object, None if the filter accepts it, else why not.
    Unknown keys are refused (the filter would ignore them: here they are typos)."""
    if not metadata:
        return []
    if not Path(cli).is_file():
        raise FileNotFoundError(f"{cli} is missing: build it with `cargo build --locked --release -p switchyard-cli` "
                                "(make lint, make run and make test do)")
    # YAML scalars PyYAML types and Envoy keeps as text (an unquoted 2024-10-21 is a date
    # to one and a string to the other) go over as strings.
    result = subprocess.run([str(cli), "check-endpoints"], input=json.dumps(metadata, default=str),
                            capture_output=True, text=True, timeout=60)
    lines = result.stdout.splitlines()
    if result.returncode not in (0, 1) or len(lines) != len(metadata):
        raise RuntimeError(f"{cli} check-endpoints failed (exit {result.returncode}): {result.stderr.strip()}")
    return [None if r["ok"] else r["error"] for r in map(json.loads, lines)]


def lint(doc: dict, cli: Path = CLI) -> list[str]:
    """Invariants Envoy does not check; an empty list means consistent. `cli` is the
    `switchyard` binary that checks endpoint metadata."""
    problems = []
    removed = set(_hcm(doc)["route_config"]["virtual_hosts"][0].get("request_headers_to_remove", []))
    if MUST_REMOVE - removed:
        problems.append(f"the virtual host must remove {sorted(MUST_REMOVE - removed)} (request_headers_to_remove)")
    served = [m["id"] for m in downstream_config(doc).get("models", [])]
    vk = downstream_config(doc).get("virtual_keys")
    cluster_names = {c["name"] for c in doc["static_resources"]["clusters"]}
    if vk and vk.get("sidecar_cluster") not in cluster_names:
        problems.append(f"virtual_keys.sidecar_cluster {vk.get('sidecar_cluster')!r} is not a cluster")
    for r in routes(doc):
        prefix = r.get("match", {}).get("prefix", "")
        if route_model(r) is None and prefix.startswith("/internal"):
            problems.append("the sidecar's internal API must not be routed from clients")
    vhost = _hcm(doc)["route_config"]["virtual_hosts"][0]
    if not vhost.get("include_request_attempt_count"):
        problems.append("the virtual host must set include_request_attempt_count (x-switchyard-attempts reads it)")
    routed, stream_routed, route_actions = {}, {}, {}
    for r in routes(doc):
        model = route_model(r)
        if model is None:
            continue
        table = stream_routed if is_stream_route(r) else routed
        if model in table:
            problems.append(f"{'stream ' if table is stream_routed else ''}route for model {model!r} appears twice")
        if model in routed and table is stream_routed:
            problems.append(f"the stream route for model {model!r} must come before its other route")
        if r.get("name") != model:
            problems.append(f"route for model {model!r} must be named {model!r} (the access log reports it)")
        table[model] = r.get("route", {}).get("cluster")
        route_actions.setdefault(model, []).append(r.get("route", {}))
        # Route-level retry_policy replaces the virtual host's (Envoy merges nothing).
        retry = r.get("route", {}).get("retry_policy", vhost.get("retry_policy")) or {}
        if table is stream_routed and _duration_set(retry.get("per_try_timeout")):
            problems.append(
                f"stream route for {model!r}: its retry_policy must not set per_try_timeout (use per_try_idle_timeout "
                "alone): when a per-try timeout expires after the response has started, Envoy ignores it but deletes "
                "the attempt's per_try_idle_timeout timer, so a stream that runs past it and then stalls is never cut "
                "(Envoy's UpstreamRequest::onPerTryTimeout)")
    for model, cluster_name in stream_routed.items():
        if routed.get(model) != cluster_name:
            problems.append(f"the stream route for {model!r} must go to the same cluster as its other route")
        # The filter ends a stalled stream with an error event only if Envoy's idle timer
        # has not reset it first.
        try:
            stall = _stream_stall_timeout(cluster(doc, cluster_name))
        except KeyError:
            continue
        stream_action = next((a for a in route_actions.get(model, []) if a.get("cluster") == cluster_name), {})
        idle = _seconds((stream_action.get("retry_policy", vhost.get("retry_policy")) or {}).get("per_try_idle_timeout"))
        if stall and idle and idle <= stall:
            problems.append(f"stream route for {model!r}: per_try_idle_timeout ({idle:g} s) must exceed the upstream "
                            f"filter's stream_stall_timeout ({stall:g} s), or Envoy resets a stalled stream before "
                            "the filter can end it with an error event")
    for model in served:
        if model not in routed:
            problems.append(f"model {model!r} is served by the filter but has no route")
    for model in routed:
        if model not in served:
            problems.append(f"route for {model!r} is unreachable: the filter does not serve that model")
    env_keys = [set(p["vm_config"].get("environment_variables", {}).get("host_env_keys", []))
                for p in _wasm_filters(doc)]
    vm_configs = [json.dumps(p["vm_config"], sort_keys=True) for p in _wasm_filters(doc)]
    if len(set(vm_configs)) > 1:
        problems.append("the Wasm filters' vm_config differ, so they will not share one VM per worker")
    names = {c["name"] for c in doc["static_resources"]["clusters"]}
    checked = []  # (where, metadata) of every endpoint, checked in one call below
    for model, cluster_name in routed.items():
        if cluster_name not in names:
            problems.append(f"route for {model!r} points at missing cluster {cluster_name!r}")
            continue
        c = cluster(doc, cluster_name)
        if not any(f.get("typed_config", {}).get("@type") == WASM_FILTER_TYPE for f in _upstream_filters(c)):
            problems.append(f"cluster {cluster_name!r} has no Switchyard upstream filter")
        priorities = {group.get("priority", 0) for group in c["load_assignment"]["endpoints"]}
        if len(priorities) > 1:
            for action in route_actions.get(model, []):
                retry = action.get("retry_policy", {})
                if retry.get("retry_priority", {}).get("name") != PREVIOUS_PRIORITIES:
                    problems.append(f"route for {model!r}: its cluster has fallback priorities, so its retry_policy "
                                    f"needs retry_priority {PREVIOUS_PRIORITIES} to reach them")
                elif retry.get("num_retries", 1) < len(priorities) - 1:
                    problems.append(f"route for {model!r}: num_retries {retry.get('num_retries', 1)} cannot reach all "
                                    f"{len(priorities)} priorities of its cluster")
        for lb in endpoints(c):
            meta = endpoint_metadata(lb)
            where = f"cluster {cluster_name!r} endpoint {lb['endpoint']['address']['socket_address']}"
            if meta is None:
                problems.append(f"{where}: no filter_metadata.{METADATA_NAMESPACE}")
                continue
            checked.append((where, meta))
            key_env = meta.get("api_key_env")
            if key_env and not all(key_env in keys for keys in env_keys):
                problems.append(f"{where}: api_key_env {key_env} is not in every filter's host_env_keys")
    for (where, _), error in zip(checked, check_endpoints([meta for _, meta in checked], cli)):
        if error:
            problems.append(f"{where}: {error}")
    return problems


def _seconds(value) -> float | None:
    """A protobuf Duration as YAML writes it, in seconds; None if absent or unreadable."""
    if value is None:
        return None
    if isinstance(value, dict):
        return float(value.get("seconds", 0)) + float(value.get("nanos", 0)) / 1e9
    try:
        return float(str(value).removesuffix("s"))
    except ValueError:
        return None


# The upstream filter's default `stream_stall_timeout` (src/config/mod.rs).
DEFAULT_STREAM_STALL_TIMEOUT = 55


def _stream_stall_timeout(c: dict) -> float:
    for f in _upstream_filters(c):
        if f.get("typed_config", {}).get("@type") == WASM_FILTER_TYPE:
            value = f["typed_config"]["config"].get("configuration", {}).get("value", {})
            if isinstance(value, dict):
                return float(value.get("stream_stall_timeout", DEFAULT_STREAM_STALL_TIMEOUT))
    return 0


def _duration_set(value) -> bool:
    """A protobuf Duration as YAML writes it ("300s", "0.5s", {seconds: 1}); 0 means unset."""
    if value is None:
        return False
    if isinstance(value, dict):
        return bool(value.get("seconds") or value.get("nanos"))
    try:
        return float(str(value).removesuffix("s")) != 0
    except ValueError:
        return True


if __name__ == "__main__":
    import argparse
    import sys

    parser = argparse.ArgumentParser(description="Lint a Switchyard Envoy config.")
    parser.add_argument("config", nargs="?", type=Path, default=SHIPPED)
    parser.add_argument("--switchyard", type=Path, default=CLI, help="the switchyard binary (cli/)")
    args = parser.parse_args()
    issues = lint(load(args.config), args.switchyard)
    for issue in issues:
        print(issue)
    sys.exit(1 if issues else 0)
