-- Reference counting for garbage collection. zero_since: when the count last dropped to zero
-- (the grace period runs from then); reserved_until: a commit's lease protecting the block.
ALTER TABLE blocks ADD COLUMN zero_since TIMESTAMP(3) NULL, ADD COLUMN reserved_until TIMESTAMP(3) NULL;

-- Reference changes already applied, by source and sequence: retries apply nothing twice.
CREATE TABLE reference_changes_applied (
  source VARCHAR(64) NOT NULL,
  sequence BIGINT UNSIGNED NOT NULL,
  applied_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  PRIMARY KEY (source, sequence)
) ENGINE=InnoDB;

-- The metaserver's side: reference changes written in the same transaction as the file version,
-- then relayed to the blockserver and deleted.
CREATE TABLE block_reference_outbox (
  outbox_id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  hash BINARY(32) NOT NULL,
  delta INT NOT NULL,
  created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
) ENGINE=InnoDB;
