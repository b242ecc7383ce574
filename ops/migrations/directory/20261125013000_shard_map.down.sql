DROP TABLE namespaces;
DROP TABLE users;
DROP TABLE shards;
