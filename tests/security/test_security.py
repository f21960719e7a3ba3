"""Security: private files, a socket nobody else can reach, no TCP listener, secrets that
never reach output, logs or errors, and Cypher only from the statement files.

The home holds radiology reports (health data): docs/security.md gives the threat model
these tests check."""

from __future__ import annotations

import ast
import json
import os
import re
import socket
import stat
import threading
from pathlib import Path

import pytest

from tests.reliability.helpers import ROOT, env_for, kgrag

GRAPH_PW = "graphPW-SENTINEL-91c2e7"
SECRETS = {
    "KGRAG_NEO4J__PASSWORD": "neo4jPW-SENTINEL-40d1",
    "KGRAG_EXTRACTOR__API_KEY": "apikey-SENTINEL-77aa",
    "KGRAG_FALKORDB__PASSWORD": "falkorPW-SENTINEL-5b3f",
}
ALL_SECRETS = [GRAPH_PW, *SECRETS.values()]


@pytest.fixture(scope="module")
def cli_home(tmp_path_factory):
    """A home built only through the command line (umask 077), every command run once
    with secrets in the environment and a known graph password; all output kept."""
    tmp = tmp_path_factory.mktemp("sec")
    home = tmp / "home"
    (home / "graph").mkdir(parents=True, mode=0o700)
    os.chmod(home, 0o700)
    fd = os.open(home / "graph" / "password", os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, (GRAPH_PW + "\n").encode())
    os.close(fd)
    env = env_for(home, **SECRETS)
    out: dict[str, object] = {}

    def run(name, *args, stdin=None, ok=True):
        import subprocess
        import sys

        r = subprocess.run([sys.executable, "-m", "kgrag", *args], capture_output=True, text=True, env=env,
                           input=stdin, timeout=300, cwd=ROOT)
        if ok:
            assert r.returncode == 0, f"{name}: {r.stderr[-3000:]}"
        out[name] = r
        return r

    corpus = tmp / "corpus"
    bad_cache = tmp / "cache"
    bad_cache.mkdir()
    (bad_cache / "torchxrayvision-1.5.7-py3-none-any.whl").write_bytes(b"not a zip")
    try:
        run("synth", "synth", str(corpus), "--n", "80", "--seed", "3", "--json")
        run("doctor --no-start", "doctor", "--json", "--no-start", ok=False)
        run("db start", "-vv", "db", "start", "--json")
        run("db status", "-vv", "db", "status", "--json")
        run("ingest", "-vv", "ingest", str(corpus / "manifest.jsonl"), "--json")
        run("extract", "-v", "extract", "--json", stdin="No pleural effusion.\nMild cardiomegaly.\n")
        run("kg build", "-v", "kg", "build", "--json")
        edges = json.loads(run("kg show", "-v", "kg", "show", "--json").stdout)["edges"]
        run("kg export", "kg", "export", str(tmp / "g.json"))
        run("kg import", "kg", "import", str(tmp / "g.json"), "--json")
        run("curate export", "curate", "export", str(tmp / "e.csv"))
        run("curate import", "-v", "curate", "import", str(tmp / "e.csv"), "--json")
        run("curate set", "curate", "set", edges[0]["src"], edges[0]["dst"], "--status", "accepted", "--by", "ana",
            "--json")
        run("curate set (error)", "-vv", "curate", "set", "nope", "nada", "--status", "accepted", "--by", "x", ok=False)
        run("audit", "audit", "--json", "--html", str(tmp / "audit.html"), ok=False)
        run("train", "-v", "train", "--epochs", "1", "--batch-size", "16", "--no-progress", "--json")
        run("index build", "-v", "index", "build", "--no-progress", "--json")
        run("index info", "index", "info", "--json")
        run("query", "-v", "query", "--findings", "Right lower lobe consolidation.", "--question",
            "Is there pneumonia?", "--json")
        run("fetch (error)", "fetch", "iu-xray", str(tmp / "iu"), "--cache", str(bad_cache), "--json", ok=False)
        run("eval", "-v", "eval", str(corpus / "manifest.jsonl"), "--task", "retrieval", "--json",
            "--out", str(tmp / "eval"))
        (tmp / "not-a-model").mkdir()
        run("finetune (error)", "-v", "finetune", "--model-path", str(tmp / "not-a-model"), ok=False)
        run("doctor", "-vv", "doctor", "--json")
        run("db stop", "db", "stop", "--json")
        yield home, tmp, out
    finally:
        kgrag(home, "db", "stop")


