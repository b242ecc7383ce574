-- Accounts: a scrypt password hash and a quota on logical bytes (NULL: the server's default).
ALTER TABLE users ADD COLUMN password_hash VARCHAR(255) NULL, ADD COLUMN quota_bytes BIGINT UNSIGNED NULL;

-- Devices signed in per user. The refresh token is stored as its SHA-256 only, and rotates on use.
CREATE TABLE devices (
  device_id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  user_id BIGINT UNSIGNED NOT NULL,
  name VARCHAR(128) CHARACTER SET utf8mb4 NOT NULL,
  refresh_hash BINARY(32) NULL,
  refresh_expires_at TIMESTAMP(3) NULL,
  created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  last_seen_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  UNIQUE KEY devices_user_name (user_id, name),
  UNIQUE KEY devices_refresh (refresh_hash)
) ENGINE=InnoDB;

-- Where each namespace appears in each member's tree, and with which role. Every user mounts
-- their root namespace at "/"; a shared folder is mounted by its owner and every member.
CREATE TABLE mounts (
  user_id BIGINT UNSIGNED NOT NULL,
  namespace_id BIGINT UNSIGNED NOT NULL,
  path VARCHAR(1024) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  path_key VARBINARY(3000) NOT NULL,
  role ENUM('owner', 'editor', 'viewer') NOT NULL,
  created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  PRIMARY KEY (user_id, namespace_id),
  UNIQUE KEY mounts_user_path (user_id, path_key(255)),
  KEY mounts_namespace (namespace_id)
) ENGINE=InnoDB;

-- Share links: the URL carries a signed token naming the link; revoking flips revoked_at.
CREATE TABLE share_links (
  link_id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  user_id BIGINT UNSIGNED NOT NULL,
  namespace_id BIGINT UNSIGNED NOT NULL,
  path VARCHAR(1024) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  expires_at TIMESTAMP(3) NOT NULL,
  revoked_at TIMESTAMP(3) NULL,
  created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  KEY share_links_user (user_id)
) ENGINE=InnoDB;

INSERT INTO mounts (user_id, namespace_id, path, path_key, role)
  SELECT user_id, root_namespace_id, '/', '/', 'owner' FROM users WHERE root_namespace_id IS NOT NULL;
