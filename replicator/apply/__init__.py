"""The apply stage: Debezium change events from Kafka, applied to the target with exactly-once effect.

Modules, in pipeline order: `decode` + `logical` (bytes → `replicator.events` value objects, decoders
cached per schema), `routing` (source table → target table, gates, schema evolution), `gate`
(snapshot filters), `batch` (per-table coalescing into an ordered plan), `executor` (plans through a
target writer, with the one-at-a-time fallback and the error policy), `applier` (the consume → plan
→ write loop with the exactly-once bookkeeping), `consumer` (the Kafka side: assignment, seeks,
pauses), `lag` (replication lag).
"""
