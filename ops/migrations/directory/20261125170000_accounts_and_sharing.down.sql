DROP TABLE share_links;
DROP TABLE mounts;
DROP TABLE devices;
ALTER TABLE users DROP COLUMN quota_bytes, DROP COLUMN password_hash;
