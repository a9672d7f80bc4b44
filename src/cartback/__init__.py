"""cartback: win back abandoned checkouts from your own server."""

__version__ = "0.1.0"
