"""SCRIPT_PROVIDER=openai against a local server speaking the OpenAI chat completions
protocol over real HTTP (the maintained `openai` client on the other side): its script is
used; an error, a malformed answer or no server at all falls back to the offline writer."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from steps.short_video.trends import topic_trend
from steps.short_video.writers import writer, writer_version
from tests.support import patched_environment

KEY = "sk-local-test-key-0123456789"


class _Server:
    def __init__(self) -> None:
        self.answer: tuple[int, str] = (200, "")
        self.seen: list[dict[str, Any]] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.seen.append({"path": self.path, "auth": self.headers["Authorization"],
                                   "body": body})  # fmt: skip
                status, content = owner.answer
                payload = json.dumps({
                    "id": "chatcmpl-1", "object": "chat.completion", "created": 0,
                    "model": body["model"],
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": content}}],
                }).encode()  # fmt: skip
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self.http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.http.server_port}/v1"


@pytest.fixture(scope="module")
def server() -> Iterator[_Server]:
    found = _Server()
    try:
        yield found
    finally:
        found.http.shutdown()


def _settings(url: str) -> dict[str, str]:
    return {"SCRIPT_PROVIDER": "openai", "OPENAI_BASE_URL": url, "OPENAI_API_KEY": KEY,
            "OPENAI_MODEL": "local-model", "OPENAI_TIMEOUT_SECONDS": "5"}  # fmt: skip


def test_the_endpoints_script_is_used(server: _Server) -> None:
    lines = ["Volcanoes are openings in the crust.", "Lava is molten rock."]
    server.answer = (200, json.dumps({"hook": "Volcanoes!", "lines": lines, "outro": "Bye."}))
    with patched_environment(_settings(server.url)):
        draft = writer().draft(topic_trend("volcano"), 30)
        assert writer_version() is None  # a model's answer is never reused
    assert (draft.writer, draft.hook, draft.lines, draft.outro) == (
        "openai:local-model", "Volcanoes!", lines, "Bye."
    )  # fmt: skip
    request = server.seen[-1]
    assert request["path"] == "/v1/chat/completions" and request["auth"] == f"Bearer {KEY}"
    assert request["body"]["model"] == "local-model"
    assert "volcano" in request["body"]["messages"][0]["content"]


@pytest.mark.parametrize(
    "answer", [(500, "{}"), (200, "no json here"), (200, json.dumps({"hook": "only a hook"}))]
)
def test_an_error_or_a_malformed_answer_falls_back_to_the_offline_writer(
    server: _Server, answer: tuple[int, str]
) -> None:
    server.answer = answer
    with patched_environment(_settings(server.url)):
        draft = writer().draft(topic_trend("volcano"), 30)
    assert draft.writer.startswith("offline") and "volcano" in " ".join(draft.lines)


def test_no_server_at_all_falls_back_too() -> None:
    with patched_environment(_settings("http://127.0.0.1:9/v1")):
        draft = writer().draft(topic_trend("honey bee"), 15)
    assert draft.writer.startswith("offline")
