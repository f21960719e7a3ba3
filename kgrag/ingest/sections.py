"""Report sections with character offsets into the original text.

A small rule-based sectionizer (header regex) instead of medspaCy's: it keeps
exact offsets, needs no pipeline and runs at millions of characters per second.
"""

from __future__ import annotations

import re

from kgrag.types import Section

SECTION_NAMES = {
    "indication": "indication", "history": "indication", "clinical history": "indication", "reason for exam": "indication",
    "comparison": "comparison", "comparisons": "comparison", "technique": "technique", "examination": "technique",
    "findings": "findings", "finding": "findings", "impression": "impression", "impressions": "impression",
    "conclusion": "impression", "summary": "impression",
}
_HEADER = re.compile(
    r"(?im)^[ \t]*(" + "|".join(sorted((re.escape(k) for k in SECTION_NAMES), key=len, reverse=True)) + r")[ \t]*:"
)
_WS = re.compile(r"\s+")


def normalize_ws(text: str) -> str:
    return _WS.sub(" ", text).strip()


def compose(findings: str | None, impression: str | None, extra: dict[str, str] | None = None) -> str:
    """Full report text from sectioned fields, in reading order."""
    parts = []
    for name in ("indication", "comparison"):
        if extra and extra.get(name):
            parts.append(f"{name.upper()}: {extra[name].strip()}")
    if findings and findings.strip():
        parts.append(f"FINDINGS: {findings.strip()}")
    if impression and impression.strip():
        parts.append(f"IMPRESSION: {impression.strip()}")
    return "\n\n".join(parts)


def split_sections(study_id: str, text: str) -> list[Section]:
    """Split ``text`` at known headers; text before the first header is 'other'
    (or 'findings' when the report has no headers at all)."""
    heads = list(_HEADER.finditer(text))
    if not heads:
        return [Section(study_id, "findings", text, 0, len(text))] if text.strip() else []
    out: list[Section] = []
    if text[: heads[0].start()].strip():
        out.append(Section(study_id, "other", text[: heads[0].start()], 0, heads[0].start()))
    for i, m in enumerate(heads):
        start = m.end()
        end = heads[i + 1].start() if i + 1 < len(heads) else len(text)
        name = SECTION_NAMES[m.group(1).lower()]
        out.append(Section(study_id, name, text[start:end], start, end))
    return out


def section_at(sections: list[Section], offset: int) -> str:
    for s in sections:
        if s.start <= offset < s.end:
            return s.name
    return "other"
