"""The snapshot stage: seed the target with the source's rows and hand each table to the change stream
exactly — no event lost, none applied twice, no row moving backwards, without locking the source.

What is visible where
* The connector streams before the first chunk is read, and this is proven: a token written to our
  watermark table on the source is seen arriving in its Kafka topic (replicator.kafka.watermark).
  Every source transaction that commits after the token's is therefore in Kafka, in commit order.
* Each chunk is read in a consistent read view V of the source whose stream position is recorded
  with the chunk in the ledger. PostgreSQL: all chunks of a run read one exported snapshot; its
  position is (xmin, xmax, in-progress xids) and the WAL insert LSN L read in the same statement.
  MySQL/MariaDB: each worker's `START TRANSACTION WITH CONSISTENT SNAPSHOT` (REPEATABLE READ set
  explicitly) and its binlog position (MariaDB: `binlog_snapshot_file/position`, no lock).
* An event E of the table is in the copy of its chunk (the chunk whose key range holds E's key,
  ranges compared in byte order exactly as the database ordered them) iff E's transaction is visible
  in V: PostgreSQL — E's LSN < L and E's xid (Debezium's 32-bit txId widened next to xmax) is
  visible in the snapshot; MySQL — E's binlog (file number, position) is before V's.

The hand-off
1. Hold: the table's gate is set to `hold` in a transaction that first locks the offset rows of its
   topic, the rows every apply batch locks first; a batch re-reads the gates after that lock and is
   voided when they changed since it was planned. From the hold's commit on, no event of the table
   is applied (its partition is paused; its offset stays where it was).
2. Copy: the transaction that fixes the table's plan in the ledger also empties the target table
   (rows the applier wrote before the hold: their transactions committed before any V was taken,
   so every V holds them or their successors) and, on PostgreSQL, drops its primary key for the
   load (the statement that adds it back is in the same ledger row). Then one target transaction
   per chunk loads the chunk's rows as V sees them and records the chunk with V's position. The
   chunk ranges are disjoint and nothing else writes the held table, so a chunk's range holds
   nothing until its transaction commits; the primary key is added back before the release.
3. Release: the gate becomes `filter`, carrying each chunk's range and position. The applier
   resumes at the table's stored offset and applies an event unless the copy of its chunk holds it
   (see above). Events not visible in V are exactly the ones the copy lacks, and Kafka holds all of
   them after the stored offset: those committed before the hold were applied before it or are
   after the offset; those committed after the watermark are in Kafka. So each row ends in the
   source's state, a table without a primary key gets no duplicate, and no row moves backwards
   (an event older than the copied row is never re-applied on top of it). A truncate has no key:
   it is skipped when every chunk's view saw it and applied when none did; one that falls between
   the views of a resumed copy's chunks empties the key ranges of the chunks read before it, and
   only those, in its place in the stream: their rows predate it, and their events after their
   views (the refill) apply after it; the other chunks were read after it, with its effect and
   the refill, whose events they skip. (The filter records the key and how it orders for that; a
   filter written by an older version does not, and such a truncate is refused through the error
   policy, naming the table to copy again with `--restart`.)

What a crash leaves (kill -9 at any point, then `replicator snapshot` again)
* before the plan's transaction commits: nothing of the table's copy exists; it starts over (a
  MySQL target, whose TRUNCATE commits on its own, removes the entry, empties the table, then
  writes the plan: a crash between leaves no entry, so the table is planned and emptied again);
* before or during a chunk's transaction: the chunk is not in the ledger and its rows are not in
  the target (rolled back); it is copied again, in the new run's view, whose position is recorded
  with it — the filter is per chunk, so chunks of one table may carry different positions;
* after a chunk committed: it is in the ledger and is not copied again;
* after all chunks, before the release: the table is still held; the next run adds the primary
  key back (if it is not there yet), compares counts and releases it; after the release: the table
  is done (`--restart` copies it again on purpose: hold, new plan — the table emptied, a key still
  dropped by an unfinished copy carried over — new filter).
The plan (chunk bounds) is fixed in the ledger before the first chunk and reused on resume, so
chunk numbers always mean the same key ranges, and the ranges cover the key space exactly.

Counts: per chunk, rows read from the source = rows loaded; per table, rows in the target = rows
the ledger recorded (nothing else writes a held table), and = rows of the source in V when every
chunk was read in V. Sequences and auto-increment values are recorded per table for the cutover.
"""
