"""An OpenAI-compatible chat-completions server as the generator (``--generator http``).

vLLM, Ollama, llama.cpp's server, Groq and OpenAI itself speak this API.  Settings:
``KGRAG_GENERATION__BASE_URL`` (e.g. ``http://127.0.0.1:8000/v1``),
``KGRAG_GENERATION__MODEL``, ``KGRAG_GENERATION__API_KEY`` (a bearer key; never
logged, never in an error message), ``__TIMEOUT_S``, ``__RETRIES``, ``__BACKOFF_S``,
``__MAX_NEW_TOKENS`` and ``__SEND_IMAGES`` (the query images as PNG data URLs, for a
model that takes images).

The prompt is the task's versioned template (:mod:`kgrag.generation.prompts`): the
evidence sentences, V_I, the posteriors, paths and interventions.  Decoding is greedy
(``temperature = 0``).  429 and 5xx answers and timeouts are retried with exponential
backoff (``Retry-After`` is honoured up to 30 s); other failures raise a
:class:`~kgrag.errors.ServiceError` naming the URL.

Closed questions: ``P(yes)`` comes from the first answer token's ``top_logprobs`` when
the server returns them (``lm.yes_no.v1``); a server that does not gives the grounded
writer's calibrated probability instead, and ``answer.scheme`` says so (``grounded.v2``).
"""

from __future__ import annotations

import json
import logging
import math
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from kgrag.errors import ConfigError, ServiceError
from kgrag.generation.base import (
    CLOSED_VQA,
    DIAGNOSIS,
    REPORT,
    YES_NO_SCHEME,
    Answer,
    check_task,
    cited,
    explanation,
    set_yes_no,
)
from kgrag.generation.evidence import EvidenceBundle
from kgrag.generation.prompts import PROMPT_SET, build_prompt

log = logging.getLogger(__name__)
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


def safe_url(url: str) -> str:
    """``url`` without user:password."""
    parts = urlsplit(url)
    if parts.username or parts.password:
        host = parts.hostname or ""
        if parts.port:
            host += f":{parts.port}"
        parts = parts._replace(netloc=f"***@{host}")
    return urlunsplit(parts)


