"""deploy/kubernetes, rendered per overlay, fits the application it runs.

Each overlay is rendered as an operator would (``kubectl kustomize``) from a copy of the
tree with made-up secret files; without kubectl, a small stand-in for kustomize reads the
same files (it knows only what they use, and says so when they use more). What comes out
is checked against the application itself: the variables are settings and their values
pass ``Settings.from_env``, the probes are routes, the ports are the ones the server
listens on, the containers cannot write or escalate, and the migration Job runs
``ostiary db upgrade`` on the same database as the servers.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import re
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from starlette.routing import Route

from server.app import _routes
from server.settings import Settings, SettingsError, Variable

KUBERNETES = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
OVERLAYS = ("cloudnative-pg", "external")
KUBECTL = shutil.which("kubectl")
#: made-up contents of the files each overlay's secretGenerator reads
SECRET_FILES = {
    "keys-secret": secrets.token_urlsafe(32) + "\n",
    "database-url": "postgresql://ostiary:pw@db.example.com:5432/ostiary\n",
}
#: the application URL of a CloudNativePG cluster, as its operator writes it into <cluster>-app
CNPG_URI = "postgresql://ostiary:pw@ostiary-db-rw.ostiary:5432/ostiary"

Doc = dict[str, Any]


# Rendering.


def _copy_with_made_up_secrets(destination: Path) -> Path:
    tree = destination / "kubernetes"
    shutil.copytree(KUBERNETES, tree, ignore=shutil.ignore_patterns("secrets"))
    for overlay in OVERLAYS:
        kustomization = yaml.safe_load((tree / "overlays" / overlay / "kustomization.yaml").read_text())
        for generator in kustomization.get("secretGenerator", []):
            for entry in generator.get("files", []):
                path = tree / "overlays" / overlay / entry.partition("=")[2]
                path.parent.mkdir(exist_ok=True)
                path.write_text(SECRET_FILES[path.name])
    return tree


def _kubectl_kustomize(directory: Path) -> list[Doc]:
    assert KUBECTL is not None
    result = subprocess.run([KUBECTL, "kustomize", str(directory)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"kubectl kustomize {directory.name} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


#: what the stand-in understands of a kustomization.yaml
STAND_IN_FIELDS = frozenset(
    {"apiVersion", "kind", "namespace", "resources", "configMapGenerator", "secretGenerator", "patches", "images"}
)


def _stand_in_kustomize(directory: Path) -> list[Doc]:
    """kustomize without kubectl, for what these files use: resources, env-file ConfigMaps,
    file Secrets, strategic-merge patches, image tags and a namespace. Generated names keep
    no hash suffix."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(kustomization) - STAND_IN_FIELDS
    assert not unknown, f"the stand-in for kustomize does not know {sorted(unknown)}: install kubectl"
    docs: list[Doc] = []
    for resource in kustomization.get("resources", []):
        path = directory / resource
        if path.is_dir():
            docs += _stand_in_kustomize(path)
        else:
            docs += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    for generator in kustomization.get("configMapGenerator", []):
        data = {}
        for env_file in generator["envs"]:
            for line in (directory / env_file).read_text().splitlines():
                if line.strip() and not line.lstrip().startswith("#"):
                    key, _, value = line.partition("=")
                    data[key] = value
        docs.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": generator["name"]}, "data": data})
    for generator in kustomization.get("secretGenerator", []):
        files = dict(entry.split("=", 1) for entry in generator["files"])
        data = {key: base64.b64encode((directory / path).read_bytes()).decode() for key, path in files.items()}
        secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": generator["name"]}, "type": "Opaque"}
        docs.append(secret | {"data": data})
    for patch in kustomization.get("patches", []):
        for change in yaml.safe_load_all((directory / patch["path"]).read_text()):
            target = _one(docs, change["kind"], change["metadata"]["name"])
            target.update(_merge(target, change))
    for image in kustomization.get("images", []):
        for container in (c for doc in docs for c in _containers(doc) if c["image"] == image["name"]):
            container["image"] = f"{image['name']}:{image['newTag']}"
    if "namespace" in kustomization:
        for doc in docs:
            doc["metadata"]["namespace"] = kustomization["namespace"]
    return docs


