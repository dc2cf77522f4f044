"""Small shared helpers (files, devices, precision)."""
