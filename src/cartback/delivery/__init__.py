"""Delivery: turning an email step into a message (templates), and later sending it."""
