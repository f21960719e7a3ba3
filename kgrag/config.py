"""Typed settings: env prefix ``KGRAG_`` with ``__`` nesting, plus ``$KGRAG_HOME/kgrag.toml``.

Precedence (highest first): explicit overrides passed to :func:`load_settings`,
environment variables (``KGRAG_GRAPH__BACKEND=neo4j``), ``.env`` in the working
directory, ``kgrag.toml`` in the home, defaults. Nothing is read at import time.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from kgrag.errors import ConfigError

#: Spaces of up to this many studies get an exact (flat) FAISS index; larger ones HNSW.
FLAT_INDEX_MAX = 20_000

DEFAULT_HOME = Path(".kgrag")

_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/\s]*)@")


def redact_uri(uri: Any) -> Any:
    """``uri`` with any ``user:password@`` part masked (``neo4j://***@host:7687``), in a
    URI or in a message quoting one; every URI kgrag shows goes through this."""
    if not isinstance(uri, str):
        return uri
    return _USERINFO.sub(lambda m: f"{m.group('scheme')}***@", uri)


class FalkorDBSettings(BaseModel):
    url: str | None = Field(
        default=None,
        description="External FalkorDB (redis://[:password@]host:port or unix:///path.sock). "
        "Unset: kgrag runs its own embedded server under $KGRAG_HOME/graph.",
    )
    password: SecretStr | None = Field(default=None, description="Password for an external server.")
    start_timeout_s: float = 20.0
    maxmemory: str | None = None


class Neo4jSettings(BaseModel):
    uri: str = "neo4j://localhost:7687"
    user: str = "neo4j"
    password: SecretStr = SecretStr("")
    database: str | None = None
    connect_timeout_s: float = 5.0
    max_retry_time_s: float = 15.0


class GraphSettings(BaseModel):
    backend: Literal["falkordb", "neo4j"] = "falkordb"
    name: str = Field(default="kgrag", description="Graph (FalkorDB key) name.")
    batch_size: int = Field(default=1000, ge=1, le=100_000)

    @field_validator("name")
    @classmethod
    def _name_ok(cls, v: str) -> str:
        if not v.replace("_", "").replace("-", "").isalnum():
            raise ValueError("graph name must be alphanumeric, '-' or '_'")
        return v


class KGSettings(BaseModel):
    tau: float = Field(default=0.7, gt=0.0, le=1.0, description="Retention ratio (MCRAG).")
    ci_alpha: float = Field(default=0.05, gt=0.0, lt=1.0, description="CI-test significance.")
    correction: Literal["holm", "bh", "none"] = "holm"
    min_support: int = Field(default=5, ge=1, description="Minimum co-occurrences for an edge.")
    default_leak: float = Field(default=0.01, gt=0.0, lt=1.0)
    max_path_len: int = Field(default=3, ge=1, le=3)
    uncertain_as: Literal["ignore", "present", "absent"] = "ignore"
    provenance_sample: int = Field(default=20, ge=0)
    drift_threshold: float = Field(default=0.1, ge=0.0)


class RetrievalSettings(BaseModel):
    alpha: float = Field(default=0.5, ge=0.0, le=1.0)
    k: int = Field(default=10, ge=1)
    n: int = Field(default=50, ge=1, description="Stage-1 candidates before rerank.")
    rerank: Literal["causal", "pagerank", "none"] = "causal"
    causal_normalize: Literal["sum", "mean", "lift"] = Field(
        default="mean",
        description="How the causal rerank folds a report's log pG terms: their sum, their mean per asserted "
        "concept, or the lift log pG(R | V_I) - log pG(R | no image) (docs/causal.md gives the measurement "
        "behind the default).")
    damping: float = Field(default=0.85, gt=0.0, lt=1.0)
    reward_filter: bool = Field(
        default=True,
        description="Drop contexts whose reward is below the threshold (MMedRAG++ RAG-PRM filter). "
        "The threshold is the one trained with the model (per query kind) unless reward_threshold is set.")
    reward_threshold: float | None = Field(
        default=None, description="Override the trained reward threshold (unset: use the model's own).")
    flat_index_max: int = Field(default=FLAT_INDEX_MAX, ge=1)


class ModelSettings(BaseModel):
    text_encoder: str = "all-MiniLM-L6-v2"
    device: str = "cpu"
    seed: int = 13
    embed_dim: int = 256
    unmentioned_as: Literal["absent", "masked"] = Field(
        default="absent",
        description="Findings-head label of a concept the report does not mention (absent = 0, or masked "
        "out of the loss); present = 1, absent = 0 and uncertain masked always.")
    min_findings_auc: float = Field(
        default=0.6, ge=0.0, le=1.0,
        description="A head concept with val AUC below this is left out of V_I (the head cannot see it).")
    calibration: Literal["platt", "temperature"] = Field(
        default="platt", description="Per-concept calibration of the findings head, fitted on val.")
    balance_by: str | None = Field(
        default=None,
        description="Study metadata key (site, scanner, ...) whose association with each finding the findings "
        "head's loss removes by reweighting, w = P(y) / P(y | key) (a backdoor adjustment: a burned-in site "
        "marker cannot stand in for the disease).  Studies without the key form one group; a corpus with one "
        "group trains unweighted.  Off by default: on the synthetic shift corpus it lowered the head's "
        "out-of-style AUC (docs/retrieval.md).")


class ExtractorSettings(BaseModel):
    kind: Literal["rules", "openai"] = "rules"
    base_url: str | None = None
    model: str | None = None
    api_key: SecretStr | None = None
    timeout_s: float = 30.0
    retries: int = 2


class IngestSettings(BaseModel):
    max_report_chars: int = Field(default=20_000, ge=100)
    workers: int = Field(default=1, ge=1)
    max_image_pixels: int = Field(
        default=40_000_000, ge=1,
        description="Images with more pixels (width x height) are refused before decoding.")


class GenerationSettings(BaseModel):
    """The answer/report writer (``kgrag query --generator``; docs/generation.md)."""

    kind: Literal["grounded", "transformers", "http"] = Field(
        default="grounded", description="grounded (offline, default), transformers (local model) or http (OpenAI-compatible)."
    )
    model_path: Path | None = Field(default=None, description="Local transformers model (or kgrag finetune output) directory.")
    base_url: str | None = Field(default=None, description="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1.")
    model: str | None = Field(default=None, description="Model name sent to the server.")
    api_key: SecretStr | None = Field(default=None, description="Bearer key for the server; never logged.")
    send_images: bool = Field(default=False, description="Send the query images as data URLs (the server's model takes images).")
    max_new_tokens: int = Field(default=256, ge=1, le=8192)
    device: str = Field(default="auto", description="auto (CUDA when present), cpu, cuda, cuda:1 ...")
    timeout_s: float = Field(default=60.0, gt=0.0)
    retries: int = Field(default=2, ge=0, le=10)
    backoff_s: float = Field(default=0.5, ge=0.0, description="First retry delay; doubles per retry (429/5xx/timeouts).")
    ifa_lambda: float = Field(default=0.0, ge=0.0, description="MR-RAG IFA strength; 0 leaves attention untouched.")
    ifa_layers: list[int] | None = Field(default=None, description="Decoder layers IFA biases (negative counts from the end); unset: all.")
    causal_weight: float = Field(default=0.7, ge=0.0, le=1.0, description="Grounded closed answers: weight of P(c | V_I) against the evidence vote.")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="KGRAG_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
    )

    home: Path = DEFAULT_HOME
    log_level: str = "WARNING"
    graph: GraphSettings = GraphSettings()
    falkordb: FalkorDBSettings = FalkorDBSettings()
    neo4j: Neo4jSettings = Neo4jSettings()
    kg: KGSettings = KGSettings()
    retrieval: RetrievalSettings = RetrievalSettings()
    models: ModelSettings = ModelSettings()
    extractor: ExtractorSettings = ExtractorSettings()
    ingest: IngestSettings = IngestSettings()
    generation: GenerationSettings = GenerationSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = _toml_path_var.get()
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings, dotenv_settings]
        if toml is not None and toml.is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml))
        return tuple(sources)

    # -- derived paths -------------------------------------------------------
    @property
    def graph_dir(self) -> Path:
        return self.home / "graph"

    @property
    def docstore_path(self) -> Path:
        return self.home / "docstore.sqlite"

    @property
    def index_dir(self) -> Path:
        return self.home / "indexes"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def runs_dir(self) -> Path:
        return self.home / "runs"


class _TomlPath:
    """A tiny context holder so the settings source knows which home's toml to read."""

    def __init__(self) -> None:
        self._p: Path | None = None

    def get(self) -> Path | None:
        return self._p

    def set(self, p: Path | None) -> None:
        self._p = p


_toml_path_var = _TomlPath()


def resolve_home(home: str | os.PathLike[str] | None = None) -> Path:
    if home is not None:
        return Path(home).expanduser()
    env = os.environ.get("KGRAG_HOME")
    return Path(env).expanduser() if env else DEFAULT_HOME


def load_settings(home: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Build :class:`Settings` for ``home`` (``--home`` > ``KGRAG_HOME`` > ``./.kgrag``)."""
    h = resolve_home(home)
    _toml_path_var.set(h / "kgrag.toml")
    try:
        kwargs = dict(overrides)
        if home is not None:
            kwargs["home"] = h
        s = Settings(**kwargs)
    except Exception as e:  # pydantic.ValidationError and toml errors
        raise ConfigError(
            f"invalid kgrag settings: {e}",
            fix="check KGRAG_* environment variables and $KGRAG_HOME/kgrag.toml (see .env.example)",
        ) from e
    finally:
        _toml_path_var.set(None)
    if home is None and "home" not in overrides:
        s.home = h if os.environ.get("KGRAG_HOME") or s.home == DEFAULT_HOME else s.home
    return s
