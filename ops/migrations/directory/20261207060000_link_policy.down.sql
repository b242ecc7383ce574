ALTER TABLE share_links DROP KEY share_links_namespace;
ALTER TABLE namespaces DROP COLUMN viewers_may_link;
