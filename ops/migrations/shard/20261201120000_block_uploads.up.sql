-- Who has sent a block's bytes (verified against its hash), and when: possession a user proved,
-- so HasBlocks may tell that user the block is there (an interrupted upload resumes without
-- sending again) while telling nobody else. On the block's own index shard; rows older than the
-- reservation window no longer count and are swept by the collector.
CREATE TABLE block_uploads (
  hash BINARY(32) NOT NULL,
  user_id BIGINT UNSIGNED NOT NULL,
  uploaded_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  PRIMARY KEY (hash, user_id),
  KEY block_uploads_age (uploaded_at)
) ENGINE=InnoDB;
