"""Reading change events for people: `replicator events` and the demo.

This is a diagnostic reader, not the applier: it uses its own throw-away consumer group, commits
nothing, and decodes only the envelope (op, key, before/after), never the column types.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, TopicPartition

from replicator.config import KafkaSettings
from replicator.kafka.admin import client_config


@dataclass(frozen=True)
class RawEvent:
    topic: str
    partition: int
    offset: int
    key: Any
    value: Any  # None for a tombstone
    headers: dict[str, bytes]

    @property
    def payload(self) -> dict[str, Any] | None:
        if isinstance(self.value, dict) and "payload" in self.value:
            payload = self.value["payload"]
            return payload if isinstance(payload, dict) else None
        return self.value if isinstance(self.value, dict) else None

    @property
    def key_payload(self) -> Any:
        if isinstance(self.key, dict) and "payload" in self.key:
            return self.key["payload"]
        return self.key

    @property
    def op(self) -> str | None:
        payload = self.payload
        if payload is None:
            return None
        op = payload.get("op")
        return str(op) if op is not None else None


def _decode(data: bytes | None) -> Any:
    if data is None or data == b"":
        return None
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return data.decode("utf-8", "replace")


def _headers(raw: Any) -> dict[str, bytes]:
    """Kafka headers as a dict; a header without a value becomes b''."""
    return {str(name): value if isinstance(value, bytes) else b"" for name, value in (raw or [])}


class EventTail:
    def __init__(self, kafka: KafkaSettings, topics: list[str], *, from_beginning: bool) -> None:
        settings: dict[str, Any] = {
            **client_config(kafka),
            "group.id": f"replicator-tail-{uuid.uuid4().hex[:12]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest" if from_beginning else "latest",
        }
        self._consumer = Consumer(settings)
        self._from_beginning = from_beginning
        # Assign directly (no group join wait): every topic here has exactly one partition.
        start = OFFSET_BEGINNING if from_beginning else OFFSET_END
        self._consumer.assign([TopicPartition(t, 0, start) for t in topics])

    def events(self, *, idle_timeout_s: float | None, limit: int | None = None) -> Iterator[RawEvent]:
        seen = 0
        last = time.monotonic()
        while limit is None or seen < limit:
            message = self._consumer.poll(0.2)
            if message is None:
                if idle_timeout_s is not None and time.monotonic() - last > idle_timeout_s:
                    return
                continue
            if message.error() is not None:
                continue  # end-of-partition or a topic not created yet: a diagnostic reader waits on
            last = time.monotonic()
            seen += 1
            yield RawEvent(
                topic=str(message.topic()),
                partition=int(message.partition() or 0),
                offset=int(message.offset() or 0),
                key=_decode(message.key()),
                value=_decode(message.value()),
                headers=_headers(message.headers()),
            )

    def close(self) -> None:
        self._consumer.close()