class HTTPGenerator:
    name = "http"

    def __init__(self, base_url: str | None, model: str | None, api_key: str | None = None, *, timeout_s: float = 60.0,
                 retries: int = 2, backoff_s: float = 0.5, max_new_tokens: int = 256, send_images: bool = False,
                 prompt_set: str = PROMPT_SET, causal_weight: float = 0.7, transport: Any = None) -> None:
        self.base_url = (base_url or "").rstrip("/")
        self.model = model
        self._key = api_key
        self.timeout_s, self.retries, self.backoff_s = timeout_s, retries, backoff_s
        self.max_new_tokens, self.send_images, self.prompt_set = max_new_tokens, send_images, prompt_set
        self.causal_weight = causal_weight
        self._transport = transport
        self._client = None

    @classmethod
    def from_settings(cls, settings: Any, **_: Any) -> HTTPGenerator:
        g = settings.generation
        return cls(g.base_url, g.model, g.api_key.get_secret_value() if g.api_key else None, timeout_s=g.timeout_s,
                   retries=g.retries, backoff_s=g.backoff_s, max_new_tokens=g.max_new_tokens, send_images=g.send_images,
                   causal_weight=g.causal_weight)

    def __repr__(self) -> str:  # the key stays out of reprs and tracebacks' locals
        return f"HTTPGenerator(base_url={safe_url(self.base_url)!r}, model={self.model!r})"

    @property
    def prompt_version(self) -> str:
        return self.prompt_set

    @property
    def url(self) -> str:
        return f"{self.base_url}/chat/completions"

    def warm_up(self) -> None:
        if not self.base_url or not self.model:
            raise ConfigError("the http generator needs a server URL and a model name",
                              fix="set KGRAG_GENERATION__BASE_URL (e.g. http://127.0.0.1:8000/v1) and KGRAG_GENERATION__MODEL")
        if self._client is None:
            from kgrag.deps import require

            httpx = require("httpx")
            headers = {"Content-Type": "application/json"}
            if self._key:
                headers["Authorization"] = f"Bearer {self._key}"
            self._client = httpx.Client(timeout=self.timeout_s, headers=headers, transport=self._transport)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _redact(self, text: str) -> str:
        if self._key:
            text = text.replace(self._key, "***")
        return text.replace(self.base_url, safe_url(self.base_url)) if self.base_url else text

    def post(self, payload: dict[str, Any]) -> dict[str, Any]:
        """POST the chat request; retry 429/5xx/timeouts with backoff; the parsed JSON answer."""
        import httpx

        self.warm_up()
        url = safe_url(self.url)
        last = ""
        for attempt in range(self.retries + 1):
            delay = self.backoff_s * (2 ** attempt)
            try:
                r = self._client.post(self.url, json=payload)
            except httpx.TimeoutException:
                last = f"no answer within {self.timeout_s:g} s"
            except httpx.TransportError as e:
                last = f"cannot connect ({type(e).__name__}: {self._redact(str(e))})"
            else:
                if r.status_code == 200:
                    try:
                        return r.json()
                    except (json.JSONDecodeError, ValueError) as e:
                        raise ServiceError(f"the server at {url} answered with malformed JSON ({e})",
                                              fix="check that KGRAG_GENERATION__BASE_URL points at an OpenAI-compatible "
                                                  "/v1 endpoint") from None
                body = self._redact(r.text[:300])
                last = f"HTTP {r.status_code}: {body}"
                if r.status_code not in RETRY_STATUS:
                    raise ServiceError(f"the server at {url} refused the request: {last}",
                                          fix="check KGRAG_GENERATION__MODEL and KGRAG_GENERATION__API_KEY")
                ra = r.headers.get("Retry-After")
                if ra and ra.strip().replace(".", "", 1).isdigit():
                    delay = min(float(ra), 30.0)
            log.info("generation request to %s failed (%s), attempt %d of %d", url, last.split(":")[0], attempt + 1,
                     self.retries + 1)
            if attempt < self.retries:
                time.sleep(delay)
        raise ServiceError(f"the generation server at {url} failed after {self.retries + 1} attempts: {last}",
                              fix="check that the server is running and reachable, or raise KGRAG_GENERATION__TIMEOUT_S "
                                  "/ KGRAG_GENERATION__RETRIES")

    def payload(self, bundle: EvidenceBundle, task: str) -> tuple[dict[str, Any], str]:
        prompt = build_prompt(bundle, task, version=self.prompt_set)
        user: Any = prompt.user
        if self.send_images and prompt.images:
            from kgrag.generation.media import data_url

            user = [{"type": "text", "text": prompt.user},
                    *({"type": "image_url", "image_url": {"url": data_url(p)}} for p in prompt.images)]
        body: dict[str, Any] = {"model": self.model, "temperature": 0, "max_tokens": self.max_new_tokens,
                                "messages": [{"role": "system", "content": prompt.system}, {"role": "user", "content": user}]}
        if task == CLOSED_VQA:
            body["logprobs"], body["top_logprobs"] = True, 10
        return body, prompt.version

    def generate(self, bundle: EvidenceBundle, task: str | None = None) -> Answer:
        task = check_task(task, bundle)
        body, version = self.payload(bundle, task)
        data = self.post(body)
        try:
            choice = data["choices"][0]
            text = (choice["message"]["content"] or "").strip()
        except (KeyError, IndexError, TypeError) as e:
            raise ServiceError(f"the server at {safe_url(self.url)} answered without choices[0].message.content",
                                  fix="check that the endpoint is OpenAI chat-completions compatible") from e
        q = bundle.question
        concept = q.concept if q is not None else None
        ans = Answer(text or "(the model wrote nothing)", task=task, concept=concept,
                     generator={"name": self.name, "model": self.model, "prompt_version": version,
                                "base_url": safe_url(self.base_url), "served_model": data.get("model")})
        ans.citations, ans.unresolved_citations = cited(text, bundle)
        if q is not None:
            ans.intent = q.intent
        if task == CLOSED_VQA and concept is not None:
            ans.polarity = q.polarity
            p = yes_probability(choice)
            if p is not None:
                ans.probability, ans.scheme = p, YES_NO_SCHEME
            else:
                from kgrag.generation.grounded import GroundedGenerator

                g = GroundedGenerator(causal_weight=self.causal_weight).closed(bundle)
                ans.probability, ans.scheme = g.probability, g.scheme
            set_yes_no(ans, text)
        if task == DIAGNOSIS:
            top = bundle.diagnoses(informed=True)
            concept = top[0].concept if top else None
        if task == REPORT:
            concept = None
        ans.paths, ans.counterfactuals = explanation(bundle, concept)
        if concept is not None and bundle.graph_has_opinion(concept):
            ans.posterior = bundle.posterior(concept)
        return ans


def yes_probability(choice: dict[str, Any]) -> float | None:
    """P(yes) / (P(yes) + P(no)) over the first token's top log-probabilities, or None."""
    try:
        first = choice["logprobs"]["content"][0]
        tops = first.get("top_logprobs") or [first]
    except (KeyError, IndexError, TypeError):
        return None
    y = n = 0.0
    for t in tops:
        w = str(t.get("token", "")).strip().lower()
        if w == "yes":
            y += math.exp(float(t["logprob"]))
        elif w == "no":
            n += math.exp(float(t["logprob"]))
    if y + n <= 0.0:
        return None
    return y / (y + n)
