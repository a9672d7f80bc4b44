"""Domain logic: what happens to an event, a subscriber, an order. No HTTP, no SQL."""
