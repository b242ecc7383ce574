DROP TABLE reference_sources;
