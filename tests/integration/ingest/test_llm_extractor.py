"""The OpenAI-compatible extractor against a fake server on 127.0.0.1."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from kgrag.errors import KgragError
from kgrag.ingest.llm_extractor import LLMExtractor


class _Fake(BaseHTTPRequestHandler):
    calls = []
    fail_first = 0

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Fake.calls.append((body, self.headers.get("Authorization")))
        if _Fake.fail_first > 0:
            _Fake.fail_first -= 1
            self.send_response(503)
            self.end_headers()
            return
        content = json.dumps({"mentions": [
            {"concept": "pleural_effusion", "assertion": "absent", "text": "pleural effusion"},
            {"concept": "made_up", "assertion": "present", "text": "x"},
            {"concept": "cardiomegaly", "assertion": "present", "text": "Cardiomegaly"}]})
        data = json.dumps({"choices": [{"message": {"content": content}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *a):
        pass


@pytest.fixture
def server():
    srv = HTTPServer(("127.0.0.1", 0), _Fake)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    _Fake.calls.clear()
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1"
    srv.shutdown()


def test_extract_schema_cache_and_retry(server, tmp_path):
    _Fake.fail_first = 1
    x = LLMExtractor(server, "tiny-model", "sk-test", timeout_s=5, retries=2, cache_dir=tmp_path)
    text = "FINDINGS: No pleural effusion.\n\nIMPRESSION: Mild cardiomegaly. Clear lungs."
    ms = x.extract("s1", text)
    assert [(m.concept, m.assertion) for m in ms] == [("pleural_effusion", "absent"), ("cardiomegaly", "present")]
    assert text[ms[1].start:ms[1].end] == "cardiomegaly" and ms[0].extractor == "llm"
    assert (ms[0].section, ms[0].sentence) == ("findings", "No pleural effusion.")
    assert (ms[1].section, ms[1].sentence) == ("impression", "Mild cardiomegaly.")
    body, auth = _Fake.calls[-1]
    assert auth == "Bearer sk-test" and body["response_format"]["type"] == "json_schema"
    assert len(_Fake.calls) == 2  # one 503, one success
    x.extract("s1", text)
    assert len(_Fake.calls) == 2  # cached by content hash


def test_unreachable_server_is_a_clear_error(tmp_path):
    x = LLMExtractor("http://127.0.0.1:9/v1", "m", timeout_s=1, retries=0)
    with pytest.raises(KgragError, match="LLM extractor"):
        x.extract("s", "text")
