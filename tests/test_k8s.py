"""The Kubernetes and KServe manifests validate, and point at things that exist.

No cluster here: every plain manifest is checked against the Kubernetes JSON schemas of a
pinned release (``kubernetes-validate``, strict: unknown fields are errors), the KServe objects
against KServe's own model classes (its Python SDK: every field must be one the CRD's types
define), and the values are tied to the service — settings names, probe paths, ports, images,
the drain time — as the compose test does for docker-compose.yml.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import kubernetes.client
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
KSERVE = ROOT / "deploy" / "kserve"
KUBERNETES_VERSION = "1.33.0"  # a recent release every managed Kubernetes offers
SCALARS: dict[str, tuple[type, ...]] = {
    "str": (str,), "int": (int,), "bool": (bool,), "float": (int, float), "object": (object,),
}  # fmt: skip


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def manifests() -> list[Path]:
    return sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")


def rendered(variant: str) -> dict[str, dict[str, Any]]:
    """What ``kubectl apply -k deploy/k8s/<variant>`` applies, by kind (resources only: the
    kustomizations here list files and add labels, nothing else)."""
    objects: dict[str, dict[str, Any]] = {}

    def include(folder: Path) -> None:
        kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
        assert set(kustomization) <= {"apiVersion", "kind", "resources", "labels"}
        for entry in kustomization["resources"]:
            target = (folder / entry).resolve()
            if target.is_dir():
                include(target)
            else:
                for doc in documents(target):
                    objects[doc["kind"]] = doc

    include(K8S / variant)
    return objects


@pytest.mark.parametrize("path", manifests(), ids=lambda p: str(p.relative_to(K8S)))
def test_manifest_validates_against_the_kubernetes_schema(path: Path) -> None:
    for doc in documents(path):
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_strict_validation_catches_a_misspelt_field() -> None:
    deployment = copy.deepcopy(rendered("cpu")["Deployment"])
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("variant", ["cpu", "gpu"])
def test_each_variant_is_complete_and_consistent(variant: str) -> None:
    objects = rendered(variant)
    assert set(objects) == {
        "ConfigMap", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler", "Deployment",
    }  # fmt: skip
    deployment = objects["Deployment"]
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    for selector in (
        deployment["spec"]["selector"]["matchLabels"],
        objects["Service"]["spec"]["selector"],
        objects["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"],
    ):
        assert selector.items() <= labels.items()
    assert (
        objects["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"]
        == (deployment["metadata"]["name"])
    )
    (container,) = pod["spec"]["containers"]
    assert (
        container["envFrom"][0]["configMapRef"]["name"] == objects["ConfigMap"]["metadata"]["name"]
    )
    (port,) = container["ports"]
    settings = objects["ConfigMap"]["data"]
    assert port["containerPort"] == int(settings["XCEPTION_PORT"])
    assert objects["Service"]["spec"]["ports"][0]["targetPort"] == port["name"]
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == settings["XCEPTION_PORT"]
    # SIGTERM comes after preStop; the drain must end before the kubelet's SIGKILL.
    pause = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    drain = float(settings["XCEPTION_DRAIN_TIMEOUT_S"])
    assert pause + drain < pod["spec"]["terminationGracePeriodSeconds"]
    gpus = container["resources"]["limits"].get("nvidia.com/gpu")
    device = next(e["value"] for e in container["env"] if e["name"] == "XCEPTION_DEVICE")
    assert (gpus, device) == (("1", "cuda") if variant == "gpu" else (None, "cpu"))


def test_gpu_deployment_differs_from_cpu_only_where_a_gpu_needs_it() -> None:
    cpu, gpu = rendered("cpu")["Deployment"], rendered("gpu")["Deployment"]

    def without_gpu_parts(deployment: dict[str, Any]) -> dict[str, Any]:
        stripped = copy.deepcopy(deployment)
        pod = stripped["spec"]["template"]["spec"]
        pod.pop("tolerations", None)
        container = pod["containers"][0]
        container.pop("resources")
        tuned = {"XCEPTION_DEVICE", "XCEPTION_DECODE_THREADS", "XCEPTION_MAX_BATCH_SIZE",
                 "XCEPTION_MAX_BATCH_DELAY_MS"}  # fmt: skip
        container["env"] = [e for e in container["env"] if e["name"] not in tuned]
        return stripped

    assert without_gpu_parts(cpu) == without_gpu_parts(gpu)


def test_settings_probes_and_images_exist() -> None:
    from service.config.settings import Settings
    from service.config.startup import DEPLOYMENT_VARIABLES

    known = {f"XCEPTION_{name.upper()}" for name in Settings.model_fields} | DEPLOYMENT_VARIABLES
    paths = _route_paths()
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    runtime_image = _default(compose["x-api"]["image"])
    export_image = _default(compose["x-export"]["image"])
    dockerfile = (ROOT / "Dockerfile").read_text()
    user = re.search(r"^USER (\d+):", dockerfile.split("AS runtime")[1], re.MULTILINE)
    assert user is not None
    for variant in ("cpu", "gpu"):
        objects = rendered(variant)
        pod = objects["Deployment"]["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        (init,) = pod["initContainers"]
        names = set(objects["ConfigMap"]["data"]) | {e["name"] for e in container["env"]}
        assert names <= known, names - known
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert container[probe]["httpGet"]["path"] in paths
        assert container["image"] == runtime_image and init["image"] == export_image
        assert pod["securityContext"]["runAsUser"] == int(user.group(1))
        # The init container writes where the server reads its repository.
        out = init["args"][init["args"].index("--out") + 1]
        repository = objects["ConfigMap"]["data"]["XCEPTION_MODEL_REPOSITORY"]
        assert Path(out).parent.parent == Path(repository)
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        assert mounts["models"] == repository
        for each in (container, init):
            context = each["securityContext"]
            assert context["readOnlyRootFilesystem"] and not context["allowPrivilegeEscalation"]
            assert context["capabilities"]["drop"] == ["ALL"]
    metric = documents(K8S / "hpa-queue-depth.yaml")[0]["spec"]["metrics"][0]["pods"]["metric"]
    assert f'"{metric["name"]}"' in (ROOT / "service" / "observability" / "metrics.py").read_text()


def model_class(name: str) -> Any:
    """The KServe SDK's or the Kubernetes client's class for an OpenAPI type name."""
    import kserve.models

    return getattr(kserve.models, name, None) or getattr(kubernetes.client, name, None)


def field_problems(value: Any, type_name: str, where: str) -> list[str]:
    """Every field of ``value`` that type ``type_name`` does not define, or of the wrong kind
    (the SDKs' own classes; their deserialiser would silently drop unknown fields)."""
    # kserve's classes spell containers list[X] / dict(str, X); the Kubernetes client's
    # List[X] / Dict[str, X].
    if re.match(r"[Ll]ist\[", type_name):
        if not isinstance(value, list):
            return [f"{where}: expected a list"]
        inner = type_name[5:-1]
        return [
            p for i, item in enumerate(value) for p in field_problems(item, inner, f"{where}[{i}]")
        ]
    if re.match(r"dict\(|Dict\[", type_name):
        if not isinstance(value, dict):
            return [f"{where}: expected a mapping"]
        inner = type_name[5:-1].split(", ", 1)[1]
        return [p for k, item in value.items() for p in field_problems(item, inner, f"{where}.{k}")]
    if type_name in SCALARS:
        ok = isinstance(value, SCALARS[type_name]) and not (
            type_name in ("int", "float") and isinstance(value, bool)
        )
        return [] if ok else [f"{where}: expected {type_name}, got {value!r}"]
    cls = model_class(type_name)
    if cls is None:  # e.g. ResourceQuantity: a string or a number
        return [] if isinstance(value, (str, int, float)) else [f"{where}: unexpected {value!r}"]
    if not isinstance(value, dict):
        return [f"{where}: expected a {type_name} object"]
    by_json = {json: attr for attr, json in cls.attribute_map.items()}
    problems = []
    for key, item in value.items():
        if key not in by_json:
            problems.append(f"{where}.{key}: not a field of {type_name}")
            continue
        problems += field_problems(item, cls.openapi_types[by_json[key]], f"{where}.{key}")
    return problems


KSERVE_KINDS = {
    "InferenceService": "V1beta1InferenceService",
    "ServingRuntime": "V1alpha1ServingRuntime",
}


@pytest.mark.parametrize("path", sorted(KSERVE.glob("*.yaml")), ids=lambda p: p.name)
def test_kserve_objects_fit_kserve_model_classes(path: Path) -> None:
    for doc in documents(path):
        assert field_problems(doc, KSERVE_KINDS[doc["kind"]], doc["kind"]) == []


def test_kserve_field_check_catches_a_misspelt_field() -> None:
    (service,) = documents(KSERVE / "inferenceservice.yaml")
    service["spec"]["predictor"]["model"]["protocolversion"] = "v2"
    service["spec"]["predictor"]["minReplicas"] = "2"
    problems = field_problems(service, "V1beta1InferenceService", "isvc")
    assert problems == [
        "isvc.spec.predictor.minReplicas: expected int, got '2'",
        "isvc.spec.predictor.model.protocolversion: not a field of V1beta1ModelSpec",
    ]


def test_kserve_runtime_speaks_v2_on_the_port_it_serves() -> None:
    (runtime,) = documents(KSERVE / "servingruntime.yaml")
    (service,) = documents(KSERVE / "inferenceservice.yaml")
    model = service["spec"]["predictor"]["model"]
    assert model["protocolVersion"] == "v2" and "v2" in runtime["spec"]["protocolVersions"]
    assert model["runtime"] == runtime["metadata"]["name"]
    formats = {f["name"] for f in runtime["spec"]["supportedModelFormats"]}
    assert model["modelFormat"]["name"] in formats
    (container,) = runtime["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert container["ports"][0]["containerPort"] == int(env["XCEPTION_PORT"])
    assert env["XCEPTION_MODEL_REPOSITORY"] == "/mnt/models"  # KServe's storage initializer
    paths = _route_paths()
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["path"] in paths
        assert container[probe]["httpGet"]["port"] == int(env["XCEPTION_PORT"])


def _route_paths() -> set[str]:
    import service.routes.ops as ops
    import service.routes.v2 as v2

    return {route.path for route in [*ops.router.routes, *v2.router.routes]}  # type: ignore[attr-defined]


def _default(value: str) -> str:
    """``${VAR:-default}`` → ``default``."""
    return re.sub(r"\$\{\w+:-(.*?)\}", lambda m: m.group(1), value)
