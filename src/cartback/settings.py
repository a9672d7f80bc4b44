"""Configuration: one validated object, read once from the environment (prefix CARTBACK_) and `.env`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CARTBACK_", env_file=".env", extra="ignore")

    database_url: str = "sqlite:///./cartback.db"
    # Unset: the address `serve` listens on (listening_on); a worker alone, port 8000 on this machine.
    public_url: str = "http://127.0.0.1:8000"
    secret_key: str | None = None
    smtp_url: str | None = None
    from_: str = Field("Shop <shop@example.com>", alias="CARTBACK_FROM")
    tick_seconds: float = Field(1.0, gt=0)

    # Bodies larger than this are refused with 413 before they are read in full.
    max_body_bytes: int = Field(1024 * 1024, gt=0)
    # FULL fsyncs every group commit; NORMAL survives a process crash but not a power cut.
    sqlite_synchronous: Literal["FULL", "NORMAL"] = "FULL"
    # Group commit: the most requests one transaction carries.
    commit_batch_max: int = Field(512, gt=0)
    # PostgreSQL: group commits run side by side on this many connections (SQLite: always one). One by
    # default: on two cores a second writer gained nothing measurable (docs/ingest.md).
    commit_writers: int = Field(1, gt=0, le=32)
    # A worker that dies holding a claim delays those steps by at most this long.
    lease_seconds: float = Field(60.0, gt=0)
    # Enrollments one worker claims (and events it dispatches) per round.
    worker_batch: int = Field(200, gt=0)
    # Enrollments one cancel request cancels at most (one transaction); the answer says how many remain.
    cancel_page_size: int = Field(10_000, gt=0)
    log_level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    # json: one JSON object per line; console: aligned text; auto: console on a terminal, else json.
    log_format: Literal["auto", "json", "console"] = "auto"
    # On SIGTERM/SIGINT the process stops accepting, finishes in-flight requests and the worker's round,
    # gives back its leases and exits within about this long (under Docker's 10 s before SIGKILL).
    shutdown_seconds: float = Field(8.0, gt=0, le=600)
    # When set, GET /metrics wants `Authorization: Bearer <token>`; unset, it is open like /healthz and
    # should be reachable only from the monitoring network (docs/operations.md).
    metrics_token: str | None = None
    # SMTP connections kept open and reused; also the most sends at once.
    smtp_connections: int = Field(4, gt=0, le=100)
    # Messages per SMTP connection between their first write and the commit of their outcome: the sends
    # under way plus those prepared ahead. More keeps the connections busier while a write commits; it is
    # also how many (times the connections) a crash of the process can leave `unknown`.
    send_window_per_connection: int = Field(4, ge=1, le=16)
    # A temporary SMTP failure is retried after about this many seconds, doubling per attempt.
    delivery_retry_seconds: float = Field(60.0, gt=0)

    # Outbound webhooks (docs/webhooks.md). A failed delivery is retried after about base, 2 x base, 4 x base,
    # ... (capped at 6 hours, ±20% jitter) until `webhook_retry_window_seconds` after it was queued.
    webhook_timeout_seconds: float = Field(10.0, gt=0, le=120)
    webhook_retry_base_seconds: float = Field(30.0, gt=0)
    webhook_retry_window_seconds: float = Field(7 * 86400.0, ge=0)
    # An endpoint is disabled once it has failed this many attempts in a row over at least this long.
    webhook_disable_after_failures: int = Field(10, gt=0)
    webhook_disable_after_seconds: float = Field(3 * 86400.0, ge=0)
    # Webhooks go to public addresses only (docs/security.md); true also allows loopback, private,
    # link-local and other internal addresses, for a store's own network (and tests' local receivers).
    webhook_allow_private: bool = False

    # Recovered revenue (docs/analytics.md): an order is credited to a sequence email clicked or opened
    # this many days before it (Klaviyo's default), or received this many hours before it.
    attribution_window_days: float = Field(5.0, gt=0, le=90)
    attribution_receipt_hours: float = Field(24.0, ge=0, le=90 * 24)

    # Rate limits per API key and API surface (docs/ratelimits.md): a burst per second and a steady rate per
    # minute, both enforced, as Klaviyo publishes its tiers (these defaults are its tier for creating events).
    # 0 lifts that limit; both 0 turns rate limiting off.
    rate_limit_burst: int = Field(350, ge=0)
    rate_limit_steady: int = Field(3500, ge=0)
    # A request refused by a rate limit or budget (429) is answered this many seconds late (at most its
    # Retry-After), so a client that retries at once is slowed, not answered faster (api/refusals.py).
    refusal_delay_seconds: float = Field(1.0, ge=0, le=10)

    # Dashboard sign-in (docs/security.md). After this many failed attempts for one address, or from one
    # client address, within a window of `sign_in_window_seconds`, sign-ins there are refused (429) until
    # the window ends; 0 lifts that limit.
    sign_in_failures_per_address: int = Field(5, ge=0)
    sign_in_failures_per_client: int = Field(20, ge=0)
    sign_in_window_seconds: int = Field(300, ge=1, le=86400)
    # Password hashes (scrypt: 32 MiB and ~0.1 s of a core each) running at once in one process; a sign-in
    # waits at most `sign_in_wait_seconds` for a turn, then gets 503.
    sign_in_hashes: int = Field(1, ge=1, le=64)
    sign_in_wait_seconds: float = Field(5.0, gt=0, le=60)
    # ...and at most this many a second on average per process (after a burst of a few), whatever the
    # addresses; beyond it sign-ins get 503 without hashing. 0 lifts the budget.
    sign_in_hashes_per_second: float = Field(1.0, ge=0, le=1000)
    # Processes that render templates (docs/security.md "Templates"), at a low CPU priority, so that a
    # tenant's heavy template holds no lock other workspaces' requests need; 0 renders in the server's
    # own threads.
    # `serve`: processes answering on its port (supervisor.py); more than one shares the rate-limit counts
    # through the database.
    processes: int = Field(1, ge=1, le=64)
    render_processes: int = Field(1, ge=0, le=64)
    # Render CPU seconds a minute one workspace may ask for while handling requests (previews, sends on the
    # request path, checks at save), per process; beyond it 429 until it refills (delivery/render_budget.py).
    # 0 lifts it.
    render_seconds_per_minute: float = Field(15.0, ge=0, le=3600)

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_level(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if not value.startswith(("sqlite:", "postgresql:", "postgresql+psycopg:", "postgres:")):
            raise ValueError("CARTBACK_DATABASE_URL must start with sqlite:// or postgresql://")
        return value

    @field_validator("smtp_url")
    @classmethod
    def _valid_smtp_url(cls, value: str | None) -> str | None:
        if not value or not value.strip():
            return None
        from cartback.delivery import smtp

        smtp.parse_url(value)  # a ValueError names the problem and stops start-up
        return value.strip()

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite:")

    def listening_on(self, host: str, port: int) -> Settings:
        """These settings for a server on host:port: unless CARTBACK_PUBLIC_URL is set, the links in mail
        point at that address (any-address hosts become 127.0.0.1 / [::1], which a browser can open)."""
        if "public_url" in self.model_fields_set:
            return self
        return self.model_copy(update={"public_url": listen_url(host, port)})


def listen_url(host: str, port: int) -> str:
    """The http URL a browser on this machine opens to reach a server bound to host:port."""
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host.strip("[]"), host.strip("[]"))
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"
