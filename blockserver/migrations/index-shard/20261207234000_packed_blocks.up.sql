-- A packed block: its record at volume_offset of volume volume_id (NULL: erasure-coded on its own,
-- its shards in block_shards).
ALTER TABLE blocks ADD COLUMN volume_id BIGINT UNSIGNED NULL DEFAULT NULL, ADD COLUMN volume_offset BIGINT UNSIGNED NULL DEFAULT NULL,
  ADD KEY blocks_volume (volume_id);
