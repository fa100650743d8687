"""The pure core: schema, keys, codecs, plans (script calls), operations, query
planning and hydration. Nothing here opens a socket or reads a connection."""
