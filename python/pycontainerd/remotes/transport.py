"""HTTP for registries: connection pools per TLS setting, retries with backoff, redirects.

Built on urllib3: its pools are thread-safe, and a body read with ``read(n)`` goes from the socket
to the caller with one copy, so a download is limited by the network and the disk rather than by
Python. One :class:`Transport` serves every registry a resolver talks to.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import random
import ssl
import threading
import time
import urllib.request
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Protocol
from urllib.parse import urljoin, urlsplit

import urllib3
from urllib3.exceptions import (
    HTTPError,
    InsecureRequestWarning,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ProxyError,
    SSLError,
    TimeoutError,
)

from pycontainerd import errdefs
from pycontainerd.remotes.hosts import TLSConfig, is_localhost

__all__ = [
    "NO_RETRY",
    "RETRY_STATUSES",
    "Body",
    "NotReplayable",
    "Reader",
    "RetryPolicy",
    "StreamBody",
    "Transport",
    "parse_retry_after",
    "proxy_for",
    "release",
]

log = logging.getLogger(__name__)

#: Statuses worth another try: timeout, too many requests, and server errors that may pass.
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS = 10


class NotReplayable(Exception):
    """A streamed request body cannot be sent a second time."""


class Reader(Protocol):
    """What a streamed body is read from: ``read(n)`` (a file, a fetch stream, an ingest)."""

    def read(self, n: int = -1, /) -> bytes: ...


class StreamBody:
    """A request body of ``size`` bytes read from ``reader`` in ``chunk_size`` chunks.

    It can be sent again (after a retry or a redirect) when the reader is seekable: it seeks back
    to where it started. A reader that ends early fails the request with
    :class:`~pycontainerd.errdefs.FailedPrecondition` naming ``what``.
    """

    def __init__(self, reader: Reader, size: int, *, what: str, chunk_size: int = 1 << 20) -> None:
        self.reader = reader
        self.size = size
        self.what = what
        self.chunk_size = chunk_size
        self._start: int | None = None
        seekable = getattr(reader, "seekable", None)
        if callable(seekable) and seekable():
            self._start = int(reader.tell())  # type: ignore[attr-defined]
        self._used = False

    @property
    def replayable(self) -> bool:
        """Whether the body can (still) be sent."""
        return self._start is not None or not self._used

    def __call__(self) -> Iterator[bytes]:
        if self._used:
            if self._start is None:
                raise NotReplayable("the content cannot be read again for another try")
            self.reader.seek(self._start)  # type: ignore[attr-defined]
        self._used = True
        return self._chunks()

    def _chunks(self) -> Iterator[bytes]:
        remaining = self.size
        while remaining > 0:
            data = self.reader.read(min(self.chunk_size, remaining))
            if not data:
                raise errdefs.FailedPrecondition(
                    f"{self.what}: content ended after {self.size - remaining} of {self.size} bytes"
                )
            remaining -= len(data)
            yield data


#: A request body: bytes, or a :class:`StreamBody`, read afresh for each try.
Body = bytes | StreamBody | None


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of one request on connection errors, 408, 429 and 5xx (500, 502, 503, 504).

    The n-th retry (from 0) waits ``initial_delay * multiplier**n``, at most ``max_delay``,
    spread by ±``jitter`` (a fraction); a ``Retry-After`` header replaces that wait when it is
    no longer than ``max_retry_after``. A request is tried at most ``max_attempts`` times, and no
    retry starts a wait that would end more than ``max_elapsed`` seconds after the first try.
    """

    max_attempts: int = 5
    initial_delay: float = 0.5
    multiplier: float = 2.0
    max_delay: float = 10.0
    jitter: float = 0.2
    max_elapsed: float = 120.0
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise errdefs.InvalidArgument("retry policy: max_attempts must be at least 1")
        if not 0 <= self.jitter < 1:
            raise errdefs.InvalidArgument("retry policy: jitter must be in [0, 1)")

    def backoff(self, retry: int) -> float:
        """The wait before retry number ``retry`` (from 0), without jitter."""
        return min(self.max_delay, self.initial_delay * self.multiplier**retry)

    def delay(self, retry: int, rng: random.Random | None = None) -> float:
        """The wait before retry number ``retry``, with jitter."""
        base = self.backoff(retry)
        if not self.jitter:
            return base
        r = (rng or _RNG).uniform(-self.jitter, self.jitter)
        return max(0.0, base * (1 + r))

    def schedule(self) -> list[float]:
        """Every wait this policy may make, without jitter: ``max_attempts - 1`` of them."""
        return [self.backoff(i) for i in range(self.max_attempts - 1)]


