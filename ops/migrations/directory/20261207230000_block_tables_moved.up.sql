-- The storage nodes' states and the reference sources moved to the blockserver's own directory
-- (blockserver/migrations/index-directory): the cluster's start copied their rows there first.
DROP TABLE reference_sources;
DROP TABLE storage_nodes;
