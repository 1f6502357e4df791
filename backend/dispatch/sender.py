"""Sending one delivery: Standard Webhooks headers and signatures, no request to an
address inside the network, bounded in time and in what is read back; and what follows
an attempt (the retry schedule). No SQL here.

The receiver's name is resolved here, each address checked, and the request sent to the
checked address (with the name as `Host` and TLS server name), so that a name that
resolves elsewhere between the check and the connection (DNS rebinding) cannot lead the
request inside. Hosts in `WEBHOOK_ALLOWED_HOSTS` skip the check, not the pinning.
"""

import asyncio
import logging
import random
import socket
from collections.abc import Collection
from datetime import datetime, timedelta
from ipaddress import IPv4Address, IPv6Address, IPv6Network, ip_address

import httpx
from standardwebhooks import Webhook

from backend.dispatch.service import Claimed, Result

logger = logging.getLogger("todo_api")

RETRY_DELAYS = (5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600, 24 * 3600)
"""Seconds from a failed attempt to the next (each with ±20% jitter); after the last,
the delivery fails and its webhook is disabled."""
JITTER = 0.2
READ_AT_MOST = 64 * 1024
KEEP_AT_MOST = 1024
USER_AGENT = "todo-api-webhooks/1"


class AddressRefused(Exception):
    """The receiver's name resolves to an address inside the network."""


NAT64 = (IPv6Network("64:ff9b::/96"), IPv6Network("64:ff9b:1::/48"))
IPV4_COMPATIBLE = IPv6Network("::/96")


def is_public(address: IPv4Address | IPv6Address) -> bool:
    """Not loopback, private, link-local (cloud metadata), shared, multicast, reserved or
    site-local; for IPv6, nor an IPv4 address inside (mapped, 6to4, NAT64, compatible)
    that is any of those."""
    if isinstance(address, IPv6Address):
        inside = address.ipv4_mapped or address.sixtofour
        if inside is None and any(address in network for network in (*NAT64, IPV4_COMPATIBLE)):
            inside = IPv4Address(int(address) & 0xFFFFFFFF)
        if inside is not None:
            return is_public(inside)
        if address.is_site_local:
            return False
    return address.is_global and not (address.is_multicast or address.is_reserved)


async def resolve(host: str, port: int, *, allowed: bool) -> str:
    """An address of `host` to connect to: refused if any address it has is not public
    (unless the host is allowed)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = [ip_address(info[4][0]) for info in infos]
    if not allowed and not all(is_public(address) for address in addresses):
        raise AddressRefused(host)
    return str(addresses[0])


def client(timeout: float) -> httpx.AsyncClient:
    """The worker's client: no redirects followed, no proxy from the environment (it
    would connect instead of us, unchecked), and no connection kept for another request:
    connections are pooled by address, and one verified for a host must not carry
    another host's request."""
    return httpx.AsyncClient(
        follow_redirects=False,
        trust_env=False,
        timeout=httpx.Timeout(timeout),
        limits=httpx.Limits(max_keepalive_connections=0),
    )


def sign(claimed: Claimed, timestamp: datetime) -> str:
    """`v1,<signature>` by each secret, space-separated (two during a rotation)."""
    message_id, body = str(claimed.id), claimed.body
    return " ".join(Webhook(key).sign(message_id, timestamp, body) for key in claimed.secrets)


async def send(
    http: httpx.AsyncClient,
    claimed: Claimed,
    *,
    now: datetime,
    allowed_hosts: Collection[str],
    time_limit: float,
) -> tuple[int | None, str | None, str | None]:
    """One attempt: the receiver's status (None if it did not answer), what went wrong
    (None on a 2xx), and the first KiB of its answer."""
    try:
        url = httpx.URL(claimed.url)
        allowed = url.host in allowed_hosts
        if url.scheme != "https" and not allowed:
            return None, "The URL must be https.", None
        async with asyncio.timeout(time_limit):
            try:
                address = await resolve(url.host, url.port or 443, allowed=allowed)
            except AddressRefused:
                return None, f"{_short(url.host)} resolves to an address that is not public.", None
            except (OSError, UnicodeError):
                return None, f"{_short(url.host)} could not be resolved.", None
            request = http.build_request(
                "POST",
                url.copy_with(host=address),
                content=claimed.body.encode(),
                headers=_headers(claimed, url, now),
                extensions={"sni_hostname": url.host} if url.scheme == "https" else {},
            )
            response = await http.send(request, stream=True)
            try:
                kept = await _read(response)
            finally:
                await response.aclose()
    except (TimeoutError, httpx.TimeoutException):
        return None, f"No answer within {time_limit:g} s.", None
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        return None, f"The request failed: {type(exc).__name__}.", None
    status = response.status_code
    if 200 <= status < 300:
        return status, None, kept
    if response.is_redirect:
        return status, "Redirects are not followed.", kept
    return status, f"The receiver answered {status}.", kept


def _headers(claimed: Claimed, url: httpx.URL, now: datetime) -> dict[str, str]:
    return {
        "host": url.netloc.decode("ascii"),
        "content-type": "application/json",
        "accept-encoding": "identity",  # what is kept of the answer is read as text
        "user-agent": USER_AGENT,
        "webhook-id": str(claimed.id),
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": sign(claimed, now),
    }


def _short(host: str) -> str:
    return host if len(host) <= 100 else host[:99] + "…"


async def _read(response: httpx.Response) -> str:
    """The first KiB of at most 64 KiB read from the receiver's answer."""
    read = bytearray()
    async for chunk in response.aiter_raw():
        read += chunk
        if len(read) >= READ_AT_MOST:
            break
    return read[:KEEP_AT_MOST].decode("utf-8", "replace").replace("\x00", "\ufffd")


def outcome(
    claimed: Claimed, status: int | None, error: str | None, kept: str | None, now: datetime
) -> Result:
    """What follows an attempt: delivered; retried later; or failed for good, with the
    webhook disabled (a `410 Gone`, or the last retry)."""
    if error is None:
        return Result("delivered", None, status, None, kept)
    if status == 410:
        reason = "The receiver answered 410 Gone."
        return Result("failed", None, status, error, kept, disable=reason)
    if claimed.attempt > len(RETRY_DELAYS):
        reason = f"{claimed.attempt} attempts over a day failed; the last: {error}"[:300]
        return Result("failed", None, status, error, kept, disable=reason)
    delay = RETRY_DELAYS[claimed.attempt - 1] * random.uniform(1 - JITTER, 1 + JITTER)  # noqa: S311
    return Result("pending", now + timedelta(seconds=delay), status, error, kept)
