"""Plain data records shared between stages.  No heavy imports."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Role = Literal["ImageFinding", "Finding", "Diagnosis"]
ROLES: tuple[str, ...] = ("ImageFinding", "Finding", "Diagnosis")
Assertion = Literal["present", "absent", "uncertain"]
ASSERTIONS: tuple[str, ...] = ("present", "absent", "uncertain")
EdgeStatus = Literal["proposed", "accepted", "rejected"]
EDGE_STATUSES: tuple[str, ...] = ("proposed", "accepted", "rejected")
EdgeSource = Literal["statistics", "extractor", "human", "prior"]
EDGE_SOURCES: tuple[str, ...] = ("statistics", "extractor", "human", "prior")
Split = Literal["train", "val", "test"]
SPLITS: tuple[str, ...] = ("train", "val", "test")

#: Allowed edge directions: image finding -> finding -> diagnosis (plus mediators).
ALLOWED_EDGE_ROLES: frozenset[tuple[str, str]] = frozenset(
    {("ImageFinding", "Finding"), ("Finding", "Finding"), ("Finding", "Diagnosis")}
)


@dataclass(slots=True)
class Concept:
    id: str
    role: str
    name: str
    synonyms: list[str] = field(default_factory=list)
    definition: str = ""
    leak: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class Section:
    study_id: str
    name: str  # indication | comparison | findings | impression | other
    text: str
    start: int  # char offset in the study's full report text
    end: int


@dataclass(slots=True)
class Mention:
    study_id: str
    concept: str
    role: str
    assertion: str
    section: str
    sentence: str
    start: int  # char span into the study's full report text
    end: int
    text: str = ""
    extractor: str = "rules"
    extractor_version: str = "1"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class Study:
    """One study (the manifest contract of DESIGN.md), as ingest validates it and the
    docstore returns it: ``images`` are absolute paths (from the docstore: those that
    loaded), ``content_hash`` identifies the validated record."""

    id: str
    report: str
    findings: str | None = None
    impression: str | None = None
    images: list[str] = field(default_factory=list)
    split: str = "train"
    modality: str = "radiology"
    questions: list[dict[str, Any]] = field(default_factory=list)
    labels: dict[str, int] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    content_hash: str = ""


@dataclass(slots=True)
class Edge:
    src: str
    dst: str
    p: float
    status: str = "proposed"
    source: str = "statistics"
    support: int = 0
    n_c: int = 0  # studies with cause present
    n_e_given_c: int = 0
    n_not_c: int = 0
    n_e_given_not_c: int = 0
    p_e_given_c: float = 0.0
    p_e_given_not_c: float = 0.0
    lift: float = 0.0
    ci_low: float = 0.0
    ci_high: float = 0.0
    p_value: float | None = None
    extractor: str = ""
    extractor_version: str = ""
    reviewed_by: str | None = None
    reviewed_at: str | None = None
    note: str | None = None
    locked: bool = False
    evidence_studies: list[str] = field(default_factory=list)  # bounded sample
    evidence_spans: list[str] = field(default_factory=list)  # "study_id:start-end" sample
    evidence_count: int = 0
    rationale: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.src, self.dst)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class ReportCandidate:
    """A candidate report: what it asserts present and what it denies."""

    id: str
    present: list[str] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)


@dataclass(slots=True)
class CandidateScore:
    id: str
    loglik: float | None  # mean log-likelihood; None when the report asserts nothing
    n: int  # number of assertions scored
    per_concept: list[dict[str, Any]] = field(default_factory=list)
    # [{"concept": str, "assertion": "present"|"absent", "probability": float}]


@dataclass(slots=True)
class CausalPath:
    nodes: list[str]
    strength: float  # q_o * prod p
