-- What the index says about a shard is a hint, never a verdict. 'missing': the write could not
-- store it; 'unreachable': its node did not answer when last tried (nothing is known about the
-- bytes); 'gone': proven absent or failing its checksum on a live node; 'rebuilt': repair wrote it
-- on a node other than its first home.
ALTER TABLE block_shards MODIFY COLUMN state ENUM('ok', 'missing', 'unreachable', 'gone', 'rebuilt') NOT NULL DEFAULT 'ok';

-- The repair queue, durable: a restart loses no pending repair. One row per block; retried with
-- back-off until every shard is stored again (or the block is proven lost).
CREATE TABLE repair_queue (
  hash BINARY(32) NOT NULL PRIMARY KEY,
  reason VARCHAR(128) NOT NULL,
  enqueued_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  attempts INT UNSIGNED NOT NULL DEFAULT 0,
  next_attempt_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  last_result VARCHAR(512) NULL,
  KEY repair_queue_due (next_attempt_at)
) ENGINE=InnoDB;

-- Set when repair proves more than m shards gone: the sweep stops re-queueing the block (an upload
-- of its bytes makes it whole and clears the mark).
ALTER TABLE blocks ADD COLUMN lost_at TIMESTAMP(3) NULL;
