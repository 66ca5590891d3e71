"""The deployment files: deploy/Dockerfile, docker-compose.yaml, deploy/k8s/ and examples/replicas.

No container runtime runs on the development machine or in CI, so what a runtime would check is checked here: the
Kubernetes manifests against Kubernetes' own schemas (kubernetes-validate), the compose file's services, builds,
health checks and mounts, the Dockerfile's command through searchd's real argument parser, and the example config
through ``searchd validate`` and a real ``searchd serve`` on the tests' PostgreSQL.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import kubernetes_validate  # type: ignore[import-untyped]  # it ships no type hints (no py.typed, no stubs package)
import psycopg
import pytest
import yaml

from searchd.cli import build_parser
from tests import pgcluster
from tests.conftest import ROOT
from tests.test_e2e_server import StartServer, child_env, searchd_module
from tests.test_e2e_server import start_server as start_server  # noqa: PLC0414  (re-exported: the fixture, used by name)

DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = ROOT / "docker-compose.yaml"
EXAMPLE = ROOT / "examples" / "replicas"
# The oldest Kubernetes still commonly run, and the newest kubernetes-validate knows.
KUBERNETES_VERSIONS = ["1.30", kubernetes_validate.latest_version()]
EXAMPLE_ENV = {"DATABASE_URL": "postgresql://searchd@db:5432/searchd", "SEARCHD_ADMIN_KEY": "admin-key-0123456789"}


# -- the Dockerfile ------------------------------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """The final stage's instructions as (INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text(encoding="utf-8"))
    instructions = [tuple(line.strip().split(None, 1)) for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    last_from = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    return [(word.upper(), rest) for word, rest in instructions[last_from:]]


def one(instructions: list[tuple[str, str]], word: str) -> str:
    found = [rest for name, rest in instructions if name == word]
    assert len(found) == 1, f"expected one {word} in the final stage, found {found}"
    return found[0]


def exec_form(arguments: str) -> list[str]:
    """A JSON-array (exec form) argument list: shell form would run searchd under /bin/sh, which swallows SIGTERM."""
    parsed = json.loads(arguments)
    assert isinstance(parsed, list) and all(isinstance(word, str) for word in parsed), arguments
    return parsed


def image_command() -> list[str]:
    final = dockerfile()
    return exec_form(one(final, "ENTRYPOINT")) + exec_form(one(final, "CMD"))


def test_the_dockerfile_command_is_a_serve_the_real_cli_parser_accepts() -> None:
    final = dockerfile()
    command = image_command()
    assert command[0] == "searchd"
    args = build_parser().parse_args(command[1:])
    assert (args.command, args.config, args.host, args.data) == ("serve", "/etc/searchd", "0.0.0.0", "/var/lib/searchd")
    assert {str(args.port), str(args.grpc_port)} == set(one(final, "EXPOSE").split()) == {"8080", "50051"}
    volume = one(final, "VOLUME")
    assert (json.loads(volume) if volume.startswith("[") else volume.split()) == [args.data]  # the data directory outlives the container


def test_the_image_runs_as_a_user_and_checks_liveness_on_its_port() -> None:
    final = dockerfile()
    user = one(final, "USER").split(":")[0]
    assert user not in {"0", "root"}, user
    assert f"--uid {user}" in one([(w, r) for w, r in final if w == "RUN" and "useradd" in r], "RUN")
    options, _, check = one(final, "HEALTHCHECK").partition("CMD ")
    assert "--interval=" in options and "--timeout=" in options
    probe = exec_form(check)
    assert probe[:2] == ["python", "-c"]
    compile(probe[2], "HEALTHCHECK", "exec")  # the probe is Python that parses
    assert "http://127.0.0.1:8080/v1/.well-known/live" in probe[2]


def test_the_build_copies_only_what_the_repository_has_and_dockerignore_lets_through() -> None:
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    sources = [word for line in text.splitlines() if line.startswith("COPY ") and "--from=" not in line for word in line.split()[1:-1]]
    assert sources == ["pyproject.toml", "README.md", "searchd"]
    allowed = {line[1:].rstrip("/") for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines() if line.startswith("!")}
    for source in sources:
        assert (ROOT / source).exists(), source
        assert source in allowed, f".dockerignore leaves {source} out of the build context"
    assert "pip wheel" in text and "pip install --no-cache-dir --no-index /wheels/*.whl" in text  # the package, from this tree


# -- docker-compose.yaml ------------------------------------------------------------------------------------------


def interpolate(value: Any) -> Any:
    """What compose makes of ${VAR:-default} with nothing set in the environment (as on a first `docker compose up`)."""
    if isinstance(value, str):
        def default(match: re.Match[str]) -> str:
            assert match.group(2) is not None, f"${{{match.group(1)}}} has no default: a first `docker compose up` would fail"
            return match.group(2)

        return re.sub(r"\$\{(\w+)(?::-([^}]*))?\}", default, value)
    if isinstance(value, dict):
        return {key: interpolate(item) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item) for item in value]
    return value