def test_every_command_ran(cli_home):
    from kgrag.cli import COMMANDS

    _, _, out = cli_home
    covered = {name.split()[0] for name in out}
    assert set(COMMANDS) <= covered, set(COMMANDS) - covered
    for name in ("curate set (error)", "fetch (error)", "finetune (error)"):
        r = out[name]
        assert r.returncode != 0 and "Traceback" not in r.stderr and "fix:" in r.stderr, (name, r.stderr[-2000:])


def test_secrets_never_reach_output_logs_or_errors(cli_home):
    home, tmp, out = cli_home
    for name, r in out.items():
        for s in ALL_SECRETS:
            assert s not in r.stdout and s not in r.stderr, f"{name} printed a secret ({s[:8]}...)"
    # nor any file kgrag writes besides the password and the server config that needs it
    allowed = {home / "graph" / "password", home / "graph" / "falkordb.conf"}
    for p in [*home.rglob("*"), *tmp.glob("*.json"), *tmp.glob("*.csv"), tmp / "audit.html"]:
        if p in allowed or not p.is_file() or p.is_socket():
            continue
        data = p.read_bytes()
        for s in ALL_SECRETS:
            assert s.encode() not in data, f"{p} holds a secret ({s[:8]}...)"


def test_home_and_file_modes(cli_home):
    home, tmp, _ = cli_home
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    wide = []
    for p in [home, *home.rglob("*")]:
        mode = stat.S_IMODE(p.lstat().st_mode)
        if p.is_symlink():
            continue
        if mode & 0o077:
            wide.append(f"{p.relative_to(home)} {mode:04o}")
    assert not wide, wide
    for p in (home / "docstore.sqlite", home / "graph" / "password", tmp / "e.csv"):
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
    from kgrag.config import load_settings
    from kgrag.doctor import check_home_modes

    assert check_home_modes(load_settings(home)).status == "ok"


def _tcp_listen_inodes() -> set[str]:
    inodes = set()
    for f in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(f).read_text().splitlines()[1:]
        except OSError:
            continue
        for ln in lines:
            parts = ln.split()
            if parts[3] == "0A":  # LISTEN
                inodes.add(parts[9])
    return inodes


def _socket_inodes(pid: int) -> set[str]:
    out = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            t = os.readlink(fd)
        except OSError:
            continue
        if t.startswith("socket:["):
            out.add(t[8:-1])
    return out


def test_no_tcp_listener(tmp_path):
    from kgrag.graph.falkordb_server import EmbeddedFalkorDB

    srv = EmbeddedFalkorDB(tmp_path / "graph")
    srv.start()
    try:
        pids = srv.server_pids()
        assert pids
        for pid in pids:
            assert _socket_inodes(pid) and not (_socket_inodes(pid) & _tcp_listen_inodes())
        conf = srv.conf_path.read_text()
        assert "port 0" in conf.splitlines() and "bolt" not in conf.lower()
        assert stat.S_IMODE(srv.socket_path.stat().st_mode) == 0o700 and srv.socket_path.is_socket()
    finally:
        srv.stop()


# -- the socket folder of a deep home ------------------------------------------------------
def _deep(tmp_path: Path) -> Path:
    home = tmp_path / ("d" * 60) / ("e" * 60) / "home"
    assert len(str(home / "graph" / "kg.sock")) > 108
    return home


class _Trap:
    """A Unix socket that records whatever a client sends it (an attacker's listener)."""

    def __init__(self, path: Path) -> None:
        self.got = b""
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(5)
        self.sock.settimeout(0.2)
        self._stop = False
        self.t = threading.Thread(target=self._serve, daemon=True)
        self.t.start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            c.settimeout(1)
            try:
                self.got += c.recv(65536)
            except OSError:
                pass
            c.close()

    def close(self) -> None:
        self._stop = True
        self.t.join(2)
        self.sock.close()


