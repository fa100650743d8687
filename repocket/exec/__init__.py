"""Executors: the only modules that talk to Redis. They run the plans the core
compiles (script registry, run loop, error translation)."""
