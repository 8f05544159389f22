"""CHE tasks of level 'cs'."""
