"""Tools built on the API: the consistency checker and a throwaway redis-server."""
