"""The OpenAI-compatible generator against a fake chat-completions server on 127.0.0.1:
ok, timeout, 500, malformed JSON, 429-then-ok, unreachable; the key never shows."""

import json
import logging
import threading
import time
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from kgrag.errors import ServiceError
from kgrag.generation.remote import HTTPGenerator, yes_probability
from tests.unit.generation._gen_bundles import bundle, closed

KEY = "sk-sentinel-0123456789"


class _Fake(BaseHTTPRequestHandler):
    mode = "ok"
    calls: list = []
    fail_first = 0

    def _send(self, code, body: bytes, headers=()):
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Fake.calls.append((self.path, body, self.headers.get("Authorization")))
        mode = _Fake.mode
        if mode == "429-then-ok" and _Fake.fail_first > 0:
            _Fake.fail_first -= 1
            return self._send(429, b'{"error": "slow down"}', [("Retry-After", "0")])
        if mode == "500":
            return self._send(500, f'{{"error": "boom, your key {KEY} is wrong"}}'.encode())
        if mode == "timeout":
            time.sleep(1.0)
            return self._send(200, b"{}")
        if mode == "malformed":
            return self._send(200, b"{not json")
        if mode == "400":
            return self._send(400, b'{"error": "unknown model"}')
        content = "Yes. Small right pleural effusion [s1]; see also [s99]."
        out = {"model": body["model"], "choices": [{"message": {"role": "assistant", "content": content},
                                                    "logprobs": {"content": [{"token": "Yes", "logprob": -0.2, "top_logprobs": [
                                                        {"token": "Yes", "logprob": -0.2}, {"token": "No", "logprob": -1.9},
                                                        {"token": "Maybe", "logprob": -3.0}]}]}}]}
        if mode == "no-logprobs":
            del out["choices"][0]["logprobs"]
        return self._send(200, json.dumps(out).encode())

    def log_message(self, *a):
        pass


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Fake)
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    _Fake.calls.clear()
    _Fake.mode, _Fake.fail_first = "ok", 0
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1"
    srv.shutdown()
    srv.server_close()


def _gen(url, **kw):
    kw.setdefault("retries", 2)
    kw.setdefault("backoff_s", 0.01)
    kw.setdefault("timeout_s", 5)
    return HTTPGenerator(url, "tiny-chat", KEY, **kw)


def _bundle(tmp_path=None):
    b = bundle(closed("pleural_effusion", text="Is there pleural effusion?"))
    b = replace(b, query=replace(b.query, question="Is there pleural effusion?"))
    if tmp_path is not None:
        import numpy as np
        from PIL import Image

        img = tmp_path / "q.png"
        Image.fromarray((np.random.default_rng(0).random((40, 40)) * 255).astype("uint8")).save(img)
        b = replace(b, query=replace(b.query, images=(str(img),)))
    return b


def test_ok_request_and_answer(server, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    g = _gen(server, send_images=True)
    ans = g.generate(_bundle(tmp_path))
    path, body, auth = _Fake.calls[-1]
    assert path == "/v1/chat/completions" and auth == f"Bearer {KEY}" and body["model"] == "tiny-chat"
    assert body["temperature"] == 0 and body["max_tokens"] == 256 and body["logprobs"] is True
    user = body["messages"][1]["content"]
    text = user[0]["text"]
    assert "Small right pleural effusion." in text  # evidence sentences
    assert "- lung opacity: 0.90" in text  # V_I
    assert "- pleural effusion: 0.80" in text  # the posterior
    assert "lung opacity → consolidation → pneumonia" in text  # paths
    assert "Question: Is there pleural effusion?" in text
    assert user[1]["type"] == "image_url" and user[1]["image_url"]["url"].startswith("data:image/png;base64,")
    assert ans.yes_no == "yes" and ans.scheme == "lm.yes_no.v1"
    # P(yes) = e^-0.2 / (e^-0.2 + e^-1.9)
    import math

    assert ans.probability == pytest.approx(math.exp(-0.2) / (math.exp(-0.2) + math.exp(-1.9)))
    assert ans.citations == ["s1"] and ans.unresolved_citations == ["s99"]
    assert ans.generator["name"] == "http" and ans.generator["model"] == "tiny-chat"
    assert ans.generator["prompt_version"] == "closed_vqa.v1"
    assert KEY not in caplog.text and KEY not in repr(g)


def test_without_images_and_without_logprobs(server):
    _Fake.mode = "no-logprobs"
    ans = _gen(server).generate(_bundle())
    user = _Fake.calls[-1][1]["messages"][1]["content"]
    assert isinstance(user, str)  # send_images off: plain text
    assert ans.scheme == "grounded.v2" and ans.probability == pytest.approx(0.7475)  # the calibrated fallback


def test_429_then_ok_is_retried(server):
    _Fake.mode, _Fake.fail_first = "429-then-ok", 2
    ans = _gen(server, retries=3).generate(_bundle())
    assert len(_Fake.calls) == 3 and ans.yes_no == "yes"


def test_500_is_retried_then_a_clear_error_without_the_key(server):
    _Fake.mode = "500"
    with pytest.raises(ServiceError) as e:
        _gen(server, retries=2).generate(_bundle())
    assert len(_Fake.calls) == 3
    msg = str(e.value)
    assert server in msg and "HTTP 500" in msg and "after 3 attempts" in msg
    assert KEY not in msg and "***" in msg


def test_timeout_is_retried_then_names_the_url(server):
    _Fake.mode = "timeout"
    t0 = time.perf_counter()
    with pytest.raises(ServiceError, match="no answer within 0.2 s") as e:
        _gen(server, retries=1, timeout_s=0.2).generate(_bundle())
    assert server in str(e.value) and len(_Fake.calls) == 2 and time.perf_counter() - t0 < 5


def test_malformed_json_is_a_clear_error(server):
    _Fake.mode = "malformed"
    with pytest.raises(ServiceError, match="malformed JSON") as e:
        _gen(server).generate(_bundle())
    assert server in str(e.value) and len(_Fake.calls) == 1


def test_client_error_is_not_retried(server):
    _Fake.mode = "400"
    with pytest.raises(ServiceError, match="refused the request: HTTP 400"):
        _gen(server).generate(_bundle())
    assert len(_Fake.calls) == 1


def test_unreachable_server_names_the_url():
    with pytest.raises(ServiceError, match="cannot connect") as e:
        _gen("http://127.0.0.1:9/v1", retries=0, timeout_s=1).generate(_bundle())
    assert "http://127.0.0.1:9/v1/chat/completions" in str(e.value)


def test_missing_settings_and_url_credentials():
    from kgrag.errors import ConfigError
    from kgrag.generation.remote import safe_url

    with pytest.raises(ConfigError, match="KGRAG_GENERATION__BASE_URL"):
        HTTPGenerator(None, None).generate(_bundle())
    assert safe_url("http://user:pw@host:8000/v1") == "http://***@host:8000/v1"


def test_yes_probability_parsing():
    assert yes_probability({"message": {}}) is None
    assert yes_probability({"logprobs": {"content": [{"token": "Maybe", "logprob": 0.0, "top_logprobs": []}]}}) is None
    assert yes_probability({"logprobs": {"content": [{"token": " no", "logprob": -0.1}]}}) == 0.0