#: Try once.
NO_RETRY = RetryPolicy(max_attempts=1)
_RNG = random.Random()


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date); None if absent
    or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def _ssl_context(tls: TLSConfig) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    for ca in tls.ca_files:
        try:
            ctx.load_verify_locations(cafile=ca)
        except (OSError, ssl.SSLError) as exc:
            raise errdefs.InvalidArgument(f"load CA certificate {ca}: {exc}") from None
    for cert, key in tls.client_pairs:
        try:
            ctx.load_cert_chain(cert, key or None)
        except (OSError, ssl.SSLError) as exc:
            raise errdefs.InvalidArgument(f"load client certificate {cert}: {exc}") from None
    if tls.skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


@functools.cache
def _quiet_insecure_warnings() -> None:
    """Say once, in our log, that verification is off, instead of urllib3's warning on every
    request to a host the configuration asked us not to verify."""
    warnings.filterwarnings("ignore", category=InsecureRequestWarning)
    log.warning("TLS verification is disabled for some registry hosts (skip_verify)")


def _describe(exc: BaseException) -> str:
    """A short reason for a transport error, without urllib3's object reprs."""
    if isinstance(exc, NameResolutionError):
        return "name resolution failed"
    if isinstance(exc, SSLError | ssl.SSLError):
        reason = exc.args[0] if exc.args else exc
        while isinstance(reason, Exception) and reason.args and reason is not reason.args[0]:
            if isinstance(reason, ssl.SSLError):
                break
            reason = reason.args[0]
        return f"tls: {reason}"
    if isinstance(exc, NewConnectionError):
        text = str(exc)
        text = text.partition(": ")[2] or text
        return text[:1].lower() + text[1:]
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ProtocolError) and exc.args:
        return f"connection broken: {exc.args[-1]}"
    return str(exc) or type(exc).__name__


