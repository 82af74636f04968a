"""The index folder: SQLite docstore (source of truth), FAISS vectors and BM25 (derived), a manifest.

Layout of an index folder::

    docstore.sqlite   documents, chunks, their vectors (WAL mode; every write is a transaction)
    vectors.faiss     the FAISS index, rebuilt from the docstore when its generation is stale
    bm25/             the bm25s index and its chunk ids, likewise stamped with a generation
    manifest.json     schema version, embedding model and dimension, metric, index type, counts
    .lock             held by the one process writing

A crash mid-ingest leaves the last committed transaction: the derived files carry the
generation they were built from, and a reader that finds them stale rebuilds them.
"""
