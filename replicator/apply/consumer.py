"""The Kafka side of the applier: group membership, seeks to our stored offsets, pauses, watermarks.

Ordering rules this module relies on and enforces:
* Every partition the group gives us starts at the offset stored in the target's state schema,
  never at Kafka's committed offset (`auto.offset.reset=error`, and the rebalance callback sets the
  position before the first fetch). Kafka's committed offsets are written for monitoring tools only.
* A stored offset below the log start (retention deleted unapplied events) or above the high
  watermark (the broker lost data) halts with one line: continuing would lose or skip changes.
* A table topic with more than one partition is refused: only a single partition keeps the
  source's commit order for the table.
* Messages fetched before a rebalance for a partition we no longer own are dropped by the caller
  (`generation` changes on every assignment).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition

from replicator.config import KafkaSettings
from replicator.dialects.base import Partition, StoredOffset
from replicator.errors import ReplicatorError, ServiceUnreachableError, TopicLayoutError
from replicator.kafka.admin import client_config
from replicator.model import heartbeat_topic

log = logging.getLogger(__name__)

OffsetLoader = Callable[[list[Partition]], dict[Partition, StoredOffset]]


class OffsetRangeError(ReplicatorError):
    """A stored offset lies outside what the broker holds."""


def support_topics(prefix: str) -> set[str]:
    """Topics under the prefix that hold no row changes of a table."""
    return {f"{prefix}.transaction", f"{prefix}.message", f"{prefix}.schema-history", prefix, heartbeat_topic(prefix)}


class ChangeConsumer:
    """One consumer in the apply group; positions always come from `load_offsets` (our state)."""

    def __init__(self, kafka: KafkaSettings, group_id: str, load_offsets: OffsetLoader, *,
                 on_assigned: Callable[[list[Partition]], None] | None = None,
                 session_timeout_ms: int = 10000, max_poll_interval_ms: int = 300000,
                 schema_change_topic: bool = False) -> None:
        self._prefix = kafka.topic_prefix
        self._load_offsets = load_offsets
        self._on_assigned = on_assigned
        self._fatal: BaseException | None = None
        self._unfinished: list[TopicPartition] | None = None
        self.assigned: set[Partition] = set()
        self.generation = 0
        config: dict[str, Any] = {
            **client_config(kafka),
            "group.id": group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "error",
            "partition.assignment.strategy": "roundrobin",
            "session.timeout.ms": session_timeout_ms,
            "heartbeat.interval.ms": max(500, session_timeout_ms // 6),
            "max.poll.interval.ms": max_poll_interval_ms,
            "topic.metadata.refresh.interval.ms": 10000,
            "fetch.wait.max.ms": 100,
            # librdkafka puts the next fetch off for up to this long once its prefetch queue is
            # full, which it always is when the consumer (us) is slower than the broker: 1000 ms by
            # default, which left the applier waiting in consume() 65% of the time (tests/perf).
            "fetch.queue.backoff.ms": 10,
            # One fetch brings up to 8 MiB of a partition instead of 1 MiB (~170 events of 6 KiB):
            # fewer round trips to the broker while the applier is busy (+12% events/s, tests/perf).
            # The prefetch queue stays bounded by queued.max.messages.kbytes (64 MiB by default).
            "max.partition.fetch.bytes": 8 * 1024 * 1024,
        }
        config.update(kafka.options)  # the operator's librdkafka options win
        self._reader_config = {**client_config(kafka), "auto.offset.reset": "error"}
        self._consumer = Consumer(config)
        pattern = "^" + re.escape(self._prefix) + r"\..+"
        # The MySQL connector's schema-change topic is the bare prefix; PostgreSQL has none.
        topics = [pattern, heartbeat_topic(self._prefix)] + ([self._prefix] if schema_change_topic else [])
        self._consumer.subscribe(
            topics,
            on_assign=self._assign, on_revoke=self._revoke, on_lost=self._revoke,
        )

    # -- rebalance callbacks (run inside consume()) ----------------------------------------------
    def _assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        try:
            self._take(partitions)
        except BaseException as exc:  # surfaced from poll(); librdkafka would swallow it otherwise
            self._fatal = exc
            self._unfinished = partitions  # the group gave them to us: finish_assignment() retries
            consumer.assign([])

    def _take(self, partitions: list[TopicPartition]) -> None:
        self._check_layout(partitions)
        wanted = [(tp.topic, tp.partition) for tp in partitions]
        stored = self._load_offsets(wanted)
        for tp in partitions:
            tp.offset = self._start_offset((tp.topic, tp.partition), stored.get((tp.topic, tp.partition)))
        self._consumer.assign(partitions)
        self.assigned = set(wanted)
        self.generation += 1
        log.info("assigned %d partitions", len(partitions))
        if self._on_assigned is not None:
            self._on_assigned(wanted)

    def finish_assignment(self) -> None:
        """Retry an assignment whose start offsets could not be read in the rebalance callback (the
        target was away): the group still counts those partitions as ours until the next rebalance."""
        if self._unfinished is not None:
            partitions = [TopicPartition(tp.topic, tp.partition) for tp in self._unfinished]
            self._take(partitions)
            self._unfinished = None

    def _revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        consumer.unassign()
        self.assigned = set()
        self._unfinished = None
        self.generation += 1

    def _check_layout(self, partitions: list[TopicPartition]) -> None:
        support = support_topics(self._prefix)
        for topic in sorted({tp.topic for tp in partitions} - support):
            if topic.startswith("__"):
                continue
            metadata = self._consumer.list_topics(topic, timeout=10)
            count = len(metadata.topics[topic].partitions) if topic in metadata.topics else 0
            if count > 1:
                raise TopicLayoutError(
                    f"topic {topic} has {count} partitions; a table topic must have exactly 1 to keep "
                    "the source's commit order",
                    hint="recreate it with one partition and re-register the connector (replicator connectors apply)",
                )

    def _start_offset(self, partition: Partition, stored: StoredOffset | None) -> int:
        topic, number = partition
        low, high = self.watermarks(partition)
        next_offset = stored.next_offset if stored is not None else None
        if next_offset is None:
            if low > 0:
                raise OffsetRangeError(
                    f"{topic}[{number}]: nothing applied yet but the log starts at offset {low}: "
                    "retention deleted change events before they were applied",
                    hint="raise the topic's retention and re-seed the table (snapshot), then start apply again",
                )
            return OFFSET_BEGINNING
        if next_offset < low:
            raise OffsetRangeError(
                f"{topic}[{number}]: the next event to apply is offset {next_offset} but the log starts at {low}: "
                "retention deleted unapplied change events",
                hint="raise the topic's retention and re-seed the table (snapshot)",
            )
        # Some brokers (Tansu) report the last record batch's base offset + 1 as the high watermark,
        # not the log end: above it, read the last event we applied to be sure it is still there.
        if next_offset > high and not self._holds(partition, next_offset - 1):
            raise OffsetRangeError(
                f"{topic}[{number}]: we applied up to offset {next_offset} but the broker holds only up to {high}: "
                "the broker lost acknowledged data",
                hint="restore the broker's data, or re-seed the target (snapshot) and reset our state",
            )
        return next_offset

    def _holds(self, partition: Partition, offset: int, timeout_s: float = 5.0) -> bool:
        """Whether the broker still has the record at `offset` (a throw-away reader, no group)."""
        reader = Consumer({**self._reader_config, "group.id": "replicator-probe", "enable.auto.commit": False})
        try:
            reader.assign([TopicPartition(partition[0], partition[1], offset)])
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                message = reader.poll(0.5)
                if message is not None and message.error() is None:
                    return message.offset() == offset
            return False
        finally:
            reader.close()

    # -- polling -------------------------------------------------------------------------------
    def consume(self, max_messages: int, timeout_s: float) -> list[Message]:
        try:
            messages = self._consumer.consume(num_messages=max_messages, timeout=timeout_s)
        except KafkaException as exc:
            raise ServiceUnreachableError(f"Kafka consumer failed: {exc}",
                                          hint="check kafka.bootstrap_servers and the brokers") from None
        if self._fatal is not None:
            fatal, self._fatal = self._fatal, None
            raise fatal
        good = []
        for message in messages:
            error = message.error()
            if error is None:
                good.append(message)
            elif error.code() in (KafkaError._PARTITION_EOF, KafkaError.UNKNOWN_TOPIC_OR_PART):
                continue  # a subscribed topic not created yet (no event so far): not an error
            elif error.code() == KafkaError._AUTO_OFFSET_RESET:
                raise OffsetRangeError(
                    f"{message.topic()}[{message.partition()}]: the next offset we stored is outside the broker's "
                    f"log ({error.str()}): the broker lost acknowledged data, or retention deleted unapplied events",
                    hint="restore the broker's data, or re-seed the table (snapshot) and reset our state")
            elif error.fatal() or not error.retriable():
                raise ServiceUnreachableError(f"Kafka consumer error: {error.str()}",
                                              hint="check the brokers and the topic")
            else:
                log.warning("transient Kafka error: %s", error.str())
        return good

    def seek(self, partition: Partition, offset: int | None) -> None:
        topic, number = partition
        self._consumer.seek(TopicPartition(topic, number, OFFSET_BEGINNING if offset is None else offset))

    def pause(self, partitions: list[Partition]) -> None:
        if partitions:
            self._consumer.pause([TopicPartition(t, p) for t, p in partitions])

    def resume(self, partitions: list[Partition]) -> None:
        if partitions:
            self._consumer.resume([TopicPartition(t, p) for t, p in partitions])

    def watermarks(self, partition: Partition, cached: bool = False) -> tuple[int, int]:
        topic, number = partition
        try:
            low, high = self._consumer.get_watermark_offsets(TopicPartition(topic, number), timeout=10, cached=cached)
        except KafkaException as exc:
            raise ServiceUnreachableError(f"cannot read the offsets of {topic}[{number}]: {exc}",
                                          hint="check the brokers") from None
        return int(low), int(high)

    def fetched_high_watermark(self, partition: Partition) -> int:
        """The high watermark the last fetch response carried (no broker round trip); -1 if none."""
        try:
            _, high = self._consumer.get_watermark_offsets(TopicPartition(*partition), cached=True)
        except KafkaException:
            return -1
        return int(high) if high is not None and high >= 0 else -1

    def commit_for_monitoring(self, offsets: dict[Partition, int]) -> None:
        """Kafka's committed offsets mirror ours so that lag tools see progress; never read back."""
        if not offsets:
            return
        try:
            self._consumer.commit(
                offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()], asynchronous=True
            )
        except KafkaException as exc:
            log.debug("monitoring commit failed: %s", exc)

    def close(self) -> None:
        try:
            self._consumer.close()
        except (KafkaException, RuntimeError) as exc:
            log.debug("consumer close: %s", exc)
