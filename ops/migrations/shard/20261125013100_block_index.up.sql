-- The block index, sharded by block hash (not by namespace): where each block's shards live.
CREATE TABLE blocks (
  hash BINARY(32) NOT NULL PRIMARY KEY,
  size INT UNSIGNED NOT NULL,
  data_shards TINYINT UNSIGNED NOT NULL,
  parity_shards TINYINT UNSIGNED NOT NULL,
  shard_size INT UNSIGNED NOT NULL,
  state ENUM('writing', 'live', 'deleting') NOT NULL,
  ref_count BIGINT NOT NULL DEFAULT 0,
  created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  updated_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
  verified_at TIMESTAMP(3) NULL,
  KEY blocks_state (state, updated_at)
) ENGINE=InnoDB;

CREATE TABLE block_shards (
  hash BINARY(32) NOT NULL,
  shard_index TINYINT UNSIGNED NOT NULL,
  node VARCHAR(64) NOT NULL,
  checksum INT UNSIGNED NOT NULL,
  PRIMARY KEY (hash, shard_index),
  KEY block_shards_node (node)
) ENGINE=InnoDB;
