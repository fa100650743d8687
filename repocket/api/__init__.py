"""The public API on top of the core: models, managers, querysets."""
