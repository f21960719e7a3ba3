"""docker/: compose.yml (services, healthcheck, env wiring, no secrets), the Dockerfile
(base image, non-root user, offline model hub) and the ignore file that keeps private
data out of the build context."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCKER = Path(__file__).resolve().parents[3] / "docker"
REF = re.compile(r"^\$\{[A-Z0-9_]+(:?[-?][^}]*)?\}$")  # ${VAR}, ${VAR:-default}, ${VAR:?message}


@pytest.fixture(scope="module")
def compose():
    yaml = pytest.importorskip("yaml")
    return yaml.safe_load((DOCKER / "compose.yml").read_text())


def _env(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(x.split("=", 1) for x in env)
    return {k: str(v) for k, v in env.items()}


def test_compose_services_and_healthcheck(compose):
    services = compose["services"]
    assert set(services) == {"neo4j", "kgrag"}
    hc = services["neo4j"]["healthcheck"]
    assert hc["test"] and hc["retries"] >= 1 and hc["interval"]
    assert services["kgrag"]["depends_on"]["neo4j"]["condition"] == "service_healthy"
    assert services["kgrag"]["build"] == {"context": "..", "dockerfile": "docker/Dockerfile"}
    for port in services["neo4j"].get("ports", []):
        assert str(port).startswith("127.0.0.1:"), f"{port} would listen on every interface"


def test_compose_wires_kgrag_to_neo4j(compose):
    env = _env(compose["services"]["kgrag"])
    assert env["KGRAG_GRAPH__BACKEND"] == "neo4j"
    assert re.fullmatch(r"(neo4j|bolt)://neo4j:7687", env["KGRAG_NEO4J__URI"])  # the service name, no userinfo
    assert env["HF_HUB_OFFLINE"] == "1" and env["KGRAG_HOME"].startswith("/data")
    # both containers read the password from the caller's environment
    assert REF.match(env["KGRAG_NEO4J__PASSWORD"])
    auth = _env(compose["services"]["neo4j"])["NEO4J_AUTH"]
    assert re.fullmatch(r"neo4j/\$\{KGRAG_NEO4J__PASSWORD(:\?[^}]*)?\}", auth), auth


def test_compose_holds_no_secret(compose):
    for name, service in compose["services"].items():
        for key, value in _env(service).items():
            if re.search(r"PASS|SECRET|TOKEN|KEY|AUTH", key):
                tail = value.split("/", 1)[-1] if key == "NEO4J_AUTH" else value
                assert REF.match(tail), f"{name}.{key} holds a literal value"
    text = (DOCKER / "compose.yml").read_text()
    assert not re.search(r"://[^/\s:@]+:[^/\s@]+@", text), "a URI with a password"


def _instructions() -> list[tuple[str, str]]:
    out, cont = [], ""
    for line in (DOCKER / "Dockerfile").read_text().splitlines():
        if line.strip().startswith("#") or not line.strip():
            continue
        cont += line.rstrip("\\").strip() + " "
        if not line.rstrip().endswith("\\"):
            op, _, rest = cont.strip().partition(" ")
            out.append((op.upper(), rest))
            cont = ""
    return out


def test_dockerfile_base_user_and_offline_hub():
    ins = _instructions()
    assert ins[0] == ("FROM", "python:3.11-slim")
    users = [i for i, (op, _) in enumerate(ins) if op == "USER"]
    assert users, "the image runs as root"
    last_user = ins[users[-1]][1].split(":")[0]
    assert last_user not in ("root", "0")
    assert all(op != "RUN" for op, _ in ins[users[-1]:]), "RUN steps after USER would need root"
    env = " ".join(rest for op, rest in ins if op == "ENV")
    assert "HF_HUB_OFFLINE=1" in env and "TRANSFORMERS_OFFLINE=1" in env
    runs = " ".join(rest for op, rest in ins if op == "RUN")
    assert "torchvision" not in runs and "download.pytorch.org/whl/cpu" in runs


def test_dockerignore_keeps_private_and_bulky_paths_out():
    ignore = DOCKER / ".dockerignore"
    patterns = {ln.strip() for ln in ignore.read_text().splitlines() if ln.strip() and not ln.startswith("#")}
    for p in (".venv", "demo_out", ".kgrag", "data", ".env"):
        assert p in patterns, p
    # BuildKit reads the ignore file named after the Dockerfile (the context is the repo root)
    link = DOCKER / "Dockerfile.dockerignore"
    assert link.resolve() == ignore.resolve()
