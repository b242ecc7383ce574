DROP TABLE block_reference_outbox;
DROP TABLE reference_changes_applied;
ALTER TABLE blocks DROP COLUMN reserved_until, DROP COLUMN zero_since;
