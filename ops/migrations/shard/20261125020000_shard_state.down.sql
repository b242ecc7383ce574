ALTER TABLE block_shards DROP KEY block_shards_state;
ALTER TABLE block_shards DROP COLUMN state;
