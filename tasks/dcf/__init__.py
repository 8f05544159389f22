"""CHE tasks of level 'dcf'."""
