"""The Kubernetes manifests in deploy/kubernetes/, checked offline: each resource against the
API schema of its Kubernetes version (kubernetes-validate's bundled schemas, strict: an unknown
field fails), what they reference exists, and what they run is what llmops accepts."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

FOLDER = REPO / "deploy" / "kubernetes"
K8S_VERSION = "1.33.0"


def _resources() -> list[tuple[str, dict]]:
    out = []
    for path in sorted(FOLDER.glob("*.yaml")):
        out += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return out


RESOURCES = _resources()


@pytest.mark.parametrize("name,resource", RESOURCES,
                         ids=[f"{n}:{r['kind']}/{r['metadata']['name']}" for n, r in RESOURCES])
def test_each_resource_is_valid_for_its_kubernetes_version(name: str, resource: dict) -> None:
    import kubernetes_validate

    kubernetes_validate.validate(resource, K8S_VERSION, strict=True)


def test_the_validator_catches_a_broken_resource() -> None:
    import kubernetes_validate

    deployment = next(r for _, r in RESOURCES if r["kind"] == "Deployment")
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] = "Always"  # a typo
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def _pod_specs() -> list[tuple[dict, dict]]:
    return [(r, r["spec"]["template"]["spec"]) for _, r in RESOURCES
            if r["kind"] in ("Deployment", "StatefulSet")]


def test_what_the_workloads_reference_is_defined_and_services_select_them() -> None:
    defined = {(r["kind"], r["metadata"]["name"]) for _, r in RESOURCES}
    for workload, pod in _pod_specs():
        for volume in pod.get("volumes", []):
            if "configMap" in volume:
                assert ("ConfigMap", volume["configMap"]["name"]) in defined
            if "secret" in volume:
                assert ("Secret", volume["secret"]["secretName"]) in defined
            if "persistentVolumeClaim" in volume:
                assert ("PersistentVolumeClaim",
                        volume["persistentVolumeClaim"]["claimName"]) in defined
        claims = {t["metadata"]["name"] for t in workload["spec"].get("volumeClaimTemplates", [])}
        mounted = {v["name"] for v in pod.get("volumes", [])} | claims
        for container in pod["containers"]:
            for ref in container.get("envFrom", []):
                assert ("Secret", ref["secretRef"]["name"]) in defined
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in mounted, mount
        if workload["kind"] == "StatefulSet":
            assert ("Service", workload["spec"]["serviceName"]) in defined
    pod_labels = [w["spec"]["template"]["metadata"]["labels"] for w, _ in _pod_specs()]
    for _, service in [(n, r) for n, r in RESOURCES if r["kind"] == "Service"]:
        selector = service["spec"]["selector"]
        assert any(selector.items() <= labels.items() for labels in pod_labels), service


def test_the_gateway_runs_a_command_and_settings_llmops_accepts(tmp_path: Path) -> None:
    from llmops.cli.main import cli
    from llmops.config import load_settings
    from llmops.serving.config import load_endpoint_config

    (gateway,) = [r for _, r in RESOURCES if r["metadata"]["name"] == "llmops-gateway"
                  and r["kind"] == "StatefulSet"]
    command = gateway["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[0] == "llmops"
    in_pod = command[command.index("--config") + 1]  # the ConfigMap's file, as mounted
    (config_map,) = [r for _, r in RESOURCES if r["kind"] == "ConfigMap"]
    endpoint = tmp_path / "endpoint.yaml"
    endpoint.write_text(config_map["data"]["endpoint.yaml"])
    # Click parses the pod's command as the console script would (the file stands in for
    # the mounted one, which --config requires to exist)
    args = [str(endpoint) if a == in_pod else a for a in command[1:]]
    ctx = cli.make_context("llmops", args)
    sub_name, sub, rest = cli.resolve_command(ctx, ctx.protected_args + ctx.args)
    assert sub_name == "serve" and ctx.params["env"] == "prod"
    assert sub.make_context(sub_name, rest, parent=ctx).params["config_path"] == endpoint
    config = load_endpoint_config(load_settings("prod", REPO), endpoint)
    assert config.gateway.log_fsync
    # the gateways' engine pool is the vLLM StatefulSet's pods, each by its stable name
    (engines,) = [r for _, r in RESOURCES if r["kind"] == "StatefulSet"
                  and r["metadata"]["name"] == "vllm"]
    name, service = engines["metadata"]["name"], engines["spec"]["serviceName"]
    port = engines["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]
    assert config.engine.urls == [f"http://{name}-{i}.{service}:{port}/v1"
                                  for i in range(engines["spec"]["replicas"])]
    assert any(r["kind"] == "Service" and r["metadata"]["name"] == service
               and r["spec"].get("clusterIP") == "None" for _, r in RESOURCES)
    mounted = {m["mountPath"] for m in
               gateway["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]}
    assert str(Path(in_pod).parent) in mounted
    assert str(Path(config.auth.keys_file).parent) in mounted
