DROP TABLE block_uploads;
