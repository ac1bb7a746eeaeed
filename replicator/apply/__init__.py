"""The apply stage: Debezium change events from Kafka, applied to the target with exactly-once effect.

Modules, in pipeline order: `events` (value objects), `decode` (bytes → events, decoders cached per
schema), `batch` (per-table coalescing into an ordered plan), `applier` (the consume → plan → write
loop with the exactly-once bookkeeping), `consumer` (the Kafka side: assignment, seeks, pauses).
"""
