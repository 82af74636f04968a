"""Building indexes: file discovery, loaders, cleaning, chunking and incremental ingest."""
