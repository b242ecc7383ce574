-- The directory: which database holds each metadata shard, and which shard holds each namespace.
CREATE TABLE shards (
  shard_id INT UNSIGNED NOT NULL PRIMARY KEY,
  host VARCHAR(255) NOT NULL,
  port INT UNSIGNED NOT NULL,
  database_name VARCHAR(64) NOT NULL
) ENGINE=InnoDB;

CREATE TABLE users (
  user_id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  username VARCHAR(64) NOT NULL,
  root_namespace_id BIGINT UNSIGNED NULL,
  created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  UNIQUE KEY users_username (username)
) ENGINE=InnoDB;

CREATE TABLE namespaces (
  namespace_id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  shard_id INT UNSIGNED NOT NULL,
  owner_user_id BIGINT UNSIGNED NOT NULL,
  kind ENUM('root', 'shared') NOT NULL,
  created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  KEY namespaces_owner (owner_user_id)
) ENGINE=InnoDB;