def _merge(base: Any, patch: Any) -> Any:
    """A strategic merge as these patches need it: maps merge, lists of named items merge by
    name (the patch's items first, as kustomize orders them)."""
    if isinstance(base, dict) and isinstance(patch, dict):
        return {key: _merge(base[key], value) if key in base else value for key, value in patch.items()} | {
            key: value for key, value in base.items() if key not in patch
        }
    if isinstance(base, list) and isinstance(patch, list) and all(isinstance(i, dict) and "name" in i for i in patch):
        before = {item["name"]: item for item in base}
        patched = [_merge(before[item["name"]], item) if item["name"] in before else item for item in patch]
        return patched + [item for item in base if item["name"] not in {i["name"] for i in patch}]
    return patch


def _render(tree: Path, overlay: str) -> list[Doc]:
    directory = tree / "overlays" / overlay
    return _kubectl_kustomize(directory) if KUBECTL else _stand_in_kustomize(directory)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _copy_with_made_up_secrets(tmp_path_factory.mktemp("deploy"))


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def docs(tree: Path, overlay: str) -> list[Doc]:
    return _render(tree, overlay)


# Reading what was rendered.


def _one(docs: list[Doc], kind: str, name: str | None = None) -> Doc:
    found = [doc for doc in docs if doc["kind"] == kind and name in (None, doc["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def _containers(doc: Doc) -> list[Doc]:
    if doc["kind"] not in ("Deployment", "Job"):
        return []
    return list(doc["spec"]["template"]["spec"]["containers"])


def _container(doc: Doc) -> Doc:
    containers = _containers(doc)
    assert len(containers) == 1, f"{doc['kind']} {doc['metadata']['name']}: one container expected"
    return containers[0]


def _server(docs: list[Doc]) -> Doc:
    return _one(docs, "Deployment")


def _job(docs: list[Doc]) -> Doc:
    return _one(docs, "Job")


def _literal_env(container: Doc) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container.get("env", []) if "value" in item}


def _container_port(container: Doc, port: int | str) -> int:
    """A port by number or by the name the container gives it."""
    if isinstance(port, int):
        return port
    numbers = [p["containerPort"] for p in container.get("ports", []) if p.get("name") == port]
    assert numbers, f"the container has no port named {port!r}"
    return int(numbers[0])


def _secret_value(docs: list[Doc], name: str, key: str) -> str:
    """A Secret's value: rendered here, or generated by CloudNativePG for a rendered Cluster."""
    clusters = {f"{doc['metadata']['name']}-app" for doc in docs if doc["kind"] == "Cluster"}
    if name in clusters:
        assert key == "uri", f"{name}: CloudNativePG's application URL is the key uri, not {key!r}"
        return CNPG_URI
    secret = _one(docs, "Secret", name)
    assert key in secret["data"], f"the Secret {name} has no key {key!r}"
    return base64.b64decode(secret["data"][key]).decode()


def _environment(docs: list[Doc], workload: Doc, files: Path) -> dict[str, str]:
    """The variables the container gets, with each Secret volume written under ``files``
    and the variables that name a file in it pointed there."""
    container, pod = _container(workload), workload["spec"]["template"]["spec"]
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(_one(docs, "ConfigMap", source["configMapRef"]["name"]).get("data", {}))
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = _secret_value(docs, ref["name"], ref["key"])
    volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        secret = volumes[mount["name"]].get("secret")
        if secret is None:
            continue
        local = files / mount["mountPath"].lstrip("/")
        local.mkdir(parents=True, exist_ok=True)
        for key in _one(docs, "Secret", secret["secretName"])["data"]:
            (local / key).write_text(_secret_value(docs, secret["secretName"], key))
        inside = mount["mountPath"].rstrip("/") + "/"
        env = {name: _moved(value, inside, f"{local}/") for name, value in env.items()}
    return env


def _moved(value: str, prefix: str, to: str) -> str:
    return to + value.removeprefix(prefix) if value.startswith(prefix) else value


def _real_settings() -> dict[str, Variable]:
    variables = [field.metadata[Variable] for field in dataclasses.fields(Settings) if Variable in field.metadata]
    return {variable.name: variable for variable in variables}


# What the overlays hold.


def test_each_overlay_renders_the_server_its_service_budget_job_and_monitor(docs: list[Doc]) -> None:
    kinds = sorted(doc["kind"] for doc in docs if doc["kind"] not in ("ConfigMap", "Secret", "Cluster"))
    assert kinds == ["Deployment", "Job", "PodDisruptionBudget", "Service", "ServiceMonitor"]
    assert _server(docs)["spec"]["replicas"] == 2
    assert {doc["metadata"].get("namespace") for doc in docs} == {"ostiary"}


def test_the_cloudnative_pg_overlay_runs_three_instances_and_uses_their_application_url(tree: Path) -> None:
    docs = _render(tree, "cloudnative-pg")
    cluster = _one(docs, "Cluster")
    assert cluster["apiVersion"] == "postgresql.cnpg.io/v1"
    assert cluster["spec"]["instances"] == 3
    for workload in (_server(docs), _job(docs)):
        (url,) = [item for item in _container(workload)["env"] if item["name"] == "OSTIARY_DATABASE_URL"]
        assert url["valueFrom"]["secretKeyRef"] == {"name": f"{cluster['metadata']['name']}-app", "key": "uri"}


def test_the_external_overlay_takes_the_url_from_the_operators_file(tree: Path) -> None:
    docs = _render(tree, "external")
    assert not [doc for doc in docs if doc["kind"] == "Cluster"]
    for workload in (_server(docs), _job(docs)):
        (url,) = [item for item in _container(workload)["env"] if item["name"] == "OSTIARY_DATABASE_URL"]
        ref = url["valueFrom"]["secretKeyRef"]
        assert _secret_value(docs, ref["name"], ref["key"]) == SECRET_FILES["database-url"]


# The application's side: settings, routes, ports, commands.


def _variables_named(docs: list[Doc]) -> set[str]:
    """Every variable the manifests set, and those ostiary.env suggests in its comments."""
    names = {item["name"] for doc in docs for container in _containers(doc) for item in container.get("env", [])}
    names |= {key for doc in docs if doc["kind"] == "ConfigMap" for key in doc.get("data", {})}
    suggested = re.findall(r"^#\s*(OSTIARY_\w+)=", (KUBERNETES / "base" / "ostiary.env").read_text(), re.MULTILINE)
    return names | set(suggested)


def test_every_variable_is_a_setting_and_every_file_variable_a_secret(docs: list[Doc]) -> None:
    real = _real_settings()
    names = _variables_named(docs)
    assert {"OSTIARY_DATABASE_URL", "OSTIARY_KEYS_SECRET_FILE", "OSTIARY_SMTP_PASSWORD_FILE"} <= names
    for name in sorted(names):
        if name.endswith("_FILE"):
            base = real.get(name.removesuffix("_FILE"))
            assert base is not None and base.secret, f"{name}: only a secret setting is read from a file"
        else:
            assert name in real, f"{name} is not a setting of server/settings.py"


def test_the_server_and_the_job_get_a_valid_configuration(docs: list[Doc], tmp_path: Path) -> None:
    server = Settings.from_env(_environment(docs, _server(docs), tmp_path / "server"))
    assert (server.host, server.port, server.workers) == ("0.0.0.0", 8000, 2)
    assert server.keys_secret == SECRET_FILES["keys-secret"].strip()
    assert server.shared_database
    job = Settings.from_env(_environment(docs, _job(docs), tmp_path / "job"))
    assert job.database_url == server.database_url


def test_a_bad_value_in_the_config_map_is_reported(docs: list[Doc], tmp_path: Path) -> None:
    """The check above reads the values: a bad one fails it, by name."""
    broken = copy.deepcopy(docs)
    _one(broken, "ConfigMap")["data"]["OSTIARY_ISSUER"] = "auth.example.com"
    with pytest.raises(SettingsError, match="OSTIARY_ISSUER"):
        Settings.from_env(_environment(broken, _server(broken), tmp_path))


def test_the_probes_are_the_routes_the_server_answers(docs: list[Doc]) -> None:
    served = {route.path for route in _routes() if isinstance(route, Route) and "GET" in (route.methods or ())}
    container = _container(_server(docs))
    probes = {kind: container[kind]["httpGet"] for kind in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert {probe["path"] for probe in probes.values()} <= served
    # Liveness never touches the database: a failover must not restart every pod.
    assert probes["livenessProbe"]["path"] == probes["startupProbe"]["path"] == "/livez"
    assert probes["readinessProbe"]["path"] == "/readyz"
    port = int(_literal_env(container)["OSTIARY_PORT"])
    assert {_container_port(container, probe["port"]) for probe in probes.values()} == {port}


def test_the_service_and_the_monitor_reach_the_ports_the_server_listens_on(docs: list[Doc]) -> None:
    server, service, monitor = _server(docs), _one(docs, "Service"), _one(docs, "ServiceMonitor")
    container, env = _container(server), _literal_env(_container(server))
    pod_labels = server["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    targets = {port["name"]: _container_port(container, port["targetPort"]) for port in service["spec"]["ports"]}
    assert targets == {"http": int(env["OSTIARY_PORT"]), "metrics": int(env["OSTIARY_METRICS_PORT"])}
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert [(e["port"], e.get("path")) for e in monitor["spec"]["endpoints"]] == [("metrics", "/metrics")]


def test_the_budget_covers_the_servers_and_not_the_job(docs: list[Doc]) -> None:
    budget, server, job = _one(docs, "PodDisruptionBudget"), _server(docs), _job(docs)
    selector = budget["spec"]["selector"]["matchLabels"]
    assert selector == server["spec"]["selector"]["matchLabels"]
    assert selector.items() <= server["spec"]["template"]["metadata"]["labels"].items()
    assert not selector.items() <= job["spec"]["template"]["metadata"]["labels"].items()
    assert budget["spec"]["maxUnavailable"] < server["spec"]["replicas"]


def test_the_job_runs_db_upgrade_with_the_servers_image(docs: list[Doc]) -> None:
    server, job = _container(_server(docs)), _container(_job(docs))
    assert server["command"] + server["args"] == ["ostiary", "serve"]
    assert job["command"] + job["args"] == ["ostiary", "db", "upgrade"]
    assert job["image"] == server["image"]
    name, _, tag = server["image"].rpartition(":")
    assert name == "ghcr.io/ostiary/ostiary" and tag and tag != "latest"


@pytest.mark.parametrize("kind", ["Deployment", "Job"])
def test_the_pods_run_unprivileged_on_a_read_only_filesystem(docs: list[Doc], kind: str) -> None:
    workload = _one(docs, kind)
    pod, container = workload["spec"]["template"]["spec"], _container(workload)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert isinstance(pod["securityContext"]["runAsUser"], int) and pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    # A Service named ostiary would otherwise set OSTIARY_PORT=tcp://... in every pod.
    assert pod["enableServiceLinks"] is False
    context = container["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["capabilities"]["drop"] == ["ALL"]
    assert context.get("runAsUser", pod["securityContext"]["runAsUser"]) > 0
    tmp = [mount["name"] for mount in container["volumeMounts"] if mount["mountPath"] == "/tmp"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert len(tmp) == 1 and "emptyDir" in volumes[tmp[0]]
    assert {"requests", "limits"} <= set(container["resources"])


def test_the_pod_outlasts_the_servers_shutdown_grace(docs: list[Doc], tmp_path: Path) -> None:
    """At SIGTERM the server drains for OSTIARY_SHUTDOWN_GRACE_SECONDS, after the preStop
    pause; Kubernetes kills it at terminationGracePeriodSeconds, which must come later."""
    server = _server(docs)
    grace = Settings.from_env(_environment(docs, server, tmp_path)).shutdown_grace_seconds
    pause = _container(server).get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    assert server["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > pause + grace + 5


# The stand-in renders what kubectl renders.


def _without_hash_suffixes(docs: list[Doc]) -> Iterator[tuple[tuple[str, str], Doc]]:
    generated = {doc["metadata"]["name"] for doc in docs if doc["kind"] in ("ConfigMap", "Secret")}
    plain = {name: re.sub(r"-[a-z0-9]{10}$", "", name) for name in generated}

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: strip(item) for key, item in value.items()}
        if isinstance(value, list):
            return [strip(item) for item in value]
        return plain.get(value, value) if isinstance(value, str) else value

    for doc in docs:
        doc = strip(doc)
        if doc["kind"] == "Secret":  # kustomize breaks long base64 values into lines
            doc["data"] = {key: base64.b64decode(value) for key, value in doc["data"].items()}
        yield (doc["kind"], doc["metadata"]["name"]), doc


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed: nothing to compare the stand-in with")
def test_the_stand_in_renders_what_kubectl_renders(tree: Path, overlay: str) -> None:
    directory = tree / "overlays" / overlay
    assert dict(_without_hash_suffixes(_kubectl_kustomize(directory))) == dict(
        _without_hash_suffixes(_stand_in_kustomize(directory))
    )
