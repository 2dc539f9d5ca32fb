"""Pure views across stores: the snapshot a scrape reads, HA pairs and roles, shards."""
