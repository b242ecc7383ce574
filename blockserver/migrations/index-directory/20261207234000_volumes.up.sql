-- Volumes: small blocks packed as records into open volumes, each segment of which is written as
-- full copies on the volume's replicas. A block row names (volume, offset); a volume names where it
-- lives and in which state, so sealing or moving a volume does not rewrite every block row.
CREATE TABLE volumes (
  volume_id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  state ENUM('open', 'sealed', 'compacting', 'deleted') NOT NULL DEFAULT 'open',
  generation INT UNSIGNED NOT NULL DEFAULT 1,
  -- The storage nodes holding the open volume's copies, comma-separated, in preference order.
  replicas VARCHAR(512) NOT NULL,
  -- Bytes of records appended (the next segment starts here), and of records blocks point at.
  size BIGINT UNSIGNED NOT NULL DEFAULT 0,
  live_bytes BIGINT NOT NULL DEFAULT 0,
  created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  sealed_at TIMESTAMP(3) NULL DEFAULT NULL,
  KEY volumes_state (state)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- One appended segment of a volume: [start, start + length) of its record stream, one object per
-- replica; missing: replicas that did not store it (to be copied from the others).
CREATE TABLE volume_segments (
  volume_id BIGINT UNSIGNED NOT NULL,
  start BIGINT UNSIGNED NOT NULL,
  length INT UNSIGNED NOT NULL,
  missing VARCHAR(512) NOT NULL DEFAULT '',
  created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  PRIMARY KEY (volume_id, start)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
