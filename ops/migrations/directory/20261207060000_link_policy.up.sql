-- Whether a shared folder's viewers may make share links to what it holds (its owner decides; off
-- by default). Owners and editors always may.
ALTER TABLE namespaces ADD COLUMN viewers_may_link TINYINT(1) NOT NULL DEFAULT 0;

-- The links on a namespace's paths, for owners and editors to list and revoke.
ALTER TABLE share_links ADD KEY share_links_namespace (namespace_id);
