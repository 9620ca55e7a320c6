"""Everything on disk: the SQLite store, the model registry, the label log, the FAISS cache.

Nothing here knows about stages or tasks; atomic file writes are in ``files``.
"""
