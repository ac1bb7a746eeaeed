"""The dead-letter topic: events that failed for good under `apply.error_policy: dead-letter`.

Each letter is produced with the original record as its value (None when it is not at hand) and
headers naming where it came from and why. Publishing happens before the batch commits, so a crash
in between can repeat a letter in the topic but never lose one; our `dead_letters` state table,
written in the batch transaction, holds each exactly once.
"""

from __future__ import annotations

from confluent_kafka import KafkaException, Producer

from replicator.config import KafkaSettings
from replicator.dialects.base import DeadLetter
from replicator.errors import ServiceUnreachableError
from replicator.kafka.admin import client_config


class KafkaDeadLetterSink:
    def __init__(self, kafka: KafkaSettings, topic: str) -> None:
        self._topic = topic
        self._producer = Producer({**client_config(kafka), "acks": "all", "enable.idempotence": True})

    def publish(self, letters: list[DeadLetter]) -> None:
        if not letters:
            return
        try:
            for letter in letters:
                headers: list[tuple[str, str | bytes | None]] = [
                    ("replicator.source.topic", letter.topic.encode()),
                    ("replicator.source.partition", str(letter.partition).encode()),
                    ("replicator.source.offset", str(letter.offset).encode()),
                    ("replicator.reason", letter.reason.encode()),
                ]
                if letter.table is not None:
                    headers.append(("replicator.table", letter.table.encode()))
                self._producer.produce(self._topic, value=letter.record,
                                       key=letter.key.encode() if letter.key else None, headers=headers)
            remaining = self._producer.flush(30)
        except (KafkaException, BufferError) as exc:
            raise ServiceUnreachableError(f"cannot write to the dead-letter topic {self._topic}: {exc}",
                                          hint="check the brokers") from None
        if remaining:
            raise ServiceUnreachableError(f"{remaining} dead letter(s) not acknowledged by the brokers in 30 s",
                                          hint="check the brokers")
