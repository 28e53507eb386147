"""The production image and compose file, checked statically (no Docker daemon on CI machines).

The Dockerfile is parsed into stages and instructions; the checks are the promises of
docs/security.md: multi-stage, hash-checked locked dependencies, a non-root numeric user,
read-only-root friendly, a HEALTHCHECK on /healthz, no secret baked in, and nothing but the
needed files in the build context. The compose file runs Redis with persistence and the gateway
read-only, unprivileged, with time to finish answers on shutdown.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "docker" / "Dockerfile"
SECRET_NAME = re.compile(r"(?i)(token|secret|password|passwd|api_?key|credential|private)")


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


def parse_dockerfile(text: str) -> list[list[Instruction]]:
    """Stages (each starting with its FROM) of instructions, continuations joined, comments dropped."""
    logical: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            current += line[:-1].rstrip() + " "
            continue
        logical.append(current + line)
        current = ""
    stages: list[list[Instruction]] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        instruction = Instruction(keyword.upper(), args.strip())
        if instruction.keyword == "FROM":
            stages.append([])
        assert stages, f"instruction before FROM: {line}"
        stages[-1].append(instruction)
    return stages


@pytest.fixture(scope="module")
def stages() -> list[list[Instruction]]:
    return parse_dockerfile(DOCKERFILE.read_text())


def final(stages: list[list[Instruction]], keyword: str) -> list[str]:
    return [i.args for i in stages[-1] if i.keyword == keyword]


def test_the_parser_reads_continuations_and_comments() -> None:
    parsed = parse_dockerfile("# c\nFROM a AS b\nRUN x \\\n  # inside\n  && y\nFROM c\nUSER 1\n")
    assert [[(i.keyword, i.args) for i in s] for s in parsed] == [
        [("FROM", "a AS b"), ("RUN", "x && y")], [("FROM", "c"), ("USER", "1")]]


def test_the_image_is_multi_stage_and_runs_what_the_project_requires(stages: list[list[Instruction]]) -> None:
    assert len(stages) >= 2
    base = stages[-1][0].args
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert re.fullmatch(r"python:3\.\d+-slim", base), base
    assert requires == ">=3.11" and base.startswith("python:3.11")
    # The runtime stage installs from the build stage's wheels, offline, and builds nothing itself.
    runs = " ".join(final(stages, "RUN"))
    assert "--no-index" in runs and "gcc" not in runs and "apt-get install" not in runs
    assert any(a.startswith("--from=") for a in final(stages, "COPY"))


def test_dependencies_are_the_locked_ones_with_hashes_checked(stages: list[list[Instruction]]) -> None:
    build_runs = [i.args for s in stages[:-1] for i in s if i.keyword == "RUN"]
    assert any("--require-hashes" in r and "-r requirements.lock" in r for r in build_runs)


def test_it_runs_as_an_unprivileged_numeric_user(stages: list[list[Instruction]]) -> None:
    users = final(stages, "USER")
    assert users, "no USER in the final stage: the gateway would run as root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) >= 1000  # numeric: Kubernetes runAsNonRoot can verify it
    keywords = [i.keyword for i in stages[-1]]
    last_user = len(keywords) - 1 - keywords[::-1].index("USER")
    assert "RUN" not in keywords[last_user:]  # nothing after it runs as root either


def test_it_is_friendly_to_a_read_only_root_filesystem(stages: list[list[Instruction]]) -> None:
    env = " ".join(final(stages, "ENV"))
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    volumes = [v for args in final(stages, "VOLUME") for v in json.loads(args)]
    workdir = final(stages, "WORKDIR")[-1]
    assert workdir in volumes  # relative state paths (the SQLite default) land on the volume


def test_it_has_a_healthcheck_on_healthz_and_exec_form_entrypoint(stages: list[list[Instruction]]) -> None:
    checks = final(stages, "HEALTHCHECK")
    assert len(checks) == 1 and "/healthz" in checks[0] and "CMD" in checks[0]
    assert json.loads(final(stages, "ENTRYPOINT")[-1]) == ["switchboard"]  # exec form: gets SIGTERM itself
    assert json.loads(final(stages, "CMD")[-1]) == ["serve"]
    assert final(stages, "EXPOSE") == ["8080"]


def test_no_secret_is_baked_into_the_image(stages: list[list[Instruction]]) -> None:
    for stage in stages:
        for instruction in stage:
            if instruction.keyword in ("ENV", "ARG", "LABEL"):
                for name in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", instruction.args):
                    assert not SECRET_NAME.search(name), instruction
            if instruction.keyword in ("COPY", "ADD"):
                assert not re.search(r"\.env\b|secret|\.pem|\.key\b|id_rsa", instruction.args), instruction
            assert instruction.keyword != "ADD" or "://" not in instruction.args  # no unverified downloads


def test_every_copied_path_exists_and_is_the_only_thing_in_the_build_context(stages: list[list[Instruction]]) -> None:
    ignore = (ROOT / "docker" / "Dockerfile.dockerignore").read_text().splitlines()
    rules = [r.strip() for r in ignore if r.strip() and not r.startswith("#")]
    assert rules[0] == "*"  # everything is excluded, then the needed paths let back in
    allowed = {r[1:] for r in rules if r.startswith("!")}
    for stage in stages:
        for instruction in stage:
            if instruction.keyword != "COPY" or instruction.args.startswith("--from="):
                continue
            *sources, _ = instruction.args.split()
            for source in sources:
                assert (ROOT / source).exists(), source
                assert source in allowed, f"{source} is copied but excluded from the build context"


def test_the_lock_pins_every_runtime_dependency_with_hashes() -> None:
    lock = (ROOT / "requirements.lock").read_text()
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", lock, flags=re.M))
    pins = {canonicalize_name(k): v for k, v in pins.items()}
    entries = re.split(r"\n(?=[A-Za-z0-9])", lock.split("\n\n", 1)[-1] if "\n\n" in lock else lock)
    for entry in entries:
        if re.match(r"[A-Za-z0-9]", entry):
            assert "--hash=sha256:" in entry, entry.splitlines()[0]
    for spec in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]:
        requirement = Requirement(spec)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is a dependency but not in requirements.lock (regenerate it)"
        assert requirement.specifier.contains(pins[name]), f"{name}=={pins[name]} does not satisfy {spec}"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())


def test_redis_persists_and_is_not_published(compose: dict) -> None:
    redis = compose["services"]["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert any(v.endswith(":/data") for v in redis["volumes"])
    assert "redis-data" in compose["volumes"]
    assert "ports" not in redis
    assert redis["healthcheck"]["test"][-1] == "ping"


def test_the_gateway_runs_read_only_unprivileged_and_waits_for_redis(compose: dict) -> None:
    gateway = compose["services"]["gateway"]
    assert gateway["read_only"] is True
    assert "/tmp" in gateway["tmpfs"]
    assert gateway["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in gateway["security_opt"]
    assert gateway["depends_on"]["redis"]["condition"] == "service_healthy"
    assert gateway["build"]["dockerfile"] == "docker/Dockerfile"
    assert gateway["environment"]["SWITCHBOARD_STORE"].startswith("redis://redis:6379/")
    # docker stop waits this long before SIGKILL: longer than the gateway's own shutdown grace.
    from gateway.config import GatewaySettings

    grace = float(gateway["stop_grace_period"].rstrip("s"))
    assert grace > GatewaySettings().shutdown_grace


def test_compose_holds_no_secret_values(compose: dict) -> None:
    for name, service in compose["services"].items():
        environment = service.get("environment", {})
        for key, value in environment.items():
            if SECRET_NAME.search(key):
                assert re.fullmatch(r"\$\{[A-Z0-9_]+\}", str(value)), f"{name}.{key} holds a literal secret"
        for value in environment.values():
            assert "@" not in str(value).split("://", 1)[-1].split("/")[0]  # no credentials in URLs
