-- Recreates the block index's tables as they were before the move (empty: the rows stay in the
-- blockserver's databases).
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
  verified_at TIMESTAMP(3) NULL DEFAULT NULL,
  zero_since TIMESTAMP(3) NULL DEFAULT NULL,
  reserved_until TIMESTAMP(3) NULL DEFAULT NULL,
  lost_at TIMESTAMP(3) NULL DEFAULT NULL,
  write_started_at TIMESTAMP(3) NULL DEFAULT NULL,
  KEY blocks_state (state, updated_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE block_shards (
  hash BINARY(32) NOT NULL,
  shard_index TINYINT UNSIGNED NOT NULL,
  node VARCHAR(64) NOT NULL,
  checksum INT UNSIGNED NOT NULL,
  state ENUM('ok', 'missing', 'unreachable', 'gone', 'rebuilt') NOT NULL DEFAULT 'ok',
  PRIMARY KEY (hash, shard_index),
  KEY block_shards_node (node),
  KEY block_shards_state (state)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE block_uploads (
  hash BINARY(32) NOT NULL,
  user_id BIGINT UNSIGNED NOT NULL,
  uploaded_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  PRIMARY KEY (hash, user_id),
  KEY block_uploads_age (uploaded_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE repair_queue (
  hash BINARY(32) NOT NULL PRIMARY KEY,
  reason VARCHAR(128) NOT NULL,
  enqueued_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  attempts INT UNSIGNED NOT NULL DEFAULT 0,
  next_attempt_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  last_result VARCHAR(512) DEFAULT NULL,
  claimed_by VARCHAR(64) DEFAULT NULL,
  claim_generation BIGINT UNSIGNED NOT NULL DEFAULT 0,
  claim_until TIMESTAMP(3) NULL DEFAULT NULL,
  requeued BOOLEAN NOT NULL DEFAULT FALSE,
  KEY repair_queue_due (next_attempt_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE reference_changes_applied (
  source VARCHAR(64) NOT NULL,
  sequence BIGINT UNSIGNED NOT NULL,
  applied_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  PRIMARY KEY (source, sequence)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
