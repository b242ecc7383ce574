DROP TABLE volume_segments;
DROP TABLE volumes;
