"""Proof that the change stream runs: a token written on the source, seen arriving in Kafka.

The reader is positioned at the topic's end *before* the token is written, so the token cannot be
missed; any message carrying the token (a random 32-hex string, in the value's JSON) is the proof.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

from replicator.config import KafkaSettings
from replicator.kafka.admin import prompt_reader_config


def prove_streaming(kafka: KafkaSettings, topic: str, write: Callable[[str], None], timeout_s: float) -> float:
    """Write a fresh token with `write` and wait until it is in `topic`; seconds it took, or raise
    TimeoutError."""
    settings: dict[str, Any] = {**prompt_reader_config(kafka),
                                "group.id": f"replicator-watermark-{uuid.uuid4().hex[:12]}",
                                "enable.auto.commit": False, "auto.offset.reset": "earliest"}
    consumer = Consumer(settings)
    try:
        try:
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        except KafkaException:
            high = 0  # no message yet: read from the start
        consumer.assign([TopicPartition(topic, 0, max(int(high), 0))])
        token = uuid.uuid4().hex
        started = time.monotonic()
        write(token)
        needle = token.encode()
        while time.monotonic() - started < timeout_s:
            message = consumer.poll(0.5)
            if message is None or message.error() is not None:
                continue
            value = message.value()
            if isinstance(value, bytes) and needle in value:
                return time.monotonic() - started
        raise TimeoutError(token)
    finally:
        consumer.close()