def test_deep_home_socket_folder_is_private_and_checked(tmp_path):
    import shutil

    home = _deep(tmp_path)
    st = json.loads(kgrag(home, "db", "start", "--json", check=True).stdout)
    sock_dir = Path(st["socket"]).parent
    try:
        assert sock_dir != home / "graph" and len(st["socket"]) <= 100
        info = sock_dir.lstat()
        assert stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) == 0o700
        assert stat.S_IMODE((home / "graph" / "socket_dir").stat().st_mode) == 0o600
        # the legacy guessable name is not used: pre-creating it captures nothing
        import hashlib
        import tempfile

        legacy = Path(tempfile.gettempdir()) / (
            f"kgrag-{os.getuid()}-" + hashlib.sha256(str((home / "graph").absolute()).encode()).hexdigest()[:16])
        assert sock_dir != legacy
    finally:
        kgrag(home, "db", "stop", check=True)

    password = (home / "graph" / "password").read_text().strip().encode()
    evil = tmp_path / "evil"
    evil.mkdir(mode=0o777)
    os.chmod(evil, 0o777)
    trap = _Trap(evil / "kg.sock")
    try:
        for how in ("symlink", "foreign owner", "open mode"):
            shutil.rmtree(sock_dir, ignore_errors=True)
            if sock_dir.is_symlink():
                sock_dir.unlink()
            if how == "symlink":
                sock_dir.symlink_to(evil)
                needle = "symbolic link"
            else:
                sock_dir.mkdir(mode=0o700)
                os.chmod(sock_dir, 0o755 if how == "open mode" else 0o700)
                if how == "foreign owner":
                    os.chown(sock_dir, 65534, 65534)
                needle = "owned by uid 65534" if how == "foreign owner" else "mode 0755"
                trap2 = _Trap(sock_dir / "kg.sock")
            for args in (["db", "status", "--json"], ["kg", "show"], ["db", "start"]):
                r = kgrag(home, *args)
                assert r.returncode != 0 and "Traceback" not in r.stderr, (how, args, r.stderr[-2000:])
                assert needle in r.stderr and "will not send its password" in r.stderr, (how, r.stderr)
            if how != "symlink":
                trap2.close()
                assert password not in trap2.got and b"AUTH" not in trap2.got, how
        assert trap.got == b"", trap.got[:100]
    finally:
        trap.close()
        if sock_dir.is_symlink():
            sock_dir.unlink()
        shutil.rmtree(sock_dir, ignore_errors=True)


# -- Cypher only from files -----------------------------------------------------------------
_CYPHER = re.compile(r"\b(MATCH|MERGE)\s*\(|\bCREATE\s*(\(|INDEX\s+FOR\b|CONSTRAINT\b)|\bUNWIND\s+\S+\s+AS\b"
                     r"|\bDETACH\s+DELETE\b|\bCALL\s+db\.|\bRETURN\s+(count\(|[a-z]\w*\.|\$|\*|[a-z]\w*\s+AS\b)"
                     r"|\bSET\s+[a-z]\w*\.\w+\s*=")


def string_built_cypher(source: str, name: str = "<src>") -> list[str]:
    """String literals and f-strings in ``source`` (docstrings aside) that hold Cypher."""
    tree = ast.parse(source)
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    docs |= {id(v) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr) for v in n.values}  # f-string parts
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            text = node.value
        elif isinstance(node, ast.JoinedStr):
            text = "".join(v.value if isinstance(v, ast.Constant) else "{x}" for v in node.values)
        else:
            continue
        if _CYPHER.search(text):
            hits.append(f"{name}:{node.lineno}: {text[:80]!r}")
    return hits


def test_cypher_is_built_only_from_the_statement_files():
    pkg = ROOT / "kgrag"
    hits = []
    for f in sorted(pkg.rglob("*.py")):
        if (pkg / "cypher") in f.parents and f.name != "__init__.py":
            continue
        hits += string_built_cypher(f.read_text(encoding="utf-8"), str(f.relative_to(ROOT)))
    assert hits == [], "Cypher written in Python (put it in kgrag/cypher/*.cypher):\n" + "\n".join(hits)
    # the check can fail
    bad = 'q = f"MATCH (c:Concept {{id: \'{cid}\'}}) RETURN c"\nr = "MERGE (a)-[:CAUSES]->(b)"\n'
    assert len(string_built_cypher(bad)) == 2
    assert string_built_cypher('"""MERGE (:Concept {id}) in a docstring is prose."""\nx = "MATCH me"\n') == []
