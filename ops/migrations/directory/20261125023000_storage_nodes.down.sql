DROP TABLE storage_nodes;
