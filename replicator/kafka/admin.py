"""Topic layout: every table topic has exactly one partition.

Why: a table's events are applied in Kafka order, which equals source commit order only within one
partition. Rows without a key (null key), truncates and primary-key changes (delete under the old key,
create under the new one) would otherwise land on different partitions and could be applied out of
order. So topics are created with one partition before the connector starts, and an existing table
topic with more than one partition is refused.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]  # re-exported, untyped

from replicator.config import KafkaSettings
from replicator.errors import ServiceUnreachableError, TopicLayoutError

# librdkafka writes connection errors to stderr unless given a logger: route them to ours, quiet by
# default, so that an unreachable broker gives the one line below, not a stream of log lines.
librdkafka_log = logging.getLogger("replicator.librdkafka")


def client_config(kafka: KafkaSettings) -> dict[str, Any]:
    return {**kafka.client_options(), "logger": librdkafka_log}


# A reader that waits for one message it knows is coming (a watermark, a stream position) asks for
# it often: a broker that does not answer a fetch as soon as data arrives (the local stack's Tansu)
# otherwise holds each fetch for fetch.wait.max.ms (500 ms): the watermark proof took 0.25 s, with
# this 0.09-0.12 s. Before the user's kafka.options, which may set it otherwise.
PROMPT_READER: dict[str, Any] = {"fetch.wait.max.ms": 25}


def prompt_reader_config(kafka: KafkaSettings) -> dict[str, Any]:
    """client_config for a short-lived consumer waiting for a known message."""
    return {**PROMPT_READER, **client_config(kafka)}


class TopicAdmin:
    def __init__(self, kafka: KafkaSettings, timeout_s: float = 10.0) -> None:
        self._kafka = kafka
        self._timeout_s = timeout_s
        self._admin = AdminClient(client_config(kafka))

    def partition_counts(self) -> dict[str, int]:
        """Every topic and its partition count. Lists all topics: asking for one by name could
        auto-create it with the broker's default partition count."""
        return self.cluster()[1]

    def cluster(self) -> tuple[int, dict[str, int]]:
        """How many brokers the cluster metadata lists, and every topic with its partition count."""
        try:
            metadata = self._admin.list_topics(timeout=self._timeout_s)
        except KafkaException as exc:
            raise ServiceUnreachableError(
                f"cannot reach Kafka at {self._kafka.bootstrap_servers}: {_reason(exc)}",
                hint="check kafka.bootstrap_servers (and kafka.options for TLS/SASL)",
            ) from None
        topics = {name: len(topic.partitions) for name, topic in metadata.topics.items() if topic.error is None}
        return len(metadata.brokers), topics

    def ensure_single_partition(self, topics: Iterable[str], replication_factor: int) -> list[str]:
        """Create the missing topics with one partition; refuse existing ones with more. Returns the
        topics created."""
        wanted = sorted(set(topics))
        existing = self.partition_counts()
        crowded = [f"{t} ({existing[t]} partitions)" for t in wanted if existing.get(t, 1) > 1]
        if crowded:
            raise TopicLayoutError(
                f"table topic(s) with more than one partition: {', '.join(crowded)}",
                hint="per-table order needs one partition: delete and recreate them with 1 partition",
            )
        missing = [t for t in wanted if t not in existing]
        if not missing:
            return []
        futures = self._admin.create_topics(
            [NewTopic(t, num_partitions=1, replication_factor=replication_factor) for t in missing],
            operation_timeout=self._timeout_s,
            request_timeout=self._timeout_s,
        )
        for topic, future in futures.items():
            try:
                future.result()
            except KafkaException as exc:
                if exc.args and exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    continue
                raise ServiceUnreachableError(f"cannot create topic {topic}: {_reason(exc)}") from None
        after = self.partition_counts()
        crowded = [f"{t} ({after[t]} partitions)" for t in missing if after.get(t, 1) > 1]
        if crowded:
            raise TopicLayoutError(f"topic(s) created with more than one partition: {', '.join(crowded)}")
        return missing

    def delete_topics(self, topics: Iterable[str]) -> None:
        names = sorted(set(topics))
        if not names:
            return
        for future in self._admin.delete_topics(names, operation_timeout=self._timeout_s).values():
            try:
                future.result()
            except KafkaException as exc:
                if exc.args and exc.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                    continue
                raise


def _reason(exc: KafkaException) -> str:
    error = exc.args[0] if exc.args else None
    if isinstance(error, KafkaError):
        return str(error.str())
    return str(exc)
