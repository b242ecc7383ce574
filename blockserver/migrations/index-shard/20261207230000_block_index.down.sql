DROP TABLE reference_changes_applied;
DROP TABLE repair_queue;
DROP TABLE block_uploads;
DROP TABLE block_shards;
DROP TABLE blocks;
