"""The log redactor masks secrets in every shape they reach a log in, and nothing else;
the poison-message check tells a message Celery can take from one it cannot."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from reelflow.logs import configure_logging
from reelflow.messages import malformed
from reelflow.redaction import MASK, Redactor, url_password
from reelflow.settings import Settings

SECRET = "Zq8rT2vLx9"
redact = Redactor([SECRET, "abc"])  # 3 characters: too short to mask anywhere


@pytest.mark.parametrize(
    "text",
    [
        f"postgresql+asyncpg://postgres:{SECRET}@db:5432/reelflow",
        "amqp://user:hunter2hunter2@rabbit:5672//",
        "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig",
        "(b'authorization', b'Bearer tok-123456')",
        "headers={'Authorization': 'Basic dXNlcjpwYXNzd29yZA=='}",
        "{'password': 'hunter2hunter2', 'user': 'x'}",
        '"api_token": "s3cr3t-value"',
        "password=hunter2hunter2 host=db",
        f"connect failed: {SECRET}",
        "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG",
        "authorization: bearer eyJhbGciOiJIUzI1NiJ9.payload.sig",
        "AUTHORIZATION: BEARER eyJhbGciOiJIUzI1NiJ9.payload.sig",
        "authorization: Negotiate s3cr3t-kerberos-blob",
        "{'authorization': 'token s3cr3t-value'}",
        "Proxy-Authorization: basic dXNlcjpwYXNzd29yZA==",
        "sent header bearer tok-123456 upstream",
        "[(b'authorization', b'basic dXNlcjpwYXNzd29yZA==')]",
        "Authorization: AWS4-HMAC-SHA256 Credential=AKIA/x, SignedHeaders=host,"
        " Signature=0123456789abcdef0123456789abcdefs3cr3t",
        'Authorization: Digest username="u", response="0123456789abcdef0123456789abcdef"',
    ],
)
def test_secret_shapes_are_masked(text: str) -> None:
    masked = redact.text(text)
    for secret in (SECRET, "hunter2hunter2", "eyJhbGci", "tok-123456", "dXNlcjpw", "s3cr3t",
                   "wJalrXUtn", "0123456789abcdef"):  # fmt: skip
        assert secret not in masked, masked
    assert MASK in masked


@pytest.mark.parametrize(
    "text",
    [
        "http://127.0.0.1:8000/runs/3f1c",
        "redis://127.0.0.1:6379/0",
        "step render_scene[3] succeeded in 120 ms",
        "abc is a short value",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact.text(text) == text


def test_fields_named_like_secrets_are_masked_whole_and_nesting_is_followed() -> None:
    event = {
        "event": "x",
        "password": "anything-at-all",
        "headers": {"authorization": "whatever", "accept": "application/json"},
        "frames": [{"line": f"url = 'postgresql://u:{SECRET}@h/db'"}],
        "tokens": 12,
    }
    out = redact(None, "info", event)
    assert out["password"] == MASK and out["headers"]["authorization"] == MASK
    assert out["headers"]["accept"] == "application/json" and out["tokens"] == 12
    assert SECRET not in json.dumps(out)


def test_settings_name_their_secrets() -> None:
    settings = Settings(
        database_url=f"postgresql://u:{SECRET}@h/db",
        redis_url="redis://:redispass1@h:6379/0",
        api_token="tok-abcdef",  # type: ignore[arg-type]
        api_tokens="alice=tok-alice-1,bob=tok-bob-22",  # type: ignore[arg-type]
        metrics_token="tok-metrics-9",  # type: ignore[arg-type]
    )
    found = set(settings.secrets())
    assert {SECRET, "redispass1", "tok-abcdef", "tok-metrics-9"} <= found
    assert {"tok-alice-1", "tok-bob-22"} <= found  # each named token alone too
    assert "tok-metrics-9" not in Redactor(settings.secrets()).text("a line with tok-metrics-9")
    assert url_password("redis://h:6379/0") is None


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """configure_logging changes process-wide state: put it back for the other tests."""
    import sys
    import threading

    from reelflow import logs

    root = logging.getLogger()
    saved = (root.handlers[:], root.level, structlog.get_config(), logs._configured,
             sys.excepthook, threading.excepthook)  # fmt: skip
    yield
    root.handlers, level, config, logs._configured, sys.excepthook, threading.excepthook = saved
    root.setLevel(level)
    structlog.configure(**config)


@pytest.mark.usefixtures("restored_logging")
def test_a_logged_exception_carries_no_locals_and_no_secret(
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = Settings(log_format="json", api_token=f"tok-{SECRET}")  # type: ignore[arg-type]
    # a library that installed a handler of its own before (billiard's "multiprocessing")
    logging.getLogger("multiprocessing").addHandler(logging.StreamHandler(sys.stderr))
    configure_logging(settings, force=True)
    try:
        connect_args = {"password": SECRET, "dsn": f"postgresql://u:{SECRET}@h/db"}  # noqa: F841
        raise ConnectionError(f"could not connect with tok-{SECRET}")
    except ConnectionError:
        structlog.get_logger("t").exception("failed", token=f"tok-{SECRET}")
        logging.getLogger("celery.worker").error("Celery's line: %s", f"tok-{SECRET}",
                                                 exc_info=True)  # fmt: skip
    logging.getLogger("multiprocessing").warning("child says tok-%s", SECRET)
    err = capsys.readouterr().err
    lines = [json.loads(line) for line in err.splitlines() if line.strip()]
    assert lines.pop()["event"] == "child says ***"  # through the redactor, once
    assert len(lines) == 2 and all("exception" in line for line in lines)
    assert SECRET not in err and '"locals"' not in err


def _m(headers: Any, payload: Any) -> str | None:
    found = malformed(headers, payload)
    return found[0] if found else None


def test_the_message_check_knows_celerys_shape() -> None:
    ok = {"task": "t", "id": "1"}
    assert _m(ok, [["a"], {}, {}]) is None
    assert _m(ok, [[], {}, None]) is None
    assert _m(ok, {"args": []}) == "malformed"
    assert _m(ok, [["a"], {}]) == "malformed"
    assert _m(ok, [["a"], [], {}]) == "malformed"
    assert _m(ok, [["a"], {}, {"chain": "x"}]) == "malformed"
    assert _m({"task": "t"}, [[], {}, {}]) == "malformed"
    assert _m(["not", "a", "mapping"], [[], {}, {}]) == "malformed"
    assert _m({**ok, "timelimit": "soon"}, [[], {}, {}]) == "malformed"
    assert _m({**ok, "timelimit": [10, None]}, [[], {}, {}]) is None
