-- The blockserver's own directory: where its index shards live, the storage nodes' states, and the
-- sources of reference changes it must hear from before collecting (one per metadata shard).
CREATE TABLE index_shards (
  shard_id INT UNSIGNED NOT NULL PRIMARY KEY,
  host VARCHAR(255) NOT NULL,
  port INT UNSIGNED NOT NULL,
  database_name VARCHAR(64) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE storage_nodes (
  name VARCHAR(64) NOT NULL PRIMARY KEY,
  state ENUM('active', 'dead') NOT NULL DEFAULT 'active',
  updated_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- expected: collection waits for this source (registered by the operator when its metadata shard
-- is added); reported_at NULL: it never reported.
CREATE TABLE reference_sources (
  source VARCHAR(64) NOT NULL PRIMARY KEY,
  expected BOOLEAN NOT NULL DEFAULT FALSE,
  delivered_through_ms BIGINT NOT NULL DEFAULT 0,
  oldest_pending_seconds DOUBLE NOT NULL DEFAULT 0,
  reported_at TIMESTAMP(3) NULL DEFAULT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
