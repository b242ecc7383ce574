DROP TABLE reference_sources;
DROP TABLE storage_nodes;
DROP TABLE index_shards;
