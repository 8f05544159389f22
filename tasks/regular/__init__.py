"""CHE tasks of level 'regular'."""
