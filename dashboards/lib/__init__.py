"""Data access (``queries``), figure builders (``charts``) and small page helpers."""
