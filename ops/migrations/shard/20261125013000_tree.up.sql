-- A namespace's tree, versions and journal live together on its shard, so that every commit is
-- one ACID transaction. Paths are keyed by their case-folded form (collisions are case-insensitive).
CREATE TABLE namespace_state (
  namespace_id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  cursor_position BIGINT UNSIGNED NOT NULL DEFAULT 0
) ENGINE=InnoDB;

CREATE TABLE files (
  namespace_id BIGINT UNSIGNED NOT NULL,
  path_key VARBINARY(3000) NOT NULL,
  parent_key_hash BINARY(16) NOT NULL,
  path TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  is_folder BOOLEAN NOT NULL,
  revision BIGINT UNSIGNED NOT NULL,
  size BIGINT UNSIGNED NOT NULL,
  block_list MEDIUMBLOB NOT NULL,
  cursor_position BIGINT UNSIGNED NOT NULL,
  modified_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  PRIMARY KEY (namespace_id, path_key),
  KEY files_children (namespace_id, parent_key_hash)
) ENGINE=InnoDB;

CREATE TABLE file_versions (
  namespace_id BIGINT UNSIGNED NOT NULL,
  path_key VARBINARY(3000) NOT NULL,
  revision BIGINT UNSIGNED NOT NULL,
  size BIGINT UNSIGNED NOT NULL,
  block_list MEDIUMBLOB NOT NULL,
  cursor_position BIGINT UNSIGNED NOT NULL,
  created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  PRIMARY KEY (namespace_id, path_key, revision)
) ENGINE=InnoDB;

CREATE TABLE journal (
  namespace_id BIGINT UNSIGNED NOT NULL,
  cursor_position BIGINT UNSIGNED NOT NULL,
  path TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  operation ENUM('put', 'mkdir', 'delete', 'move') NOT NULL,
  revision BIGINT UNSIGNED NOT NULL,
  created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  PRIMARY KEY (namespace_id, cursor_position)
) ENGINE=InnoDB;

-- Idempotency: the first result of each request id, returned again on retry.
CREATE TABLE commit_requests (
  namespace_id BIGINT UNSIGNED NOT NULL,
  request_id VARCHAR(64) NOT NULL,
  path_key VARBINARY(3000) NOT NULL,
  revision BIGINT UNSIGNED NOT NULL,
  created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  PRIMARY KEY (namespace_id, request_id)
) ENGINE=InnoDB;
