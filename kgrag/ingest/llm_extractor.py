"""A pluggable concept proposer backed by any OpenAI-compatible chat endpoint.

The rule extractor is the offline default; this one asks a (VLM/LLM) server to
propose mentions and returns them in the same :class:`~kgrag.types.Mention`
form.  Requests use ``response_format = json_schema`` so the answer is
constrained to {"mentions": [{"concept", "assertion", "text"}]}; concepts
outside the catalogue are dropped.  Answers are cached on disk by a hash of
(model, prompt, text), so re-ingesting costs nothing.  Settings:
``KGRAG_EXTRACTOR__BASE_URL``, ``__MODEL``, ``__API_KEY``, ``__TIMEOUT_S``,
``__RETRIES``.  Only the standard library's HTTP client is used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from kgrag.errors import ConfigError, ServiceError
from kgrag.ontology import concepts
from kgrag.types import Mention

log = logging.getLogger(__name__)
PROMPT_VERSION = "llm.v1"
SYSTEM = (
    "You extract findings and diagnoses from chest radiograph reports. Use only these concept ids: {ids}. "
    "For each mention give the concept id, its assertion (present, absent or uncertain: negated findings are "
    "absent; hedged, possible, historical or hypothetical ones are uncertain) and the exact text span."
)
SCHEMA = {
    "name": "mentions",
    "strict": True,
    "schema": {
        "type": "object", "additionalProperties": False, "required": ["mentions"],
        "properties": {"mentions": {"type": "array", "items": {
            "type": "object", "additionalProperties": False, "required": ["concept", "assertion", "text"],
            "properties": {"concept": {"type": "string"}, "assertion": {"type": "string", "enum": ["present", "absent", "uncertain"]},
                           "text": {"type": "string"}}}}},
    },
}


class LLMExtractor:
    name = "llm"

    def __init__(self, base_url: str, model: str, api_key: str | None = None, *, timeout_s: float = 30.0, retries: int = 2,
                 cache_dir: str | Path | None = None) -> None:
        if not base_url or not model:
            raise ConfigError("the LLM extractor needs a base URL and a model",
                             fix="set KGRAG_EXTRACTOR__BASE_URL and KGRAG_EXTRACTOR__MODEL")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._key = api_key
        self.timeout_s = timeout_s
        self.retries = retries
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.version = f"{PROMPT_VERSION}:{model}"

    @classmethod
    def from_settings(cls, settings: Any) -> LLMExtractor:
        x = settings.extractor
        return cls(x.base_url or "", x.model or "", x.api_key.get_secret_value() if x.api_key else None,
                   timeout_s=x.timeout_s, retries=x.retries, cache_dir=settings.home / "cache" / "llm")

    def warm_up(self) -> None:
        pass

    def _key_for(self, text: str) -> str:
        return hashlib.sha256(json.dumps([self.model, PROMPT_VERSION, text]).encode()).hexdigest()

    def _post(self, text: str) -> dict[str, Any]:
        ids = ", ".join(sorted(concepts()))
        body = json.dumps({
            "model": self.model, "temperature": 0,
            "messages": [{"role": "system", "content": SYSTEM.format(ids=ids)}, {"role": "user", "content": text}],
            "response_format": {"type": "json_schema", "json_schema": SCHEMA},
        }).encode()
        headers = {"Content-Type": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            req = urllib.request.Request(f"{self.base_url}/chat/completions", data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s) as r:
                    payload = json.loads(r.read().decode("utf-8"))
                content = payload["choices"][0]["message"]["content"]
                return json.loads(content)
            except urllib.error.HTTPError as e:
                last = e
                if e.code < 500 and e.code != 429:
                    break
            except (urllib.error.URLError, TimeoutError, json.JSONDecodeError, KeyError, IndexError) as e:
                last = e
            time.sleep(min(2.0, 0.2 * 2**attempt))
        raise ServiceError(f"LLM extractor at {self.base_url} failed: {type(last).__name__}: {last}",
                         fix="check the server, KGRAG_EXTRACTOR__MODEL and the API key, or use the rules extractor")

    def propose(self, text: str) -> list[dict[str, Any]]:
        key = self._key_for(text)
        path = self.cache_dir / f"{key}.json" if self.cache_dir else None
        if path is not None and path.is_file():
            return json.loads(path.read_text())
        out = self._post(text)
        ms = out.get("mentions", []) if isinstance(out, dict) else []
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(ms))
            tmp.replace(path)
        return ms

    def extract(self, study_id: str, text: str) -> list[Mention]:
        from kgrag.ingest.sections import section_at, split_sections

        cs = concepts()
        sections = split_sections(study_id, text)
        out = []
        for m in self.propose(text):
            c, a, span = m.get("concept"), m.get("assertion"), m.get("text") or ""
            if c not in cs or a not in ("present", "absent", "uncertain"):
                log.info("LLM proposed unknown concept/assertion %r/%r; dropped", c, a)
                continue
            start = text.lower().find(span.lower()) if span else -1
            if start < 0:  # the span is not in the text: keep the mention, without a location
                out.append(Mention(study_id, c, cs[c].role, a, "unknown", span, 0, 0, span, self.name, self.version))
                continue
            end = start + len(span)
            floor = max([sec.start for sec in sections if sec.start <= start], default=0)  # not the header
            out.append(Mention(study_id, c, cs[c].role, a, section_at(sections, start),
                               _sentence_around(text, start, end, floor), start, end, text[start:end],
                               self.name, self.version))
        return out

    def extract_many(self, items: list[tuple[str, str]]) -> list[list[Mention]]:
        return [self.extract(s, t) for s, t in items]


def _sentence_around(text: str, start: int, end: int, floor: int = 0) -> str:
    """The sentence holding text[start:end]: from the previous '.', '?', '!' or newline
    (not before ``floor``) to the next."""
    left = max(floor, max(text.rfind(ch, 0, start) for ch in ".?!\n") + 1)
    rights = [i for i in (text.find(ch, end) for ch in ".?!\n") if i >= 0]
    right = min(rights) + 1 if rights else len(text)
    return text[left:right].strip()
