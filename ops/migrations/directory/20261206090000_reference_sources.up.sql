-- What each source of block reference changes (a metadata shard's relay) last told the
-- blockservers: everything it committed before delivered_through_ms (a blockserver's clock, Unix
-- ms) has been applied, and how old its outbox's oldest change was. Garbage collection deletes a
-- block at zero only when every source is past the moment the block reached zero, and pauses while
-- a source is silent or behind.
CREATE TABLE reference_sources (
  source VARCHAR(64) NOT NULL PRIMARY KEY,
  delivered_through_ms BIGINT NOT NULL DEFAULT 0,
  oldest_pending_seconds DOUBLE NOT NULL DEFAULT 0,
  reported_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
) ENGINE=InnoDB;