class Transport:
    """Sends requests with pools per TLS configuration, retries and redirects; thread-safe.

    ``connect_timeout`` and ``read_timeout`` bound connecting and each wait for data;
    ``max_connections`` is kept per host. ``sleep`` and ``rng`` are for tests.
    """

    def __init__(
        self,
        *,
        retry: RetryPolicy | None = None,
        connect_timeout: float = 30.0,
        read_timeout: float = 60.0,
        max_connections: int = 16,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.retry = retry or RetryPolicy()
        self.timeout = urllib3.Timeout(connect=connect_timeout, read=read_timeout)
        self.max_connections = max_connections
        self.sleep = sleep
        self._rng = rng or random.Random()
        self._pools: dict[tuple[TLSConfig, str | None], urllib3.PoolManager] = {}
        self._lock = threading.Lock()

    def pool(self, tls: TLSConfig, proxy: str | None = None) -> urllib3.PoolManager:
        """The pool manager for hosts with this TLS configuration, through ``proxy`` if set."""
        key = (tls, proxy)
        with self._lock:
            pm = self._pools.get(key)
            if pm is None:
                kw: dict[str, Any] = {
                    "num_pools": 32,
                    "maxsize": self.max_connections,
                    "ssl_context": _ssl_context(tls),
                    "cert_reqs": "CERT_NONE" if tls.skip_verify else "CERT_REQUIRED",
                    "assert_hostname": False if tls.skip_verify else None,
                    "timeout": self.timeout,
                    "retries": False,
                }
                pm = urllib3.ProxyManager(proxy, **kw) if proxy else urllib3.PoolManager(**kw)
                self._pools[key] = pm
            return pm

    def close(self) -> None:
        """Close every pooled connection."""
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pm in pools:
            pm.clear()

    def request(
        self,
        method: str,
        url: str,
        *,
        tls: TLSConfig,
        what: str,
        headers: Mapping[str, str] | None = None,
        body: Body = None,
        authorize: Callable[[str], str | None] | None = None,
        retry: RetryPolicy | None = None,
        preload: bool = False,
    ) -> urllib3.BaseHTTPResponse:
        """Send a request and return the response, whatever its status, after retries.

        Redirects are followed (``authorize(netloc)`` gives each hop's ``Authorization``);
        connection errors are retried and, when retries are spent, raised as
        :class:`~pycontainerd.errdefs.Unavailable` naming ``what`` and the URL. A retryable
        status is returned once retries are spent. The caller reads the body (unless ``preload``)
        and releases the response.
        """
        policy = retry or self.retry
        if tls.skip_verify and url.startswith("https:"):
            _quiet_insecure_warnings()
        start = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                resp = self._send(method, url, tls, headers or {}, body, authorize, preload)
            except NotReplayable as exc:
                raise errdefs.Unavailable(f"{what}: {url}: {exc}") from None
            except (HTTPError, OSError) as exc:
                retryable = not isinstance(exc, NameResolutionError | SSLError | ProxyError)
                reason = _describe(exc)
                delay = policy.delay(attempt - 1, self._rng)
                if (
                    not retryable
                    or attempt >= policy.max_attempts
                    or time.monotonic() + delay - start > policy.max_elapsed
                    or not _replayable(body)
                ):
                    raise errdefs.Unavailable(f"{what}: {method} {url}: {reason}") from exc
                log.info("%s: %s %s: %s; retrying in %.1fs", what, method, url, reason, delay)
                self.sleep(delay)
                continue
            if resp.status not in RETRY_STATUSES or attempt >= policy.max_attempts:
                return resp
            if not _replayable(body):
                return resp
            delay = policy.delay(attempt - 1, self._rng)
            after = parse_retry_after(resp.headers.get("Retry-After"))
            if after is not None:
                if after > policy.max_retry_after:
                    return resp
                delay = after
            if time.monotonic() + delay - start > policy.max_elapsed:
                return resp
            log.info(
                "%s: %s %s: status %d; retrying in %.1fs", what, method, url, resp.status, delay
            )
            release(resp)
            self.sleep(delay)

    def _send(
        self,
        method: str,
        url: str,
        tls: TLSConfig,
        headers: Mapping[str, str],
        body: Body,
        authorize: Callable[[str], str | None] | None,
        preload: bool,
    ) -> urllib3.BaseHTTPResponse:
        for _ in range(_MAX_REDIRECTS + 1):
            pm = self.pool(tls, proxy_for(url))
            hdrs = dict(headers)
            if authorize is not None and (auth := authorize(urlsplit(url).netloc)):
                hdrs["Authorization"] = auth
            data = body() if isinstance(body, StreamBody) else body
            resp = pm.request(
                method,
                url,
                body=data,
                headers=hdrs,
                redirect=False,
                retries=False,
                preload_content=preload,
                decode_content=False,
            )
            location = resp.headers.get("Location")
            if resp.status not in _REDIRECTS or not location:
                return resp
            release(resp)
            url = urljoin(url, location)
            if resp.status == 303 or (resp.status in (301, 302) and method == "POST"):
                method, body = "GET", None
                headers = {k: v for k, v in headers.items() if k.lower() != "content-length"}
            log.debug("redirected to %s", url)
        raise errdefs.Unavailable(f"{method} {url}: stopped after {_MAX_REDIRECTS} redirects")


def proxy_for(url: str) -> str | None:
    """The proxy for ``url`` from the environment (``HTTPS_PROXY``, ``HTTP_PROXY``,
    ``NO_PROXY``), as Go's ``ProxyFromEnvironment``: never for loopback hosts."""
    parts = urlsplit(url)
    if not parts.hostname or is_localhost(parts.netloc):
        return None
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(parts.scheme)
    if not proxy or _no_proxy(proxies.get("no", ""), parts.hostname, parts.port):
        return None
    return proxy if "://" in proxy else "http://" + proxy


def _no_proxy(no_proxy: str, host: str, port: int | None) -> bool:
    """Whether ``NO_PROXY`` exempts ``host``: ``*``, a name (and its subdomains), ``.domain``,
    ``name:port``, an IP address or a CIDR block."""
    host = host.lower()
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for raw in no_proxy.split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        if address is not None:
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                pass
        name, _, entry_port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
        if entry_port and (not entry_port.isdigit() or int(entry_port) != port):
            continue
        name = name.lstrip(".")
        if host == name or host.endswith("." + name):
            return True
    return False


def _replayable(body: Body) -> bool:
    return not isinstance(body, StreamBody) or body.replayable


def release(resp: urllib3.BaseHTTPResponse, *, drain_limit: int = 1 << 16) -> None:
    """Give a response's connection back to its pool, reading a short rest of the body first;
    a connection with more left unread is closed instead."""
    try:
        remaining = getattr(resp, "length_remaining", None)
        # Of unknown length: drain an error page, close on a blob.
        short = resp.status not in (200, 206) if remaining is None else remaining <= drain_limit
        if short:
            resp.drain_conn()
        else:
            resp.close()
    except (HTTPError, OSError):
        resp.close()
    finally:
        resp.release_conn()
