ALTER TABLE file_versions DROP KEY file_versions_revision, DROP KEY file_versions_age;
ALTER TABLE journal DROP COLUMN mounted_namespace_id, DROP COLUMN from_path,
  MODIFY COLUMN operation ENUM('put', 'mkdir', 'delete', 'move') NOT NULL;
ALTER TABLE files DROP KEY files_trash, DROP COLUMN deleted_cursor, DROP COLUMN deleted;
ALTER TABLE namespace_state DROP COLUMN journal_floor, DROP COLUMN used_bytes, DROP COLUMN state;
