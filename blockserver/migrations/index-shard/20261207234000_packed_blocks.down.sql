ALTER TABLE blocks DROP KEY blocks_volume, DROP COLUMN volume_offset, DROP COLUMN volume_id;
