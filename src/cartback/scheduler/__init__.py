"""The durable scheduler: dispatches new events and runs due enrollment steps, in `serve` or `worker`."""