def compose() -> dict[str, Any]:
    document: dict[str, Any] = interpolate(yaml.safe_load(COMPOSE.read_text(encoding="utf-8")))
    return document


def test_compose_runs_pgvector_and_two_searchd_replicas_built_from_this_tree() -> None:
    services = compose()["services"]
    assert services["db"]["image"].startswith("pgvector/pgvector:pg")
    replicas = {name: service for name, service in services.items() if name.startswith("searchd-")}
    assert sorted(replicas) == ["searchd-1", "searchd-2"]
    for name, service in replicas.items():
        build = service["build"]
        assert (ROOT / build["context"] / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile", name
        assert "command" not in service and "entrypoint" not in service, f"{name} runs the image's own command"
        published = [port.rsplit(":", 2) for port in service["ports"]]
        assert all(host == "127.0.0.1" for host, _, _ in published), f"{name} publishes beyond this machine"
        assert {target for _, _, target in published} == {"8080", "50051"}, name
    host_ports = [port.rsplit(":", 1)[0] for service in replicas.values() for port in service["ports"]]
    assert len(host_ports) == len(set(host_ports)), f"two replicas publish the same host port: {host_ports}"


def test_compose_mounts_the_example_config_read_only_and_keeps_data_in_volumes() -> None:
    document = compose()
    for name in ("searchd-1", "searchd-2"):
        service = document["services"][name]
        binds = [v for v in service["volumes"] if isinstance(v, dict) and v["type"] == "bind"]
        assert binds == [{"type": "bind", "source": "./examples/replicas", "target": "/etc/searchd", "read_only": True}], name
        assert (ROOT / binds[0]["source"]).resolve() == EXAMPLE
        named = [v.split(":") for v in service["volumes"] if isinstance(v, str)]
        assert [(volume in document["volumes"], target) for volume, target in named] == [(True, "/var/lib/searchd")], name
        assert service["read_only"] is True and service["tmpfs"] == ["/tmp"], name


def test_compose_starts_replicas_only_once_what_they_need_is_healthy() -> None:
    services = compose()["services"]
    for name, service in services.items():
        check = service["healthcheck"]["test"]
        assert check[0] in {"CMD", "CMD-SHELL"} and check[1:], name
        for needed, condition in service.get("depends_on", {}).items():
            assert condition == {"condition": "service_healthy"} and "healthcheck" in services[needed], (name, needed)
    assert set(services["searchd-1"]["depends_on"]) == {"db"}
    assert set(services["searchd-2"]["depends_on"]) == {"db", "searchd-1"}
    probe = services["searchd-1"]["healthcheck"]["test"]
    compile(probe[-1], "healthcheck", "exec")
    assert "/v1/.well-known/ready" in probe[-1]


def test_compose_gives_replicas_the_database_url_without_a_real_password() -> None:
    raw = COMPOSE.read_text(encoding="utf-8")
    assert re.findall(r"\$\{SEARCHD_DB_PASSWORD:-([^}]*)\}", raw) == ["local-only-password"] * 2  # a placeholder, overridable
    services = compose()["services"]
    db = services["db"]["environment"]
    for name in ("searchd-1", "searchd-2"):
        url = urlsplit(services[name]["environment"]["DATABASE_URL"])
        assert (url.scheme, url.username, url.password, url.hostname, url.port, url.path) == (
            "postgresql", db["POSTGRES_USER"], db["POSTGRES_PASSWORD"], "db", 5432, f"/{db['POSTGRES_DB']}"
        )
        assert len(services[name]["environment"]["SEARCHD_ADMIN_KEY"]) >= 16  # what server.auth requires of a key


# -- Kubernetes ----------------------------------------------------------------------------------------------------


def manifests() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    listed = kustomization["resources"]
    assert sorted(listed) == sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml"), "kustomization.yaml must list every manifest"
    return [document for name in listed for document in yaml.safe_load_all((K8S / name).read_text(encoding="utf-8"))]


def by_kind(kind: str) -> dict[str, Any]:
    [found] = [m for m in manifests() if m["kind"] == kind]
    return found


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_the_manifests_are_valid_kubernetes_objects(version: str) -> None:
    kinds = []
    for manifest in manifests():
        kubernetes_validate.validate(manifest, version, strict=True)  # strict: an unknown field is an error too
        kinds.append(manifest["kind"])
    assert sorted(kinds) == ["ConfigMap", "Deployment", "PodDisruptionBudget", "Service"]


def test_the_validation_catches_a_broken_manifest() -> None:
    broken = by_kind("Deployment")
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["paht"] = "/v1/.well-known/ready"
    with pytest.raises(kubernetes_validate.ValidationError, match="paht"):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[0], strict=True)


