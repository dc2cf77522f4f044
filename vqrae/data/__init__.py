"""Data: robust image loading, folders and datasets, the shapes world."""
