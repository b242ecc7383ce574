DROP TABLE commit_requests;
DROP TABLE journal;
DROP TABLE file_versions;
DROP TABLE files;
DROP TABLE namespace_state;
