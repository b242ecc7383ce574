ALTER TABLE blocks DROP COLUMN write_started_at;
ALTER TABLE repair_queue DROP COLUMN requeued, DROP COLUMN claim_until, DROP COLUMN claim_generation, DROP COLUMN claimed_by;
