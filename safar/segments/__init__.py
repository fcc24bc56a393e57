"""Segments: analyst SQL, the no-code builder, the sandbox and membership."""