def test_the_deployment_runs_three_probed_replicas_that_roll_without_downtime() -> None:
    deployment = by_kind("Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 3
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    pod = spec["template"]["spec"]
    [container] = pod["containers"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    args = build_parser().parse_args(image_command()[1:])
    assert ports == {"http": args.port, "grpc": args.grpc_port}
    assert container["readinessProbe"]["httpGet"] == {"path": "/v1/.well-known/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/v1/.well-known/live", "port": "http"}
    assert set(container["resources"]["requests"]) == {"cpu", "memory"}
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert mounts[args.config] == "config" and volumes["config"]["configMap"]["name"] == by_kind("ConfigMap")["metadata"]["name"]
    assert "emptyDir" in volumes[mounts[args.data]]
    assert "emptyDir" in volumes[mounts["/tmp"]] and container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert str(pod["securityContext"]["runAsUser"]) == one(dockerfile(), "USER").split(":")[0]


def test_secrets_are_referenced_never_written() -> None:
    [container] = by_kind("Deployment")["spec"]["template"]["spec"]["containers"]
    env = {variable["name"]: variable for variable in container["env"]}
    assert set(env) == set(EXAMPLE_ENV), "the Deployment sets what the example config reads from the environment"
    for variable in env.values():
        assert set(variable) == {"name", "valueFrom"} and set(variable["valueFrom"]) == {"secretKeyRef"}, variable
    every_manifest = "".join(p.read_text(encoding="utf-8") for p in K8S.glob("*.yaml"))
    assert "postgresql://" not in every_manifest.replace("# postgresql://searchd:…@db:5432/searchd", "")
    assert "kind: Secret" not in every_manifest


def test_the_service_reaches_both_ports_of_the_ready_pods() -> None:
    service = by_kind("Service")["spec"]
    pod = by_kind("Deployment")["spec"]["template"]
    assert service["selector"].items() <= pod["metadata"]["labels"].items()
    assert {(port["name"], port["targetPort"]) for port in service["ports"]} == {("http", "http"), ("grpc", "grpc")}
    disruption = by_kind("PodDisruptionBudget")["spec"]
    assert disruption["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()


def test_the_configmap_holds_the_example_config_word_for_word() -> None:
    data = by_kind("ConfigMap")["data"]
    assert data == {"searchd.yaml": (EXAMPLE / "searchd.yaml").read_text(encoding="utf-8")}


# -- examples/replicas ---------------------------------------------------------------------------------------------


def validate(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in child_env().items() if k not in EXAMPLE_ENV} | env
    return subprocess.run([*searchd_module(), "validate", str(EXAMPLE)], capture_output=True, text=True, env=environment, timeout=60, check=False)


def test_the_example_config_validates_with_its_environment_and_names_what_is_missing_without() -> None:
    done = validate(EXAMPLE_ENV)
    assert (done.returncode, done.stdout) == (0, f"{EXAMPLE}: valid (1 collection(s): Article)\n"), done.stderr
    done = validate({})
    assert done.returncode == 1
    assert "environment variable DATABASE_URL is not set" in done.stdout
    assert "environment variable SEARCHD_ADMIN_KEY is not set" in done.stdout


@pytest.fixture
def database_url(pg_cluster: pgcluster.Cluster) -> Iterator[str]:
    """A database of the tests' PostgreSQL, dropped after the servers on it have stopped (ask for it before start_server)."""
    database = pg_cluster.new_database()
    yield pg_cluster.url(database)
    pg_cluster.drop_database(database)


def test_the_example_serves_on_postgresql_as_the_deployment_runs_it(
    database_url: str, start_server: StartServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("SEARCHD_ADMIN_KEY", EXAMPLE_ENV["SEARCHD_ADMIN_KEY"])
    # The image's command, but on loopback ports of this machine (start_server adds --host, --port and --grpc-port 0).
    args = build_parser().parse_args(image_command()[1:])
    server = start_server(EXAMPLE, tmp_path / "data", "--log-format", args.log_format)
    admin = {"Authorization": f"Bearer {EXAMPLE_ENV['SEARCHD_ADMIN_KEY']}"}
    rows = [("Sourdough bread", "feed the starter and bake", ["baking"]), ("Rye loaf", "dense and sour", ["baking"]), ("Bicycle repair", "fix a flat tyre", ["cycling"])]
    objects = [
        {"class": "Article", "id": f"00000000-0000-4000-8000-00000000000{i}", "properties": {"title": title, "body": body, "tags": tags}}
        for i, (title, body, tags) in enumerate(rows, start=1)
    ]
    with httpx.Client(base_url=server.url, timeout=30, trust_env=False) as http:
        refused = http.post("/v1/batch/objects", json={"objects": objects})
        assert refused.status_code == 401, refused.text  # the example declares an admin key: no anonymous writes
        stored = http.post("/v1/batch/objects", json={"objects": objects}, headers=admin)
        assert [r["result"]["status"] for r in stored.json()] == ["SUCCESS"] * 3, stored.text
        query = '{ Get { Article(bm25: {query: "sourdough starter"}) { title } } }'
        body = http.post("/v1/graphql", json={"query": query}, headers=admin).json()
        assert body == {"data": {"Get": {"Article": [{"title": "Sourdough bread"}]}}}, body
        query = '{ Get { Article(nearText: {concepts: ["flat tyre repair"]}, limit: 1) { title } } }'
        body = http.post("/v1/graphql", json={"query": query}, headers=admin).json()
        assert body == {"data": {"Get": {"Article": [{"title": "Bicycle repair"}]}}}, body
    # The objects are in the database the URL names, not in the data directory.
    with psycopg.connect(database_url) as db:
        ((tag,),) = db.execute("SELECT tag FROM searchd_collections WHERE name = 'Article'").fetchall()
        assert db.execute(f"SELECT count(*) FROM searchd_o{tag}").fetchall() == [(3,)]
    assert not (tmp_path / "data" / "objects.sqlite3").exists()
