DROP TABLE block_shards;
DROP TABLE blocks;
