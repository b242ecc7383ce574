-- Operator-declared storage node states, shared by every blockserver: a dead node's shards are
-- rebuilt onto the others and nothing new is placed on it.
CREATE TABLE storage_nodes (
  name VARCHAR(64) NOT NULL PRIMARY KEY,
  state ENUM('active', 'dead') NOT NULL DEFAULT 'active',
  updated_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3)
) ENGINE=InnoDB;
