"""The reconcile stage: prove that the target holds exactly the source's rows, under live writes.

Encoding (replicator/canonical.py): each value has one canonical text per family, computed inside
each database by that engine's SQL (replicator/dialects/*_hash.py), identical for equal values on
PostgreSQL and MySQL/MariaDB; a row hashes to the first 64 bits of the md5 of its canonical text.

A pass (replicator/reconcile/checker.py) cuts each table's key space into ranges (text keys in byte
order on both sides: `COLLATE "C"`, `CAST(… AS BINARY)`), hashes each range on both sides at once
(row count and sum of row hashes modulo 2^64, one query a side), bisects a range whose checksums
differ down to `leaf_rows` rows, and merges both sides' rows of such a range in key order. A range
whose rows differ is a *suspect*: the two sides were read at different moments, and the target lags
the source by the stream's delay, so a pass alone proves nothing about it.

Anchored recheck (replicator/reconcile/anchor.py) of a table's suspects, exact under live writes:
1. hold: a reconcile gate stops the table's apply (written in a transaction that locks the table's
   offset row, as every apply batch does: no batch planned before it can commit after it);
2. a consistent read view S of the source (PostgreSQL: REPEATABLE READ snapshot, with xmin, xmax,
   in-progress xids and the WAL insert LSN read in the same statement, as the snapshot copier does;
   MariaDB: `START TRANSACTION WITH CONSISTENT SNAPSHOT` and its binlog position). Every event
   applied before the hold committed on the source before S was taken, so S holds it;
3. cut at S: the applier applies the table's events visible in S, in order, and stops before the
   first one that is not (replicator.apply.gate);
4. reached: the target shows exactly S for the table when the event the applier stands before lies
   beyond S's stream position (every event before it was visible in S and is applied; every event
   visible in S lies before it, the topic being in commit order), or when nothing of the table after
   S is in Kafka: a watermark row written on the source after S is seen in its topic, then the table
   topic's high watermark H is read, the applier's next offset is at H, and the topic read from
   that offset holds no change event up to its end (read, because a broker may report a stale H:
   the local stack's did, below offsets already applied). "Applied through S" for
   a table whose topic saw no event after S thus rests on the watermark row: the connector writes
   changes in commit order through one producer, so the table's events committed before the
   watermark are in its topic by the time the watermark is. A stop at an event that is invisible in
   S but below its position (a PostgreSQL transaction still in progress when S was taken) proves
   nothing: the view is dropped and another taken (`reconcile.rechecks` attempts);
5. the suspect ranges are compared again, the source in S and the target frozen at S: what differs
   now is a confirmed difference, at a proven common position, and is reported with its columns and
   both values; what does not was lag. A table whose recheck could not reach S is `unsettled` (never
   `equal`), and the report says why;
6. `--repair`: while the table stays cut at S, the source rows of S are written into the target
   through the applier's writer (upsert, delete by key; append and delete-exactly-one without a key)
   in one transaction; the applier then resumes at the first event after S, so no newer value is
   ever overwritten by an older one. The ranges are compared again (still at S);
7. release: the gate is removed and the applier resumes exactly where it stopped.
When the source is quiet (after fencing at cutover) and the applier has caught up, the pass itself
reads both sides at the same position, so a single pass is exact; a difference is still confirmed
through steps 1-5, which then reach S at once.

Crash: the gates are rows in our state schema; a reconciler killed between hold and release leaves
the table's apply paused, and the next `replicator reconcile` removes reconcile gates left behind
before it starts. Nothing else is written (repairs are one transaction each).

The final check (`--changed`, replicator.reconcile.changes and replicator.apply.marks): a pass over
a table the applier applies first installs a bucket scheme (split points of the source) as a track
gate; from its commit on, every batch that applies an event of the table marks the event's bucket
with the event's Kafka offset in the same transaction (a batch planned without the gate is voided
under its offset locks, as for every gate). Before each chunk's target side is hashed the pass
reads the table's stored next offset; a clean pass is recorded with those offsets. `--changed` then
rechecks only the buckets marked at or after the offset read for the chunks overlapping them (plus
the whole table after a truncate or a column added, or when no clean pass is recorded): every
other bucket held equal rows when it was hashed and no applied event has touched it since — and
once the source is fenced and drained, every source change has gone through the applier. A crash
loses nothing: marks commit with the rows, a pass is recorded only complete and clean.
"""
