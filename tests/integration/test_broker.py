"""What reelflow asks of a broker (is it there, how much waits in each queue), answered the
same by Redis and RabbitMQ through kombu's public interface; no worker consumes here."""

from __future__ import annotations

import uuid

import pytest
from kombu import Connection

from reelflow import broker
from reelflow.celery_app import QUEUES, app
from reelflow.settings import get_settings
from tests.support import on_both_brokers, patched_environment
from workflows.recovery.whereabouts import out_there

pytestmark = on_both_brokers


def _purge(url: str) -> None:
    with Connection(url) as conn:
        for queue in QUEUES:
            channel = conn.channel()
            try:
                channel.queue_purge(queue)
            except conn.channel_errors:
                pass
            finally:
                channel.close()


def test_ping_answers_and_an_absent_broker_is_refused_at_once(env: dict[str, str]) -> None:
    broker.ping(1.0)
    scheme = (
        "amqp://guest:guest@127.0.0.1:1//"
        if get_settings().broker_kind == "amqp"
        else ("redis://127.0.0.1:1/0")
    )
    with (
        patched_environment({"CELERY_BROKER_URL": scheme}),
        pytest.raises(broker.BrokerUnavailable),
    ):
        broker.ping(0.5)


def test_queue_depths_count_the_messages_waiting(env: dict[str, str]) -> None:
    url = env.get("CELERY_BROKER_URL", env["REDIS_URL"])
    app.connection_for_write().ensure_connection(max_retries=3)
    with app.producer_or_acquire() as producer:
        for queue in QUEUES:  # declare both, as a worker would
            app.amqp.queues[queue](producer.channel).declare()
    _purge(url)
    assert broker.queue_depths(QUEUES) == {"default": 0, "gpu": 0}
    for _ in range(3):  # a step no worker here consumes: the messages wait in `gpu`
        app.send_task(
            "reelflow.step.render_scene", args=[str(uuid.uuid4()), "render_scene[0]", 0],
            queue="gpu",
        )  # fmt: skip
    assert broker.queue_depths(QUEUES) == {"default": 0, "gpu": 3}
    out = out_there()
    assert out is not None and out.depths == {"default": 0, "gpu": 3} and out.held == set()
    _purge(url)
    assert broker.queue_depths(QUEUES)["gpu"] == 0
