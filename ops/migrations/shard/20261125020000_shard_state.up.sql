-- A shard the write could not place (its node was down) is recorded as missing, so that repair
-- knows what to rebuild; a block is acknowledged once its write quorum of shards is stored.
ALTER TABLE block_shards ADD COLUMN state ENUM('ok', 'missing') NOT NULL DEFAULT 'ok';
ALTER TABLE block_shards ADD KEY block_shards_state (state);
