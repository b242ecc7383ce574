-- The block index moved to the blockserver's own databases (blockserver/migrations/index-shard):
-- the cluster's start copied these tables' rows there before this migration drops them.
DROP TABLE reference_changes_applied;
DROP TABLE repair_queue;
DROP TABLE block_uploads;
DROP TABLE block_shards;
DROP TABLE blocks;
