ALTER TABLE blocks DROP COLUMN lost_at;
DROP TABLE repair_queue;
UPDATE block_shards SET state = 'missing' WHERE state IN ('unreachable', 'gone');
UPDATE block_shards SET state = 'ok' WHERE state = 'rebuilt';
ALTER TABLE block_shards MODIFY COLUMN state ENUM('ok', 'missing') NOT NULL DEFAULT 'ok';
