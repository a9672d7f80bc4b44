"""Errors cartback raises on purpose.

    CartbackError            root; never a 500 when raised from a request
    ├── InvalidInput         400: the request is well-formed JSON but says something impossible
    ├── Unauthorized         401: no key, or a key we do not know
    ├── Forbidden            403: a known key used outside its scope
    ├── NotFound             404: nothing of that kind in this workspace
    ├── Conflict             409: the request contradicts stored state (not used for replays)
    ├── PayloadTooLarge      413
    ├── UnsupportedMediaType 415
    ├── RateLimited          429: the key spent its request budget; retry after the window resets
    ├── Unavailable          503: the store could not commit; the client may retry
    ├── IntegrityViolation   500: a write broke a constraint that no race explains (a bug): named, not retried
    └── LeaseLost            another worker took the work over; the worker drops it (never an answer)

Each API module turns these into its vendor's error envelope; routes never build error bodies.
"""

from __future__ import annotations


class CartbackError(Exception):
    """Something went wrong."""

    status_code = 500
    code = "internal_error"
    # Seconds after which a retry may succeed (429, 503): sent as Retry-After.
    retry_after: int | None = None

    def __init__(self, message: str | None = None) -> None:
        self.message = message or (self.__doc__ or "").strip()
        super().__init__(self.message)


class InvalidInput(CartbackError):
    """The request is invalid."""

    status_code = 400
    code = "invalid_request"


class Unauthorized(CartbackError):
    """A valid API key is required."""

    status_code = 401
    code = "unauthorized"


class Forbidden(CartbackError):
    """This key may not do that."""

    status_code = 403
    code = "forbidden"


class NotFound(CartbackError):
    """Not found."""

    status_code = 404
    code = "not_found"


class MethodNotAllowed(CartbackError):
    """This path does not accept that method; the Allow header lists the ones it does."""

    status_code = 405
    code = "method_not_allowed"


class Conflict(CartbackError):
    """The request conflicts with the stored state."""

    status_code = 409
    code = "conflict"


class PayloadTooLarge(CartbackError):
    """The request body is too large."""

    status_code = 413
    code = "payload_too_large"


class UnsupportedMediaType(CartbackError):
    """The request body must be JSON (Content-Type: application/json)."""

    status_code = 415
    code = "unsupported_media_type"


class RateLimited(CartbackError):
    """Too many requests for this API key; retry after the time given in Retry-After."""

    status_code = 429
    code = "rate_limited"


class Unavailable(CartbackError):
    """The store is unavailable; retry later."""

    status_code = 503
    code = "unavailable"


class IntegrityViolation(CartbackError):
    """A write broke a database constraint."""

    status_code = 500
    code = "internal_error"

    def __init__(self, constraint: str) -> None:
        self.constraint = constraint
        super().__init__(f"a write broke the database constraint {constraint}")


class LeaseLost(CartbackError):
    """Another worker took this work over; this worker's writes for it must be rolled back."""

    def __init__(self, item_id: str) -> None:
        self.item_id = item_id
        super().__init__(f"the lease on {item_id} was lost")
