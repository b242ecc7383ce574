-- Recreates the tables as they were before the move (empty: the rows stay in the blockserver's directory).
CREATE TABLE storage_nodes (
  name VARCHAR(64) NOT NULL PRIMARY KEY,
  state ENUM('active', 'dead') NOT NULL DEFAULT 'active',
  updated_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3)
) ENGINE=InnoDB;

CREATE TABLE reference_sources (
  source VARCHAR(64) NOT NULL PRIMARY KEY,
  delivered_through_ms BIGINT NOT NULL DEFAULT 0,
  oldest_pending_seconds DOUBLE NOT NULL DEFAULT 0,
  reported_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
) ENGINE=InnoDB;
