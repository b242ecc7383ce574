-- Repair with claims. A repairer claims a queue entry before touching the block: the claim names
-- who holds it (for operators), a generation new with every claim (microseconds of the clock, and
-- always above the entry's last, so an entry finished and queued again never hands out a generation
-- a stalled holder still carries), and a lease after which another repairer may take it over (its
-- holder crashed or hung). Only the holder of the current
-- generation records shards or finishes the entry, so two repairers never both rebuild a block and
-- a holder that lost its claim changes nothing. 'requeued' says a finding arrived while the entry
-- was claimed: finishing keeps the entry (due now) instead of dropping that finding.
ALTER TABLE repair_queue
  ADD COLUMN claimed_by VARCHAR(64) NULL,
  ADD COLUMN claim_generation BIGINT UNSIGNED NOT NULL DEFAULT 0,
  ADD COLUMN claim_until TIMESTAMP(3) NULL,
  ADD COLUMN requeued TINYINT(1) NOT NULL DEFAULT 0;

-- When the write of a block in 'writing' last began (a retry takes the row over and restarts it):
-- a row older than a bound belongs to a write that died, and is swept (its shard objects are then
-- orphans, and the orphan sweep removes them).
ALTER TABLE blocks ADD COLUMN write_started_at TIMESTAMP(3) NULL;
UPDATE blocks SET write_started_at = updated_at WHERE state = 'writing';
