-- state: 'moving' holds writes while a namespace switches shards; 'moved' sends them to the new
-- shard. used_bytes: logical bytes of current files (quotas). journal_floor: entries at or below
-- it were compacted away, so a device behind it must reset.
ALTER TABLE namespace_state
  ADD COLUMN state ENUM('active', 'moving', 'moved') NOT NULL DEFAULT 'active',
  ADD COLUMN used_bytes BIGINT UNSIGNED NOT NULL DEFAULT 0,
  ADD COLUMN journal_floor BIGINT UNSIGNED NOT NULL DEFAULT 0;

-- The trash: a deleted entry keeps its row (and versions) until it is purged. deleted_cursor
-- groups what one delete removed, so that an undelete brings back exactly that.
ALTER TABLE files
  ADD COLUMN deleted BOOLEAN NOT NULL DEFAULT FALSE,
  ADD COLUMN deleted_cursor BIGINT UNSIGNED NULL,
  ADD KEY files_trash (namespace_id, deleted, modified_at);

ALTER TABLE journal
  MODIFY COLUMN operation ENUM('put', 'mkdir', 'delete', 'move', 'mount') NOT NULL,
  ADD COLUMN from_path TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
  ADD COLUMN mounted_namespace_id BIGINT UNSIGNED NULL;

ALTER TABLE file_versions ADD KEY file_versions_age (namespace_id, created_at), ADD KEY file_versions_revision (namespace_id, revision);
