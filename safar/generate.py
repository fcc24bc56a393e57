"""Synthetic raw events for the demo shop "Safar Shop" (فروشگاه سفر), landed in the lake.

The data is meant to look like a real Iranian online shop that sells on the web and in iOS and
Android apps, sending Segment-style messages (``safar/contract.py``), so that every model in
``docs/warehouse.md`` has something non-trivial to do:

- **People** arrive over the window with growth (a quarter are existing customers on day one);
  activity is heavy-tailed (most visit a few times, a few daily). Each uses one to three devices:
  web browsers (one ``anonymous_id`` each), phones (``context_device_id`` plus an
  ``anonymous_id`` per install), or both.
- **Identity**: anonymous browsing, then sign-up (``identify`` with traits and ``Signed Up``),
  often forced by checkout (the shop has no guest checkout); logins on later devices; about half
  of the visitors never sign up. A few ``alias`` calls: anonymous id → user id at some sign-ups,
  and a legacy-id migration for some old customers partway through the window.
- **Commerce**: search, category and product views, add to cart, cart, checkout, order, with
  drop-off at every step, abandoned carts, repeat buyers; orders in IRR with product lists from
  a Persian-market catalogue. Some ``Order Completed`` events come from the server.
- **Traits that change** (an SCD2 history): order count and RFM class after orders and by a
  nightly job, moves to another city, added emails, plan upgrades, email and SMS opt-outs (with
  ``Email Unsubscribed`` / ``SMS Unsubscribed``).
- **App lifecycle and push**: installs, opens, uninstalls (some reinstall with a new
  anonymous id), push campaigns with received and tapped events, APNs / FCM tokens for devices
  that granted permission, web push subscriptions.
- **Time**: Iranian week (Thursday evening and Friday busiest), a local-time daily curve,
  promotions; device clock skew, SDK batching, network latency, late (offline) app events and
  duplicate deliveries; ``timestamp`` is Segment's corrected time.

Volume: about 83 events per person over 90 days (44 over 30, 142 over 365; see
``events_per_user``), so ``users=20_000, days=90`` gives about 1.7M rows and ten million rows
take about 120,000 people; ``users_for_events`` does this arithmetic for a target size.
``users`` counts people (visitors), known or not.

Conventions downstream code can rely on: ``source_id`` is ``src_web``, ``src_ios``,
``src_android`` or ``src_server`` (the platform); ``context_device_type`` is ``ios`` or
``android`` in the apps and the form factor (``desktop``, ``mobile``, ``tablet``) on the web;
browsers have no ``context_device_id`` (their device is their ``anonymous_id``); server events
have a user id, no anonymous id and no device.

Everything is vectorised with numpy per simulated day, strings and JSON are assembled by polars,
and rows are written in chunks of days through :class:`safar.lake.LakeWriter`, so memory stays
bounded and ten million events take a few minutes. The same ``(users, days, seed, end)`` always
gives the same rows: each day draws from its own random stream, and ids that must stay stable
across days (devices, installs, tokens) are hashes of the seed and the entity.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from urllib.parse import quote
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl
import pyarrow as pa
from tqdm import tqdm

from safar.config import SafarHome
from safar.contract import RAW_COLUMNS
from safar.lake import LakeWriter

__all__ = ["GenerateStats", "events_per_user", "generate", "users_for_events"]

# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GenerateStats:
    """What one :func:`generate` run wrote.

    Attributes:
        events: rows accepted into the lake (duplicate deliveries included).
        users: people simulated (the ``users`` argument).
        rejected: rows the lake writer refused (0 unless the generator has a bug).
        files: Parquet files written.
        seconds: wall time of the run.
    """

    events: int
    users: int
    rejected: int
    files: int
    seconds: float


# Measured mean events per person for a window of ``days`` days (seed 1, 20,000 users);
# ``events_per_user`` interpolates between these in log-log space.
_EVENTS_PER_USER = (
    (1, 9.5),
    (7, 17.8),
    (14, 28.3),
    (30, 44.4),
    (60, 68.2),
    (90, 83.4),
    (180, 116.9),
    (365, 142.3),
)

# Rows per lake write: whole days adding up to about this many make large files; a bigger
# batch (a big day) is split, since the writer holds a few copies of it in memory.
_ROWS_PER_CHUNK = 120_000
_MAX_ROWS_PER_WRITE = 200_000


def events_per_user(days: int) -> float:
    """Approximate mean events per person over a window of ``days`` days.

    Example:
        >>> round(events_per_user(90))
        83
    """
    xs = np.log([d for d, _ in _EVENTS_PER_USER])
    ys = np.log([e for _, e in _EVENTS_PER_USER])
    x = np.log(max(days, 1))
    if x > xs[-1]:  # extrapolate along the last segment
        slope = (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])
        return float(np.exp(ys[-1] + slope * (x - xs[-1])))
    return float(np.exp(np.interp(x, xs, ys)))


def users_for_events(target_events: int, days: int) -> int:
    """How many people to simulate over ``days`` days for about ``target_events`` rows.

    Example:
        >>> users_for_events(10_000_000, 90)
        119904
    """
    return max(1, round(target_events / events_per_user(days)))


def generate(
    home: SafarHome,
    users: int,
    days: int,
    seed: int,
    end: date | None = None,
    progress: bool = True,
    chunk_days: int | None = None,
) -> GenerateStats:
    """Simulate ``users`` people of Safar Shop for ``days`` days and land their events.

    Args:
        home: where the lake is; rows go to ``home.raw_events`` through :class:`LakeWriter`.
        users: people to simulate (visitors, known or anonymous); see :func:`users_for_events`.
        days: length of the window, which ends with ``end`` (inclusive).
        seed: the same ``(users, days, seed, end)`` gives the same rows.
        end: last day of the window (UTC); today by default. Late and retried deliveries may
            be received a little after it.
        progress: show a progress bar over the simulated days.
        chunk_days: days per lake write; by default sized for about 120,000 rows per write.
            Rows received after a chunk's last day are held back for a later write, as they
            would arrive in reality.

    Returns:
        Counts of what was written.
    """
    if users < 1 or days < 1 or (chunk_days is not None and chunk_days < 1):
        raise ValueError("users, days and chunk_days must be at least 1")
    started = time.perf_counter()
    end = end or datetime.now(UTC).date()
    run = _Run.create(users=users, days=days, seed=seed, end=end)
    if chunk_days is None:
        per_day = users * events_per_user(days) / days
        chunk_days = max(1, min(days, round(_ROWS_PER_CHUNK / max(per_day, 1.0))))
    writer = LakeWriter(home)
    events = rejected = files = generated = 0
    held = _EMPTY  # rows received after the last write's final day
    pending: list[pl.DataFrame] = []
    with tqdm(total=days, unit="day", desc="generate", disable=not progress) as bar:
        for d in range(days):
            pending.append(_simulate_day(run, d))
            generated += pending[-1].height
            bar.update(1)
            bar.set_postfix(events=f"{generated:,}")
            if d < days - 1 and (d + 1) % chunk_days:
                continue
            batch = pl.concat([held, *pending])
            pending = []
            if d < days - 1:
                # Rows received after this chunk's last day arrive with a later write, as they
                # would in reality (late and retried deliveries).
                cutoff = int(run.day_us[d]) + _DAY
                held = batch.filter(pl.col("received_at") >= cutoff)
                batch = batch.filter(pl.col("received_at") < cutoff)
            for piece in _finish(batch).iter_slices(_MAX_ROWS_PER_WRITE):
                result = writer.write(piece)
                events += result.accepted
                rejected += result.rejected
                files += len(result.files)
    return GenerateStats(
        events=events,
        users=users,
        rejected=rejected,
        files=files,
        seconds=time.perf_counter() - started,
    )


# --------------------------------------------------------------------------------------------
# Units, codes and small helpers
# --------------------------------------------------------------------------------------------

_US = 1_000_000
_MIN = 60 * _US
_HOUR = 3600 * _US
_DAY = 86_400 * _US
# "Has not happened": later than any real time but safe to add a few days to.
_NEVER = np.int64(2**62)
_LONG_AGO = np.int64(-(2**62))

_WEB, _IOS, _ANDROID, _SERVER = 0, 1, 2, 3
_SOURCE_IDS = ("src_web", "src_ios", "src_android", "src_server")

_RFM = ("champions", "loyal", "potential_loyalist", "new", "at_risk", "hibernating", "lost")
(_CHAMPIONS, _LOYAL, _POTENTIAL, _NEW, _AT_RISK, _HIBERNATING, _LOST) = range(7)
_PLANS = ("free", "plus")


class _K:
    """Row kinds: one per kind of message the simulation emits (see ``_KINDS``)."""

    INSTALLED = 0
    PUSH_TAPPED = 1
    OPENED = 2
    IDENT_REFRESH = 3
    LANDING = 4
    IDENT_SIGNUP = 5
    ALIAS_SIGNUP = 6
    SIGNED_UP = 7
    IDENT_LOGIN = 8
    SEARCH_PAGE = 9
    SEARCHED = 10
    CATEGORY_PAGE = 11
    PRODUCT_PAGE = 12
    PRODUCT_VIEWED = 13
    PRODUCT_ADDED = 14
    CART_PAGE = 15
    CART_VIEWED = 16
    CHECKOUT_PAGE = 17
    CHECKOUT_STARTED = 18
    ORDER_PAGE = 19
    ORDER_COMPLETED = 20
    ORDER_COMPLETED_SERVER = 21
    IDENT_ORDER = 22
    PUSH_RECEIVED = 23
    UNINSTALLED = 24
    IDENT_RFM = 25
    IDENT_CITY = 26
    IDENT_EMAIL_ADDED = 27
    EMAIL_UNSUB = 28
    IDENT_EMAIL_OPTOUT = 29
    SMS_UNSUB = 30
    IDENT_SMS_OPTOUT = 31
    IDENT_PLAN = 32
    ALIAS_MIGRATION = 33


# kind: (message type, name on the web, name in the apps, sent by the server)
# "page" becomes "screen" in the apps.
_KINDS: dict[int, tuple[str, str | None, str | None, bool]] = {
    _K.INSTALLED: ("track", None, "Application Installed", False),
    _K.PUSH_TAPPED: ("track", None, "Push Notification Tapped", False),
    _K.OPENED: ("track", None, "Application Opened", False),
    _K.IDENT_REFRESH: ("identify", None, None, False),
    _K.LANDING: ("page", "Home", "Home", False),
    _K.IDENT_SIGNUP: ("identify", None, None, False),
    _K.ALIAS_SIGNUP: ("alias", None, None, False),
    _K.SIGNED_UP: ("track", "Signed Up", "Signed Up", False),
    _K.IDENT_LOGIN: ("identify", None, None, False),
    _K.SEARCH_PAGE: ("page", "Search", "Search", False),
    _K.SEARCHED: ("track", "Products Searched", "Products Searched", False),
    _K.CATEGORY_PAGE: ("page", "Category", "Category", False),
    _K.PRODUCT_PAGE: ("page", "Product", "Product Detail", False),
    _K.PRODUCT_VIEWED: ("track", "Product Viewed", "Product Viewed", False),
    _K.PRODUCT_ADDED: ("track", "Product Added", "Product Added", False),
    _K.CART_PAGE: ("page", "Cart", "Cart", False),
    _K.CART_VIEWED: ("track", "Cart Viewed", "Cart Viewed", False),
    _K.CHECKOUT_PAGE: ("page", "Checkout", "Checkout", False),
    _K.CHECKOUT_STARTED: ("track", "Checkout Started", "Checkout Started", False),
    _K.ORDER_PAGE: ("page", "Order Confirmation", "Order Confirmation", False),
    _K.ORDER_COMPLETED: ("track", "Order Completed", "Order Completed", False),
    _K.ORDER_COMPLETED_SERVER: ("track", "Order Completed", "Order Completed", True),
    _K.IDENT_ORDER: ("identify", None, None, True),
    _K.PUSH_RECEIVED: ("track", None, "Push Notification Received", False),
    _K.UNINSTALLED: ("track", None, "Application Uninstalled", False),
    _K.IDENT_RFM: ("identify", None, None, True),
    _K.IDENT_CITY: ("identify", None, None, True),
    _K.IDENT_EMAIL_ADDED: ("identify", None, None, True),
    _K.EMAIL_UNSUB: ("track", "Email Unsubscribed", "Email Unsubscribed", True),
    _K.IDENT_EMAIL_OPTOUT: ("identify", None, None, True),
    _K.SMS_UNSUB: ("track", "SMS Unsubscribed", "SMS Unsubscribed", True),
    _K.IDENT_SMS_OPTOUT: ("identify", None, None, True),
    _K.IDENT_PLAN: ("identify", None, None, True),
    _K.ALIAS_MIGRATION: ("alias", None, None, True),
}
_KIND_SERVER = np.array([_KINDS[k][3] for k in range(len(_KINDS))])
_FULL_IDENTIFY = (_K.IDENT_REFRESH, _K.IDENT_SIGNUP, _K.IDENT_LOGIN)


def _mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser: a fast, well-mixed hash of 64-bit integers (vectorised).

    Example:
        >>> _mix64(np.array([0, 1])).tolist() == _mix64(np.array([0, 1])).tolist()
        True
    """
    with np.errstate(over="ignore"):  # arithmetic modulo 2**64 is the point
        z = np.asarray(x).astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _hash(seed: int, tag: int, a: np.ndarray | int, b: np.ndarray | int = 0) -> np.ndarray:
    """A 64-bit hash of (seed, tag, a, b): ids that stay the same whichever day needs them."""
    salt = _mix64(np.array([(seed * 1_000_003 + tag) % 2**63], dtype=np.int64))[0]
    h = _mix64(np.asarray(a, dtype=np.int64).astype(np.uint64) ^ salt)
    with np.errstate(over="ignore"):
        b_mixed = np.asarray(b, dtype=np.int64).astype(np.uint64) * np.uint64(0x9E3779B1)
    return _mix64(h ^ b_mixed)


def _unit(h: np.ndarray) -> np.ndarray:
    """Map 64-bit hashes to floats in [0, 1)."""
    return (h >> np.uint64(11)).astype(np.float64) * 2.0**-53


_HEX_LOWER = np.frombuffer(b"0123456789abcdef", np.uint8)
_HEX_UPPER = np.frombuffer(b"0123456789ABCDEF", np.uint8)
_B64URL = np.frombuffer(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", np.uint8
)
# Where each of a UUID's 36 characters comes from in its 32 hex digits (-1: a dash).
_UUID_LAYOUT = np.array(
    [*range(8), -1, *range(8, 12), -1, *range(12, 16), -1, *range(16, 20), -1, *range(20, 32)]
)


def _hex_chars(words: np.ndarray, upper: bool = False) -> np.ndarray:
    """(n, k) uint64 words → (n, 16k) uint8 hex digits, most significant first."""
    raw = np.ascontiguousarray(words.astype(">u8")).view(np.uint8)
    raw = raw.reshape(len(words), 8 * words.shape[1])
    table = _HEX_UPPER if upper else _HEX_LOWER
    out = np.empty((raw.shape[0], raw.shape[1] * 2), np.uint8)
    out[:, 0::2] = table[raw >> 4]
    out[:, 1::2] = table[raw & 15]
    return out


def _strings(chars: np.ndarray) -> pa.Array:
    """(n, w) uint8 ASCII characters → an Arrow string array of n strings of width w."""
    n, w = chars.shape
    offsets = pa.py_buffer((np.arange(n + 1, dtype=np.int32) * w).tobytes())
    data = pa.py_buffer(np.ascontiguousarray(chars).tobytes())
    return pa.StringArray.from_buffers(n, offsets, data)


def _uuids(words: np.ndarray, upper: bool = False) -> pa.Array:
    """Version-4 UUID strings from (n, 2) random uint64 words.

    Example:
        >>> _uuids(np.array([[0, 0]], dtype=np.uint64)).to_pylist()
        ['00000000-0000-4000-8000-000000000000']
    """
    hexes = _hex_chars(words, upper)
    table = _HEX_UPPER if upper else _HEX_LOWER
    hexes[:, 12] = ord("4")  # version 4
    variant = np.searchsorted(table, hexes[:, 16]) & 3
    hexes[:, 16] = table[8 + variant]
    out = np.full((len(words), 36), ord("-"), np.uint8)
    keep = _UUID_LAYOUT >= 0
    out[:, keep] = hexes[:, _UUID_LAYOUT[keep]]
    return _strings(out)


def _b64_chars(h: np.ndarray, n_chars: int) -> np.ndarray:
    """(n,) uint64 seeds → (n, n_chars) URL-safe base64 characters, by hashing a counter."""
    words = np.stack(
        [_mix64(h ^ np.uint64(j * 0x632BE59BD9B4E019 % 2**64)) for j in range((n_chars + 9) // 10)],
        axis=1,
    )
    shifts = np.arange(10, dtype=np.uint64) * np.uint64(6)
    sextets = (words[:, :, None] >> shifts) & np.uint64(63)
    return _B64URL[sextets.reshape(len(h), 10 * words.shape[1])[:, :n_chars].astype(np.intp)]


def _first_in_run(keys: np.ndarray) -> np.ndarray:
    """Mask of the first element of each run of equal values in ``keys``.

    Example:
        >>> _first_in_run(np.array([3, 3, 5, 7, 7])).tolist()
        [True, False, True, True, False]
    """
    first = np.ones(len(keys), bool)
    first[1:] = keys[1:] != keys[:-1]
    return first


def _count_before(flags: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """How many earlier elements of the same run of ``groups`` have ``flags`` set.

    Example:
        >>> _count_before(np.array([1, 0, 1, 1, 1]), np.array([4, 4, 4, 6, 6])).tolist()
        [0, 1, 1, 0, 1]
    """
    flags = flags.astype(np.int64)
    cum = np.cumsum(flags) - flags
    starts = np.flatnonzero(_first_in_run(groups))
    lengths = np.diff(np.append(starts, len(groups)))
    return cum - np.repeat(cum[starts], lengths)


def _lit(values: list[str]) -> list[str]:
    """Wrap vocabulary strings as JSON string literals.

    Every vocabulary string is checked to need no escaping, which lets the JSON columns be
    assembled by plain string concatenation.
    """
    for v in values:
        if any(c in v for c in '"\\') or any(ord(c) < 32 for c in v):
            raise ValueError(f"vocabulary string needs JSON escaping: {v!r}")
    return [f'"{v}"' for v in values]


def _take(values: list[str | None] | pa.Array, idx: np.ndarray) -> pa.Array:
    """Gather vocabulary strings by index (a negative index gives null)."""
    vocab = values if isinstance(values, pa.Array) else pa.array(values, pa.string())
    idx = np.asarray(idx)
    return vocab.take(pa.array(idx.astype(np.int64), mask=idx < 0))


# --------------------------------------------------------------------------------------------
# The world: cities, people's names, devices, the catalogue
# --------------------------------------------------------------------------------------------

_TIMEZONES = ("Asia/Tehran", "Asia/Dubai", "Europe/Istanbul", "America/Toronto")
_COUNTRIES = ("IR", "AE", "TR", "CA")
# city, country index, timezone index, share of people (Iran by population, a small diaspora)
_CITIES = (
    ("Tehran", 0, 0, 33.0),
    ("Mashhad", 0, 0, 9.0),
    ("Isfahan", 0, 0, 7.0),
    ("Karaj", 0, 0, 6.0),
    ("Shiraz", 0, 0, 6.0),
    ("Tabriz", 0, 0, 5.5),
    ("Ahvaz", 0, 0, 4.0),
    ("Qom", 0, 0, 4.0),
    ("Rasht", 0, 0, 3.5),
    ("Kermanshah", 0, 0, 3.0),
    ("Dubai", 1, 1, 1.6),
    ("Istanbul", 2, 2, 1.3),
    ("Toronto", 3, 3, 1.4),
)
_CITY_NAMES = [c[0] for c in _CITIES]
_CITY_COUNTRY = np.array([c[1] for c in _CITIES])
_CITY_TZ = np.array([c[2] for c in _CITIES])
_CITY_P = np.array([c[3] for c in _CITIES]) / sum(c[3] for c in _CITIES)
_N_IRAN_CITIES = 10

# (Persian script, Latin script)
_FEMALE = (
    ("سارا", "Sara"), ("مریم", "Maryam"), ("زهرا", "Zahra"), ("فاطمه", "Fatemeh"),
    ("نرگس", "Narges"), ("الهام", "Elham"), ("نازنین", "Nazanin"), ("مهسا", "Mahsa"),
    ("نیلوفر", "Niloufar"), ("شیما", "Shima"), ("پریسا", "Parisa"), ("لیلا", "Leila"),
    ("آزاده", "Azadeh"), ("هانیه", "Haniyeh"), ("ریحانه", "Reyhaneh"), ("مینا", "Mina"),
    ("یاسمن", "Yasaman"), ("ترانه", "Taraneh"), ("الناز", "Elnaz"), ("فرشته", "Fereshteh"),
)  # fmt: skip
_MALE = (
    ("علی", "Ali"), ("محمد", "Mohammad"), ("حسین", "Hossein"), ("رضا", "Reza"),
    ("امیر", "Amir"), ("مهدی", "Mehdi"), ("سعید", "Saeed"), ("حمید", "Hamid"),
    ("کامران", "Kamran"), ("آرش", "Arash"), ("بابک", "Babak"), ("پویا", "Pouya"),
    ("سینا", "Sina"), ("میلاد", "Milad"), ("امید", "Omid"), ("فرهاد", "Farhad"),
    ("کیان", "Kian"), ("نیما", "Nima"), ("بهزاد", "Behzad"), ("مجید", "Majid"),
)  # fmt: skip
_LAST = (
    ("محمدی", "Mohammadi"), ("حسینی", "Hosseini"), ("احمدی", "Ahmadi"), ("رضایی", "Rezaei"),
    ("کریمی", "Karimi"), ("موسوی", "Mousavi"), ("جعفری", "Jafari"), ("صادقی", "Sadeghi"),
    ("رحیمی", "Rahimi"), ("هاشمی", "Hashemi"), ("کاظمی", "Kazemi"), ("قاسمی", "Ghasemi"),
    ("نوری", "Nouri"), ("اکبری", "Akbari"), ("تهرانی", "Tehrani"), ("شیرازی", "Shirazi"),
    ("اصفهانی", "Esfahani"), ("نجفی", "Najafi"), ("یزدانی", "Yazdani"), ("فراهانی", "Farahani"),
    ("رستمی", "Rostami"), ("کرمانی", "Kermani"), ("سلطانی", "Soltani"), ("طاهری", "Taheri"),
    ("ملکی", "Maleki"),
)  # fmt: skip
_EMAIL_DOMAINS = ("gmail.com", "yahoo.com", "outlook.com", "hotmail.com", "chmail.ir", "icloud.com")
_EMAIL_DOMAIN_P = (0.58, 0.14, 0.08, 0.05, 0.08, 0.07)

# Iranian mobile prefixes (the two digits after +989) by carrier; shares of subscribers.
_CARRIERS = ("Hamrah-e Aval", "Irancell", "Rightel")
_CARRIER_CODES = (
    (*range(10, 20), *range(90, 95)),
    (1, 2, 3, 4, 5, 30, 33, 35, 36, 37, 38, 39),
    (20, 21, 22),
)
_CARRIER_P = (0.55, 0.40, 0.05)
# Diaspora numbers: (country code, mobile prefixes, carrier per prefix), then 7 digits.
_FOREIGN_PHONES = {
    1: ("971", ("50", "56", "52", "55"), ("Etisalat", "Etisalat", "du", "du")),
    2: ("90", ("532", "535", "542", "545"), ("Turkcell", "Turkcell", "Vodafone", "Vodafone")),
    3: ("1", ("416", "647", "437", "905"), ("Rogers", "Bell", "Telus", "Rogers")),
}

# Public IPv4 blocks by country: (first octet, lowest second octet, highest second octet).
_IP_BLOCKS = (
    ((5, 112, 127), (37, 98, 99), (37, 129, 129), (185, 1, 254), (2, 176, 191), (151, 232, 247)),
    ((94, 200, 207), (86, 96, 99)),
    ((78, 160, 191), (88, 224, 255)),
    ((99, 224, 255), (24, 114, 114)),
)

# Web browsers: (userAgent, form factor, OS name, OS version, share)
_USER_AGENTS = (
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/126.0.0.0 Safari/537.36",
        "desktop", "Windows", "10", 0.24,
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:127.0) Gecko/20100101 Firefox/127.0",
        "desktop", "Windows", "10", 0.05,
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/126.0.0.0 Safari/537.36 Edg/126.0.0.0",
        "desktop", "Windows", "10", 0.04,
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/126.0.0.0 Safari/537.36",
        "desktop", "Mac OS X", "10.15.7", 0.04,
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.5 Safari/605.1.15",
        "desktop", "Mac OS X", "10.15.7", 0.03,
    ),
    (
        "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0",
        "desktop", "Linux", "", 0.02,
    ),
    (
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/126.0.0.0 Mobile Safari/537.36",
        "mobile", "Android", "10", 0.32,
    ),
    (
        "Mozilla/5.0 (Linux; Android 13; SM-A546E) AppleWebKit/537.36 (KHTML, like Gecko) "
        "SamsungBrowser/25.0 Chrome/121.0.0.0 Mobile Safari/537.36",
        "mobile", "Android", "13", 0.08,
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
        "mobile", "iOS", "17.5", 0.13,
    ),
    (
        "Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.5 Mobile/15E148 Safari/604.1",
        "tablet", "iOS", "17.5", 0.03,
    ),
    (
        "Mozilla/5.0 (Linux; Android 13; SM-X200) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/126.0.0.0 Safari/537.36",
        "tablet", "Android", "13", 0.02,
    ),
)  # fmt: skip
_UA_P = np.array([u[4] for u in _USER_AGENTS]) / sum(u[4] for u in _USER_AGENTS)

# App devices: (manufacturer, model, share); iOS reports the hardware identifier.
_IOS_MODELS = (
    ("Apple", "iPhone12,1", 0.22), ("Apple", "iPhone13,2", 0.2), ("Apple", "iPhone14,5", 0.2),
    ("Apple", "iPhone14,7", 0.12), ("Apple", "iPhone15,2", 0.1), ("Apple", "iPhone15,4", 0.1),
    ("Apple", "iPhone16,2", 0.06),
)  # fmt: skip
_ANDROID_MODELS = (
    ("samsung", "SM-A546E", 0.16), ("samsung", "SM-A155F", 0.14), ("samsung", "SM-A256E", 0.1),
    ("samsung", "SM-S918B", 0.04), ("Xiaomi", "23021RAAEG", 0.14), ("Xiaomi", "23129RAA4G", 0.12),
    ("Xiaomi", "2201117TY", 0.1), ("Xiaomi", "M2101K6G", 0.08), ("HUAWEI", "JNY-LX1", 0.06),
    ("HMD Global", "TA-1452", 0.03), ("OPPO", "CPH2269", 0.03),
)  # fmt: skip
_IOS_VERSIONS = ("16.7.8", "17.4.1", "17.5.1", "17.6.1", "18.1")
_ANDROID_VERSIONS = ("11", "12", "13", "14")

_SITE = "https://shop.safar.example"
# Where web visits come from ("" is a direct visit); torob and emalls are Iranian price engines.
_REFERRERS = (
    ("", 0.34),
    ("https://www.google.com/", 0.28),
    ("https://torob.com/", 0.12),
    ("https://www.instagram.com/", 0.1),
    ("https://t.me/", 0.07),
    ("https://emalls.ir/", 0.04),
    ("https://mail.google.com/", 0.05),
)
_REFERRER_P = np.array([r[1] for r in _REFERRERS])

_CATEGORIES = ("mobile", "fashion", "home", "beauty", "books", "grocery")
_CATEGORY_FA = (
    "موبایل و لوازم جانبی",
    "مد و پوشاک",
    "خانه و آشپزخانه",
    "آرایشی و بهداشتی",
    "کتاب",
    "سوپرمارکت",
)
_CATEGORY_P = np.array([0.22, 0.24, 0.16, 0.14, 0.08, 0.16])
# category, base name, brand, price in rials, variants
_BASE_PRODUCTS = (
    (0, "گوشی موبایل سامسونگ Galaxy A15", "Samsung", 89_000_000, ("مشکی", "آبی", "زرد")),
    (0, "گوشی موبایل شیائومی Redmi Note 13", "Xiaomi", 104_000_000, ("مشکی", "سبز", "آبی")),
    (0, "گوشی موبایل اپل iPhone 13", "Apple", 455_000_000, ("مشکی", "سفید")),
    (0, "هندزفری بلوتوثی شیائومی Redmi Buds 4 Lite", "Xiaomi", 1_950_000, ("مشکی", "سفید")),
    (0, "پاوربانک انکر PowerCore 10000", "Anker", 2_850_000, ("مشکی", "سفید")),
    (0, "شارژر دیواری سامسونگ ۲۵ وات", "Samsung", 1_250_000, ("مشکی", "سفید")),
    (0, "کابل شارژ USB-C بیسوس", "Baseus", 350_000, ("۱ متری", "۲ متری")),
    (0, "قاب سیلیکونی گوشی", "Safar", 250_000, ("Galaxy A15", "Redmi Note 13", "iPhone 13")),
    (0, "محافظ صفحه گلس", "Safar", 150_000, ("Galaxy A15", "Redmi Note 13", "iPhone 13")),
    (0, "ساعت هوشمند شیائومی Redmi Watch 3", "Xiaomi", 4_600_000, ("مشکی", "کرم")),
    (1, "تی‌شرت نخی مردانه", "Safar", 1_100_000, ("M", "L", "XL", "XXL")),
    (1, "مانتو کتان زنانه", "Safar", 3_200_000, ("S", "M", "L", "XL")),
    (1, "شلوار جین مردانه", "Safar", 2_400_000, ("30", "32", "34", "36")),
    (1, "کفش ورزشی", "Safar", 4_800_000, ("۳۹", "۴۰", "۴۱", "۴۲", "۴۳")),
    (1, "شال نخی زنانه", "Safar", 650_000, ("مشکی", "کرم", "سرمه‌ای", "طوسی")),
    (1, "کیف دوشی چرم", "Safar", 3_900_000, ("مشکی", "قهوه‌ای")),
    (1, "هودی", "Safar", 2_200_000, ("M", "L", "XL")),
    (2, "سرخ‌کن بدون روغن فیلیپس", "Philips", 22_000_000, ("۴ لیتری", "۶ لیتری")),
    (2, "چای‌ساز پارس خزر", "Pars Khazar", 4_200_000, ("مشکی", "سفید")),
    (2, "جاروبرقی بوش", "Bosch", 18_500_000, ("۲۰۰۰ وات", "۲۴۰۰ وات")),
    (2, "ست قابلمه گرانیتی ۸ پارچه", "Safar", 9_500_000, ("کرم", "طوسی")),
    (2, "اتو بخار", "Philips", 3_600_000, ("آبی", "بنفش")),
    (2, "سماور برقی", "Pars Khazar", 5_800_000, ("۴ لیتری", "۶ لیتری")),
    (2, "فرش ماشینی ۶ متری", "Safar", 14_000_000, ("لاکی", "کرم", "سرمه‌ای")),
    (2, "مخلوط‌کن", "Moulinex", 3_100_000, ("۶۰۰ وات", "۸۰۰ وات")),
    (3, "کرم ضد آفتاب سینره SPF50", "Cinere", 620_000, ("بی‌رنگ", "رنگی")),
    (3, "شامپو کراتینه", "Safar", 310_000, ("۲۵۰ میلی‌لیتر", "۴۰۰ میلی‌لیتر")),
    (3, "عطر ادوپرفیوم زنانه", "Safar", 3_500_000, ("۵۰ میلی‌لیتر", "۱۰۰ میلی‌لیتر")),
    (3, "رژ لب مات", "Safar", 420_000, ("قرمز", "صورتی", "نود", "زرشکی")),
    (3, "ریش‌تراش فیلیپس", "Philips", 4_900_000, ("سری ۳۰۰۰", "سری ۵۰۰۰")),
    (3, "کرم مرطوب‌کننده", "Safar", 380_000, ("پوست خشک", "پوست چرب")),
    (4, "دیوان حافظ", "Safar", 450_000, ("جلد نرم", "جلد سخت")),
    (4, "بوف کور - صادق هدایت", "Safar", 180_000, ("جلد نرم",)),
    (4, "شازده کوچولو", "Safar", 150_000, ("جلد نرم", "جلد سخت")),
    (4, "کلیدر - محمود دولت‌آبادی", "Safar", 1_900_000, ("دوره ۱۰ جلدی",)),
    (4, "سمفونی مردگان - عباس معروفی", "Safar", 280_000, ("جلد نرم",)),
    (4, "ملت عشق - الیف شافاک", "Safar", 420_000, ("جلد نرم", "جلد سخت")),
    (4, "عادت‌های اتمی - جیمز کلیر", "Safar", 320_000, ("جلد نرم",)),
    (4, "صد سال تنهایی", "Safar", 390_000, ("جلد نرم",)),
    (5, "برنج ایرانی طارم هاشمی ۵ کیلوگرمی", "Safar", 4_600_000, ("درجه یک",)),
    (5, "زعفران سرگل ۱ مثقال", "Safar", 2_100_000, ("بسته‌بندی خاتم",)),
    (5, "چای سیاه ایرانی ۴۵۰ گرمی", "Safar", 480_000, ("قلم", "شکسته")),
    (5, "روغن سرخ‌کردنی ۱.۵ لیتری", "Safar", 420_000, ("ساده",)),
    (5, "پسته اکبری ۵۰۰ گرمی", "Safar", 3_400_000, ("شور", "خام")),
    (5, "خرما مضافتی بم ۱ کیلوگرمی", "Safar", 520_000, ("درجه یک",)),
    (5, "قهوه اسپرسو ۲۵۰ گرمی", "Safar", 780_000, ("عربیکا", "روبوستا")),
    (5, "عسل طبیعی ۱ کیلوگرمی", "Safar", 1_600_000, ("گون", "چهل گیاه")),
)
_QUERIES = (
    ("گوشی سامسونگ", "iphone 13", "هندزفری بلوتوثی", "پاوربانک", "redmi note 13"),
    ("مانتو", "کفش ورزشی مردانه", "شال", "هودی", "جین"),
    ("سرخ کن", "جاروبرقی", "چای ساز", "سماور", "قابلمه"),
    ("ضد آفتاب", "عطر زنانه", "رژ لب", "ریش تراش"),
    ("حافظ", "رمان", "صادق هدایت", "ملت عشق"),
    ("زعفران", "برنج طارم", "پسته", "خرما", "قهوه"),
)
# Web pages with fixed paths: landing, cart, checkout, confirmation.
_FIXED_PATHS = ("/", "/cart", "/checkout", "/checkout/success")
_FIXED_TITLES = (
    "فروشگاه اینترنتی سفر",
    "سبد خرید | فروشگاه سفر",
    "تکمیل خرید | فروشگاه سفر",
    "سفارش شما ثبت شد | فروشگاه سفر",
)
_SIGNUP_METHODS = ("phone_otp", "email", "google")
_PAYMENT_METHODS = ("shaparak", "wallet", "cash_on_delivery")

# Iranian week: Friday is the weekend, Thursday evening is when people shop (Python weekday).
_DOW = np.array([0.96, 0.95, 0.98, 1.05, 1.12, 1.0, 0.97])
_HOURS = np.array(
    [0.55, 0.35, 0.2, 0.12, 0.08, 0.08, 0.15, 0.3, 0.5, 0.7, 0.85, 0.95,
     1.0, 1.0, 0.9, 0.85, 0.9, 1.0, 1.1, 1.25, 1.45, 1.6, 1.5, 1.0]
)  # fmt: skip
_THURSDAY_HOURS = _HOURS * np.where(np.arange(24) >= 16, 1.3, 1.0)
_FRIDAY_HOURS = _HOURS * np.where(np.arange(24) < 11, 0.6, 1.15)
_HOUR_CURVES = np.stack([_HOURS, _THURSDAY_HOURS, _FRIDAY_HOURS]) / _HOURS.mean()


@dataclass(frozen=True)
class _Catalogue:
    category: np.ndarray  # int, per product
    price: np.ndarray  # rials
    fragment: pa.Array  # the product's JSON members, ready to embed in properties
    product_id: pa.Array
    by_category: tuple[np.ndarray, ...]  # product indices per category, by popularity rank
    cdf: tuple[np.ndarray, ...]  # popularity CDF per category
    query_lit: pa.Array  # JSON literal per search query
    query_category: np.ndarray
    query_start: np.ndarray  # first query index per category
    # Every web page path and its title (JSON literal): the fixed pages, then one per
    # category, per search query and per product, in that order.
    page_paths: list[str]
    page_titles: list[str]

    @staticmethod
    def build() -> _Catalogue:
        # The catalogue is the shop's, not the run's: fixed whatever the seed.
        rng = np.random.default_rng(7)
        cat, price, frag, pid, title = [], [], [], [], []
        for c, name, brand, base, variants in _BASE_PRODUCTS:
            for v in variants:
                i = len(cat)
                p = int(round(base * rng.uniform(0.92, 1.1), -4))
                full = f"{name} - {v}"
                product_id = str(100_000 + (i * 7919 + 12_345) % 900_000)
                cat.append(c)
                price.append(p)
                pid.append(product_id)
                (full_lit, brand_lit) = _lit([full, brand])
                frag.append(
                    f'"product_id":"{product_id}","sku":"SF-{product_id}","name":{full_lit},'
                    f'"brand":{brand_lit},"category":"{_CATEGORIES[c]}","price":{p}'
                )
                title.append(_lit([f"{full} | فروشگاه سفر"])[0])
        category = np.array(cat)
        by_cat, cdfs = [], []
        for c in range(len(_CATEGORIES)):
            members = rng.permutation(np.flatnonzero(category == c))
            # Zipf-like popularity; dear things (phones) are looked at less than accessories.
            cost = np.array(price)[members] / np.median(price)
            weights = cost**-0.3 / np.arange(1, len(members) + 1) ** 0.9
            by_cat.append(members)
            cdfs.append(np.cumsum(weights) / weights.sum())
        queries = [(c, q) for c, qs in enumerate(_QUERIES) for q in qs]
        query_category = np.array([c for c, _ in queries])
        query_paths = [f"/search?q={quote(q)}" for _, q in queries]
        page_paths = [
            *_FIXED_PATHS,
            *(f"/category/{c}" for c in _CATEGORIES),
            *query_paths,
            *(f"/product/{p}" for p in pid),
        ]
        page_titles = [
            *_lit(list(_FIXED_TITLES)),
            *_lit([f"{c} | فروشگاه سفر" for c in _CATEGORY_FA]),
            *_lit([f"جستجوی «{q}» | فروشگاه سفر" for _, q in queries]),
            *title,
        ]
        return _Catalogue(
            category=category,
            price=np.array(price, dtype=np.int64),
            fragment=pa.array(frag),
            product_id=pa.array(pid),
            by_category=tuple(by_cat),
            cdf=tuple(cdfs),
            query_lit=pa.array(_lit([q for _, q in queries])),
            query_category=query_category,
            query_start=np.searchsorted(query_category, np.arange(len(_CATEGORIES))),
            page_paths=page_paths,
            page_titles=page_titles,
        )

    def pick(self, rng: np.random.Generator, category: np.ndarray) -> np.ndarray:
        """A product for each requested category, by popularity."""
        out = np.empty(len(category), np.int64)
        for c in range(len(_CATEGORIES)):
            m = np.flatnonzero(category == c)
            if len(m):
                j = np.searchsorted(self.cdf[c], rng.random(len(m)), side="right")
                out[m] = self.by_category[c][np.minimum(j, len(self.cdf[c]) - 1)]
        return out

    def pick_query(self, rng: np.random.Generator, category: np.ndarray) -> np.ndarray:
        """A search query about each requested category."""
        counts = np.array([len(q) for q in _QUERIES])
        offset = (rng.random(len(category)) * counts[category]).astype(np.int64)
        return self.query_start[category] + offset


# --------------------------------------------------------------------------------------------
# People and devices
# --------------------------------------------------------------------------------------------

_ANONYMOUS, _NEWCOMER, _EXISTING = 0, 1, 2


@dataclass
class _People:
    """Who the people are: fixed for the run (their changing state is in ``_State``)."""

    kind: np.ndarray  # _ANONYMOUS (never signs up), _NEWCOMER (may sign up), _EXISTING
    arrive_day: np.ndarray
    last_day: np.ndarray  # last day the person comes back on their own
    rate: np.ndarray  # visits per day while around
    buy: np.ndarray  # propensity to buy (multiplies the add-to-cart rate)
    signup_k: np.ndarray  # sign up at about this visit (newcomers)
    fav_category: np.ndarray
    legacy: np.ndarray  # existing customers whose user id is migrated mid-window
    language: np.ndarray  # 0 fa, 1 en
    devices: np.ndarray  # (n, 3) device indices, -1 for none
    device_weight: np.ndarray  # (n, 3) share of visits per device
    frame: pl.DataFrame  # ids and names as JSON-ready text, by person index


@dataclass
class _Devices:
    person: np.ndarray
    platform: np.ndarray  # _WEB, _IOS, _ANDROID
    avail_day: np.ndarray  # first day the person may use it
    skew: np.ndarray  # device clock error (µs)
    update_lag: np.ndarray  # days before the device installs a new app release
    ua: np.ndarray  # web: index into _USER_AGENTS
    model: np.ndarray  # app: index into the platform's model list
    os_version: np.ndarray
    webpush_after: np.ndarray  # web: µs after first visit it subscribes to web push (or never)
    preexisting: np.ndarray  # in use before the window


@dataclass
class _State:
    """What changes as days pass; updated in place by each simulated day."""

    # people
    visits: np.ndarray
    signup_at: np.ndarray
    last_seen: np.ndarray
    order_count: np.ndarray
    last_order_at: np.ndarray
    rfm: np.ndarray
    city: np.ndarray
    has_email: np.ndarray
    email_opt: np.ndarray
    sms_opt: np.ndarray
    plan: np.ndarray
    # devices
    first_seen: np.ndarray
    install_no: np.ndarray
    installed: np.ndarray
    uninstall_at: np.ndarray
    reinstall_at: np.ndarray
    login_at: np.ndarray
    needs_identify: np.ndarray
    last_event_at: np.ndarray


def _rfm(
    order_count: np.ndarray, last_order_at: np.ndarray, signup_at: np.ndarray, now: np.ndarray
) -> np.ndarray:
    """RFM class codes (indices into ``_RFM``) from order history as of ``now``."""
    since_order = (now - last_order_at) / _DAY
    since_signup = (now - signup_at) / _DAY
    oc = order_count
    recent = np.select([oc >= 5, oc >= 3, oc == 2], [_CHAMPIONS, _LOYAL, _POTENTIAL], default=_NEW)
    buyer = np.select(
        [since_order <= 30, since_order <= 120, oc >= 3],
        [recent, np.where(oc >= 3, _AT_RISK, _HIBERNATING), _AT_RISK],
        default=_LOST,
    )
    buyer = np.where((since_order > 240) & (oc >= 1), _LOST, buyer)
    never = np.select([since_signup <= 30, since_signup <= 180], [_NEW, _HIBERNATING], _LOST)
    return np.where(oc > 0, buyer, never).astype(np.int8)


def _user_ids(people: np.ndarray, seed: int) -> pl.Series:
    """8-digit user ids: an affine bijection of the person index, so they never collide."""
    n = (people * 7_368_787 + 1 + seed % 1_000_003) % 90_000_000 + 10_000_000
    return pl.Series(n).cast(pl.String)


def _make_people(
    rng: np.random.Generator, n: int, days: int, seed: int, window_start_us: int
) -> tuple[_People, _Devices, _State]:
    kind = rng.choice(3, size=n, p=[0.40, 0.35, 0.25])
    existing = kind == _EXISTING
    # Arrivals grow exponentially over the window (about 2.7x from first day to last).
    growth = 1.0
    x = np.log1p(rng.random(n) * np.expm1(growth)) / growth
    arrive = np.where(existing, 0, np.minimum((x * days).astype(np.int64), days - 1))
    life = np.select(
        [kind == _ANONYMOUS, kind == _NEWCOMER],
        [
            np.where(rng.random(n) < 0.55, 0.0, rng.exponential(8, n)),
            np.where(rng.random(n) < 0.15, 0.0, rng.exponential(45, n)),
        ],
        rng.exponential(150, n),
    )
    median_rate = np.select([kind == _ANONYMOUS, kind == _NEWCOMER], [0.15, 0.24], 0.19)
    sigma = np.select([kind == _ANONYMOUS, kind == _NEWCOMER], [0.8, 1.0], 1.1)
    rate = np.minimum(median_rate * np.exp(sigma * rng.standard_normal(n)), 3.0)
    buy = np.exp(0.6 * rng.standard_normal(n) - 0.18) * np.where(kind == _ANONYMOUS, 0.6, 1.0)
    signup_k = np.minimum(rng.geometric(0.55, n), 6)
    fav = rng.choice(len(_CATEGORIES), size=n, p=_CATEGORY_P)
    legacy = existing & (rng.random(n) < 0.05)

    city = rng.choice(len(_CITIES), size=n, p=_CITY_P)
    abroad = city >= _N_IRAN_CITIES
    language = (rng.random(n) < np.where(abroad, 0.5, 0.07)).astype(np.int8)
    persian_script = (language == 0) & (rng.random(n) < 0.65)
    female = rng.random(n) < 0.52
    first = rng.integers(0, len(_FEMALE), n)
    last = rng.integers(0, len(_LAST), n)
    birth_year = np.clip(np.round(rng.normal(1992, 9, n)), 1955, 2007).astype(np.int64)
    has_phone = rng.random(n) < np.where(abroad, 0.85, 0.97)
    has_email = rng.random(n) < np.where(abroad, 0.95, 0.7)
    has_phone |= ~has_email  # everybody can be reached somehow: sign-up needs one of them
    iranian_phone = ~abroad | (rng.random(n) < 0.5)
    email_opt = has_email & (rng.random(n) < 0.7)
    sms_opt = has_phone & (rng.random(n) < 0.8)
    plan = (existing & (rng.random(n) < 0.1)).astype(np.int8)

    # Phones: +98 9xx xxx xxxx, the prefix telling the carrier; 7 digits from a bijection.
    carrier = rng.choice(3, size=n, p=_CARRIER_P)
    code = np.empty(n, np.int64)
    for c, codes in enumerate(_CARRIER_CODES):
        m = carrier == c
        code[m] = np.array(codes)[rng.integers(0, len(codes), m.sum())]
    subscriber = (np.arange(n) * 7919 + seed % 10_000_000 + 1_234_567) % 10_000_000
    phone = pl.Series(
        [f"+989{c:02d}{s:07d}" for c, s in zip(code.tolist(), subscriber.tolist(), strict=True)]
    )
    carrier_name = pl.Series(np.array(_CARRIERS)[carrier])
    foreign = ~iranian_phone
    for cidx, (cc, prefixes, carriers) in _FOREIGN_PHONES.items():
        m = np.flatnonzero(foreign & (_CITY_COUNTRY[city] == cidx))
        j = rng.integers(0, len(prefixes), len(m))
        tails = rng.integers(1_000_000, 10_000_000, len(m))  # 7 subscriber digits everywhere
        phone = phone.scatter(
            m, [f"+{cc}{prefixes[a]}{t}" for a, t in zip(j.tolist(), tails.tolist(), strict=True)]
        )
        carrier_name = carrier_name.scatter(m, [carriers[a] for a in j.tolist()])

    fem_fa, fem_en = zip(*_FEMALE, strict=True)
    male_fa, male_en = zip(*_MALE, strict=True)
    last_fa, last_en = zip(*_LAST, strict=True)
    first_en = np.where(female, np.array(fem_en)[first], np.array(male_en)[first])
    first_fa = np.where(female, np.array(fem_fa)[first], np.array(male_fa)[first])
    last_en_v, last_fa_v = np.array(last_en)[last], np.array(last_fa)[last]
    domain = rng.choice(len(_EMAIL_DOMAINS), size=n, p=_EMAIL_DOMAIN_P)
    style = rng.integers(0, 4, n)
    people_idx = np.arange(n)
    frame = pl.DataFrame(
        {
            "first_en": first_en,
            "last_en": last_en_v,
            "first_fa": first_fa,
            "last_fa": last_fa_v,
            "persian": persian_script,
            "domain": np.array(_EMAIL_DOMAINS)[domain],
            "style": style,
            "suffix": (birth_year % 100).astype(np.int64),
            "idx": people_idx,
            "phone": phone,
            "carrier": carrier_name,
        }
    )
    fe, le = pl.col("first_en").str.to_lowercase(), pl.col("last_en").str.to_lowercase()
    local = (
        pl.when(pl.col("style") == 0)
        .then(pl.concat_str([fe, pl.lit("."), le]))
        .when(pl.col("style") == 1)
        .then(pl.concat_str([fe, le, pl.col("suffix").cast(pl.String)]))
        .when(pl.col("style") == 2)
        .then(pl.concat_str([fe, pl.lit("_"), le]))
        .otherwise(pl.concat_str([fe.str.slice(0, 1), le, pl.col("suffix").cast(pl.String)]))
    )
    frame = frame.with_columns(local=local)
    email = pl.concat_str([pl.col("local"), pl.lit("@"), pl.col("domain")])
    # Addresses are unique, as a shop would insist: later duplicates get a number.
    unique_email = (
        pl.when(email.is_first_distinct())
        .then(email)
        .otherwise(
            pl.concat_str(
                [pl.col("local"), pl.lit("."), pl.col("idx").cast(pl.String), pl.lit("@"),
                 pl.col("domain")]
            )
        )
    )  # fmt: skip
    q = pl.lit('"')
    first_name = pl.when(pl.col("persian")).then(pl.col("first_fa")).otherwise(pl.col("first_en"))
    last_name = pl.when(pl.col("persian")).then(pl.col("last_fa")).otherwise(pl.col("last_en"))
    frame = frame.select(
        user_id=_user_ids(people_idx, seed),
        legacy_id=pl.Series((people_idx * 7 + 48_213) % 900_000 + 10_000).cast(pl.String),
        email_lit=pl.concat_str([q, unique_email, q]),
        phone_lit=pl.when(pl.Series(has_phone))
        .then(pl.concat_str([q, pl.col("phone"), q]))
        .otherwise(pl.lit("null")),
        carrier_lit=pl.when(pl.Series(has_phone))
        .then(pl.concat_str([q, pl.col("carrier"), q]))
        .otherwise(pl.lit("null")),
        first_lit=pl.concat_str([q, first_name, q]),
        last_lit=pl.concat_str([q, last_name, q]),
        name_lit=pl.concat_str([q, first_name, pl.lit(" "), last_name, q]),
        gender_lit=pl.Series(np.where(female, '"female"', '"male"')),
        birth_year=pl.Series(birth_year).cast(pl.String),
    )

    # Devices: web only 45%, app only 30%, both 25%; anonymous visitors keep to one device.
    mix = rng.choice(3, size=n, p=[0.45, 0.30, 0.25])
    ios_share = np.where(abroad, 0.6, 0.18)
    app_os = np.where(rng.random((n, 2)) < ios_share[:, None], _IOS, _ANDROID)
    second = rng.random(n) < np.select([mix == 0, mix == 1], [0.15, 0.12], 1.0)
    third = (mix == 2) & (rng.random(n) < 0.1)
    known = kind != _ANONYMOUS
    second &= known
    third &= known
    # Those on both start on the web or in the app, then take up the other; a few get a
    # second phone (the third device); the app-only may have two phones.
    web_first = rng.random(n) < 0.5
    plat0 = np.select([mix == 0, mix == 1, web_first], [_WEB, app_os[:, 0], _WEB], app_os[:, 0])
    plat1 = np.select([mix == 0, mix == 1, web_first], [_WEB, app_os[:, 1], app_os[:, 0]], _WEB)
    plat2 = app_os[:, 1]
    has = np.stack([np.ones(n, bool), second, third], axis=1)
    plats = np.stack([plat0, plat1, plat2], axis=1)
    count = has.sum(1)
    dev_ids = np.full((n, 3), -1, np.int64)
    dev_ids[has] = np.arange(count.sum())
    dev_person = np.repeat(people_idx, count)
    dev_plat = plats[has]
    slot = np.tile(np.arange(3), (n, 1))[has]
    nd = len(dev_person)
    # Later devices come into use some days after the first one (existing customers: all).
    offset = np.where(slot == 0, 0, 1 + rng.exponential(12, nd).astype(np.int64))
    offset = np.where(existing[dev_person], 0, offset)
    avail_day = arrive[dev_person] + offset
    skewed = rng.random(nd) < 0.05
    skew_s = np.where(
        rng.random(nd) < 0.5,
        np.exp(rng.uniform(np.log(60), np.log(3 * 3600), nd)),
        rng.choice([1800, 3600, 7200, 12_600], nd),
    ) * rng.choice([-1, 1], nd)
    ua = rng.choice(len(_USER_AGENTS), size=nd, p=_UA_P)
    ios_p = np.array([m[2] for m in _IOS_MODELS])
    and_p = np.array([m[2] for m in _ANDROID_MODELS])
    model = np.where(
        dev_plat == _IOS,
        rng.choice(len(ios_p), size=nd, p=ios_p / ios_p.sum()),
        rng.choice(len(and_p), size=nd, p=and_p / and_p.sum()),
    )
    os_version = np.where(
        dev_plat == _IOS,
        rng.integers(0, len(_IOS_VERSIONS), nd),
        rng.choice(len(_ANDROID_VERSIONS), size=nd, p=[0.15, 0.25, 0.32, 0.28]),
    )
    webpush = (dev_plat == _WEB) & known[dev_person] & (rng.random(nd) < 0.15)
    webpush_after = np.where(
        webpush, (rng.exponential(7, nd) * _DAY).astype(np.int64), _NEVER
    ).astype(np.int64)
    devices = _Devices(
        person=dev_person,
        platform=dev_plat.astype(np.int8),
        avail_day=avail_day,
        skew=np.where(skewed, skew_s * _US, 0).astype(np.int64),
        update_lag=rng.exponential(6, nd).astype(np.int64),
        ua=ua,
        model=model,
        os_version=os_version,
        webpush_after=webpush_after,
        preexisting=existing[dev_person],
    )
    weight = np.where(has, np.array([1.0, 0.6, 0.4]), 0.0)
    people = _People(
        kind=kind,
        arrive_day=arrive,
        last_day=arrive + life.astype(np.int64),
        rate=rate,
        buy=buy,
        signup_k=signup_k,
        fav_category=fav,
        legacy=legacy,
        language=language,
        devices=dev_ids,
        device_weight=weight,
        frame=frame,
    )

    # Existing customers: signed up up to ~3 years ago, with an order history.
    created = window_start_us - (rng.uniform(1, 1000, n) * _DAY).astype(np.int64)
    orders0 = np.where(existing & (rng.random(n) < 0.8), rng.geometric(0.3, n), 0)
    last_order = np.maximum(
        window_start_us - (rng.exponential(45, n) * _DAY).astype(np.int64), created
    )
    last_order = np.where(orders0 > 0, last_order, _LONG_AGO)
    signup_at = np.where(existing, created, _NEVER)
    start = np.full(n, window_start_us, np.int64)
    pre = devices.preexisting
    is_app = dev_plat != _WEB
    # Some apps already installed will be uninstalled during the window.
    uninstall = np.where(
        pre & is_app & (rng.random(nd) < 0.15),
        window_start_us + (rng.exponential(30, nd) * _DAY).astype(np.int64),
        _NEVER,
    )
    state = _State(
        visits=np.zeros(n, np.int64),
        signup_at=signup_at.astype(np.int64),
        last_seen=np.where(existing, window_start_us - _DAY, _LONG_AGO).astype(np.int64),
        order_count=orders0.astype(np.int64),
        last_order_at=last_order.astype(np.int64),
        rfm=np.where(existing, _rfm(orders0, last_order, signup_at, start), _NEW).astype(np.int8),
        city=city,
        has_email=has_email,
        email_opt=email_opt,
        sms_opt=sms_opt,
        plan=plan,
        first_seen=np.where(pre, _LONG_AGO, _NEVER).astype(np.int64),
        install_no=np.zeros(nd, np.int64),
        installed=pre.copy(),
        uninstall_at=uninstall.astype(np.int64),
        reinstall_at=np.full(nd, _NEVER, np.int64),
        login_at=np.where(pre, _LONG_AGO, _NEVER).astype(np.int64),
        needs_identify=pre.copy(),
        last_event_at=np.full(nd, _LONG_AGO, np.int64),
    )
    return people, devices, state


def _push_granted(seed: int, device: np.ndarray, install_no: np.ndarray, platform: np.ndarray):
    """Whether an app install granted push permission (iOS asks; Android 13+ asks too)."""
    share = np.where(platform == _IOS, 0.55, 0.85)
    return _unit(_hash(seed, 11, device, install_no)) < share


# --------------------------------------------------------------------------------------------
# The calendar: weekly and daily rhythm, promotions, push campaigns
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Campaign:
    at: int  # µs UTC
    campaign_id: str
    name: str
    audience: float  # share of reachable app devices targeted
    tap_rate: float


def _promotion(day: date, seed: int) -> tuple[float, float, str | None]:
    """(traffic factor, conversion factor, campaign name) for a local calendar day."""
    last_nov_friday = max(
        date(day.year, 11, d) for d in range(1, 31) if date(day.year, 11, d).weekday() == 4
    )
    if day == last_nov_friday:
        return 2.2, 1.5, "بلک فرایدی سفر"
    if day in (last_nov_friday - timedelta(days=1), last_nov_friday + timedelta(days=1)):
        return 1.5, 1.3, "بلک فرایدی سفر"
    md = (day.month, day.day)
    if (12, 18) <= md <= (12, 21):
        return 1.35, 1.2, "جشنواره شب یلدا"
    if (3, 6) <= md <= (3, 19):
        return 1.25, 1.15, "حراج عید نوروز"
    if (3, 20) <= md <= (4, 3):
        return 0.75, 0.9, None  # Nowruz holidays: people travel
    if md in ((2, 16), (2, 17)):
        return 1.2, 1.15, "جشن سپندارمذگان"
    if (9, 1) <= md <= (9, 20):
        return 1.12, 1.08, "بازگشایی مدارس"
    # A 24-hour flash sale on about one Wednesday in three, picked by the seed.
    week = day.isocalendar()
    if day.weekday() == 2 and _hash(seed, 81, week[0] * 100 + week[1]) % np.uint64(3) == 0:
        return 1.45, 1.3, "فروش ویژه ۲۴ ساعته"
    return 1.0, 1.0, None


def _campaigns(
    day: date, day_us: int, promotion: tuple[float, float, str | None]
) -> list[_Campaign]:
    """Push campaigns sent on ``day`` (Tehran local times, stored in UTC)."""
    tehran = 210 * _MIN  # UTC+03:30, no daylight saving since 2022

    def at(hour: float) -> int:
        return day_us + int(hour * _HOUR) - tehran

    tag = day.strftime("%Y%m%d")
    traffic, _, name = promotion
    out = []
    if name:
        out.append(_Campaign(at(11), f"cmp_{tag}_am", name, 0.35, 0.08))
        if traffic >= 1.4:  # the big days get a reminder in the evening
            out.append(_Campaign(at(20.5), f"cmp_{tag}_pm", name, 0.25, 0.06))
    elif day.weekday() == 1:
        out.append(_Campaign(at(18.5), f"cmp_{tag}_deals", "پیشنهادهای شگفت‌انگیز هفته", 0.2, 0.05))
    elif day.weekday() == 3:
        out.append(_Campaign(at(17), f"cmp_{tag}_weekend", "حراج آخر هفته", 0.25, 0.06))
    return out


# --------------------------------------------------------------------------------------------
# One run
# --------------------------------------------------------------------------------------------

_BIN = 15 * _MIN  # visits are placed in quarter-hour bins by the local daily curve


@dataclass
class _Run:
    seed: int
    days: int
    start: date
    day_us: np.ndarray  # UTC midnight of each day, µs since the epoch
    visit_factor: np.ndarray  # (days, timezone): expected visits relative to an average day
    bin_cdf: np.ndarray  # (days, timezone, 96): when in the UTC day visits happen
    conversion: np.ndarray  # (days,) multiplies the funnel's rates on promotion days
    campaigns: list[list[_Campaign]]
    migration_at: int  # legacy user ids are aliased to new ones at this time
    release_us: np.ndarray  # app release times (one every two weeks)
    app_versions: list[str]  # version name of each release
    app_builds: list[str]
    catalogue: _Catalogue
    people: _People
    devices: _Devices
    state: _State

    @staticmethod
    def create(users: int, days: int, seed: int, end: date) -> _Run:
        start = end - timedelta(days=days - 1)
        epoch = date(1970, 1, 1)
        day_us = np.array([((start - epoch).days + d) * _DAY for d in range(days)], dtype=np.int64)
        promos = {
            start + timedelta(days=d): _promotion(start + timedelta(days=d), seed)
            for d in range(-1, days + 1)
        }
        visit_factor = np.empty((days, len(_TIMEZONES)))
        bin_cdf = np.empty((days, len(_TIMEZONES), 96))
        minutes = np.arange(96) * 15 + 7.5
        for d in range(days):
            today = start + timedelta(days=d)
            noon = datetime(today.year, today.month, today.day, 12, tzinfo=UTC)
            for z, tz in enumerate(_TIMEZONES):
                offset = noon.astimezone(ZoneInfo(tz)).utcoffset().total_seconds() / 60
                local = minutes + offset
                shift = np.floor(local / 1440).astype(int)
                hour = ((local % 1440) // 60).astype(int)
                weights = np.empty(96)
                for s in np.unique(shift):
                    local_day = today + timedelta(days=int(s))
                    wd = local_day.weekday()
                    curve = _HOUR_CURVES[1 if wd == 3 else 2 if wd == 4 else 0]
                    m = shift == s
                    weights[m] = _DOW[wd] * curve[hour[m]] * promos[local_day][0]
                visit_factor[d, z] = weights.mean()
                bin_cdf[d, z] = np.cumsum(weights) / weights.sum()
        conversion = np.array([promos[start + timedelta(days=d)][1] for d in range(days)])
        campaigns = []
        for d in range(days):
            today = start + timedelta(days=d)
            campaigns.append(_campaigns(today, int(day_us[d]), promos[today]))
        migration_day = max(1, int(days * 0.4))
        migration_at = (
            int(day_us[migration_day]) + 4 * _HOUR if migration_day < days else int(_NEVER)
        )
        releases = np.arange(-4, days // 14 + 2)
        rng = np.random.default_rng([seed, 0])
        people, devices, state = _make_people(rng, users, days, seed, int(day_us[0]))
        return _Run(
            seed=seed,
            days=days,
            start=start,
            day_us=day_us,
            visit_factor=visit_factor,
            bin_cdf=bin_cdf,
            conversion=conversion,
            campaigns=campaigns,
            migration_at=migration_at,
            release_us=int(day_us[0]) + releases * 14 * _DAY + 10 * _HOUR,
            app_versions=[f"5.{i + 10}.{i * 7 % 3}" for i in range(len(releases))],
            app_builds=[str(5000 + 10 * i) for i in range(len(releases))],
            catalogue=_Catalogue.build(),
            people=people,
            devices=devices,
            state=state,
        )


# --------------------------------------------------------------------------------------------
# One simulated day
# --------------------------------------------------------------------------------------------

_ROW_FIELDS = ("kind", "episode", "t", "product", "qty", "aux", "cart")
_EPISODE_FIELDS = ("person", "device", "install_no", "login_at", "referrer", "late")


class _Rows:
    """Rows under construction: parallel arrays, one element per message."""

    def __init__(self) -> None:
        self.parts: dict[str, list[np.ndarray]] = {name: [] for name in _ROW_FIELDS}
        self.keys: list[np.ndarray] = []

    def add(self, kind, episode, t, key=0.0, product=None, qty=None, aux=None, cart=None):
        n = len(episode)
        values = {"kind": kind, "episode": episode, "t": t, "product": product, "qty": qty}
        values |= {"aux": aux, "cart": cart}
        for name, value in values.items():
            value = -1 if value is None else value
            self.parts[name].append(np.broadcast_to(np.asarray(value, np.int64), (n,)))
        self.keys.append(np.broadcast_to(np.asarray(key, np.float64), (n,)))

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            name: np.concatenate(parts) if parts else np.empty(0, np.int64)
            for name, parts in self.parts.items()
        }

    def key(self) -> np.ndarray:
        return np.concatenate(self.keys) if self.keys else np.empty(0)


class _Episodes:
    """Sessions, background deliveries and server calls: who, which device, when signed in."""

    def __init__(self) -> None:
        self.parts: dict[str, list[np.ndarray]] = {name: [] for name in _EPISODE_FIELDS}
        self.count = 0

    def add(self, person, device, install_no, login_at, referrer=0, late=False) -> np.ndarray:
        """Add episodes; rows at or after ``login_at`` carry the person's user id."""
        n = len(person)
        values = {"person": person, "device": device, "install_no": install_no}
        values |= {"login_at": login_at, "referrer": referrer, "late": late}
        for name, value in values.items():
            dtype = bool if name == "late" else np.int64
            self.parts[name].append(np.broadcast_to(np.asarray(value, dtype), (n,)).copy())
        ids = np.arange(self.count, self.count + n)
        self.count += n
        return ids

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: np.concatenate(parts) for name, parts in self.parts.items()}


def _concat(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {name: np.concatenate([a[name], b[name]]) for name in a}


def _gap_seconds(rng: np.random.Generator, kind: np.ndarray) -> np.ndarray:
    """Seconds between a row and the previous one in its session, by the row's kind."""
    n = len(kind)
    k = _K
    gap = np.clip(rng.lognormal(np.log(18), 0.8, n), 2, 600)  # reading a page
    # A track fired together with its page view.
    fired = np.isin(kind, [k.SEARCHED, k.PRODUCT_VIEWED, k.CART_VIEWED, k.CHECKOUT_STARTED])
    gap = np.where(fired, rng.uniform(0.05, 0.6, n), gap)
    gap = np.where(kind == k.PRODUCT_ADDED, np.clip(rng.lognormal(np.log(12), 0.7, n), 2, 300), gap)
    gap = np.where(np.isin(kind, [k.OPENED, k.IDENT_REFRESH]), rng.uniform(0.3, 2.0, n), gap)
    gap = np.where(kind == k.LANDING, rng.uniform(0.5, 3.0, n), gap)
    # Typing a phone number and the one-time code.
    signin = np.clip(rng.lognormal(np.log(45), 0.6, n), 8, 600)
    gap = np.where(np.isin(kind, [k.IDENT_SIGNUP, k.IDENT_LOGIN]), signin, gap)
    gap = np.where(np.isin(kind, [k.ALIAS_SIGNUP, k.SIGNED_UP]), rng.uniform(0.1, 1.0, n), gap)
    # The bank's payment page (Shaparak) sits between checkout and the confirmation.
    pay = np.clip(rng.lognormal(np.log(150), 0.5, n), 40, 1200)
    gap = np.where(kind == k.ORDER_PAGE, pay, gap)
    gap = np.where(kind == k.ORDER_COMPLETED, rng.uniform(0.1, 0.8, n), gap)
    gap = np.where(kind == k.ORDER_COMPLETED_SERVER, rng.uniform(0.5, 3.0, n), gap)
    return np.where(kind == k.IDENT_ORDER, rng.uniform(1.0, 6.0, n), gap)


@dataclass
class _Changes:
    """Profile changes the server records today: when (per person, or never) and to what."""

    city_at: np.ndarray
    city: np.ndarray
    email_at: np.ndarray
    email_opt: np.ndarray  # consent given with an email added today
    email_out_at: np.ndarray
    sms_out_at: np.ndarray
    plan_at: np.ndarray


def _simulate_day(run: _Run, d: int) -> pl.DataFrame:
    """Every message whose event happens on day ``d`` of the window, as raw rows.

    Updates ``run.state`` so the next day continues where this one ends.
    """
    rng = np.random.default_rng([run.seed, 1, d])
    st = run.state
    day0 = int(run.day_us[d])
    eps = _Episodes()
    sessions = _plan_sessions(run, d, rng)
    r = _session_rows(run, d, rng, sessions, eps)
    other = _Rows()

    # Push notifications delivered in the background.
    dev, at, campaign = sessions["push"]
    if len(dev):
        e = eps.add(run.devices.person[dev], dev, st.install_no[dev], st.login_at[dev])
        other.add(_K.PUSH_RECEIVED, e, at, aux=campaign)
        np.maximum.at(st.last_event_at, dev, at)
    s_dev = sessions["device"][r["episode"]]
    np.maximum.at(st.last_event_at, s_dev, r["t"])

    # Uninstalls due today, after the device's last event.
    due = np.flatnonzero(
        st.installed
        & (run.devices.platform != _WEB)
        & (st.uninstall_at >= day0)
        & (st.uninstall_at < day0 + _DAY)
    )
    gone_at = np.maximum(st.uninstall_at[due], st.last_event_at[due] + _MIN)
    e = eps.add(run.devices.person[due], due, st.install_no[due], st.login_at[due])
    other.add(_K.UNINSTALLED, e, gone_at)
    st.installed[due] = False
    st.login_at[due] = _NEVER
    st.last_event_at[due] = gone_at

    changes = _server_changes(run, d, rng, eps, other)
    r = _concat(r, other.arrays())
    e = eps.arrays()
    person = e["person"][r["episode"]]
    is_order = np.isin(r["kind"], [_K.ORDER_COMPLETED, _K.ORDER_COMPLETED_SERVER])
    orders = (person[is_order], r["t"][is_order])
    traits = _traits_at(run, person, r["t"], orders, changes, day0)

    # The class each person was last told about today, so the nightly job sends only changes.
    told = np.isin(r["kind"], [*_FULL_IDENTIFY, _K.IDENT_ORDER])
    order = np.lexsort((r["t"][told], person[told]))
    told_person = person[told][order]
    last = np.append(told_person[1:] != told_person[:-1], True) if len(order) else order > 0
    st.rfm[told_person[last]] = traits["rfm"][told][order][last]
    # The nightly RFM job (02:30 in Tehran): classes also change as orders age.
    job_at = day0 + 23 * _HOUR
    known = np.flatnonzero(st.signup_at <= job_at)
    job = _traits_at(run, known, np.full(len(known), job_at), orders, changes, day0)
    moved = job["rfm"] != st.rfm[known]
    st.rfm[known] = job["rfm"]
    who = known[moved]
    e_job = eps.add(who, -1, 0, _LONG_AGO)
    job_rows = _Rows()
    job_rows.add(_K.IDENT_RFM, e_job, np.full(len(who), job_at))
    r = _concat(r, job_rows.arrays())
    traits = _concat(traits, {name: value[moved] for name, value in job.items()})
    e = eps.arrays()

    # Day end: book the orders and apply the profile changes.
    np.add.at(st.order_count, orders[0], 1)
    np.maximum.at(st.last_order_at, orders[0], orders[1])
    city_moved = changes.city_at < _NEVER
    st.city[city_moved] = changes.city[city_moved]
    email_added = changes.email_at < _NEVER
    st.has_email |= email_added
    st.email_opt[email_added] = changes.email_opt[email_added]
    st.email_opt &= changes.email_out_at == _NEVER
    st.sms_opt &= changes.sms_out_at == _NEVER
    st.plan[changes.plan_at < _NEVER] = 1

    carts = _carts(run, d, r, sessions["carts"])
    return _render(run, d, rng, r, e, traits, carts)


def _plan_sessions(run: _Run, d: int, rng: np.random.Generator) -> dict:
    """Today's sessions (visits and push-opened), their devices, installs and campaigns."""
    people, devices, st = run.people, run.devices, run.state
    day0 = int(run.day_us[d])

    # Visits by each person's rhythm: more while new, by the local weekly and daily curve.
    around = np.flatnonzero((people.arrive_day <= d) & (people.last_day >= d))
    kind = people.kind[around]
    age = d - people.arrive_day[around]
    novelty = np.where(kind == _EXISTING, 0.8, 0.6 + 0.9 * np.exp(-age / 6.0))
    tz = _CITY_TZ[st.city[around]]
    n_visits = rng.poisson(people.rate[around] * novelty * run.visit_factor[d, tz])
    first_day = (kind != _EXISTING) & (people.arrive_day[around] == d)
    n_visits = np.minimum(np.where(first_day, np.maximum(n_visits, 1), n_visits), 5)
    person = np.repeat(around, n_visits)
    v_tz = np.repeat(tz, n_visits)
    start = np.empty(len(person), np.int64)
    for z in range(len(_TIMEZONES)):
        m = np.flatnonzero(v_tz == z)
        b = np.searchsorted(run.bin_cdf[d, z], rng.random(len(m)), side="right")
        start[m] = day0 + np.minimum(b, 95) * _BIN + (rng.random(len(m)) * _BIN).astype(np.int64)

    # Which device: one of the person's that is in use and installed (or due a reinstall).
    devs = people.devices[person]
    dv = np.maximum(devs, 0)
    t = start[:, None]
    never_seen = st.first_seen[dv] == _NEVER
    usable = (
        (devs >= 0)
        & (devices.avail_day[dv] <= d)
        & (
            (st.installed[dv] & (t < st.uninstall_at[dv]))
            | (~st.installed[dv] & (never_seen | (st.reinstall_at[dv] <= t)))
        )
    )
    weight = np.where(usable, people.device_weight[person], 0.0)
    total = weight.sum(1)
    pick = (np.cumsum(weight, 1) <= (rng.random(len(person)) * total)[:, None]).sum(1)
    device = devs[np.arange(len(person)), np.minimum(pick, 2)]
    keep = total > 0  # every device uninstalled: the person does not come back
    device, start = device[keep], start[keep]

    # Push campaigns to installed apps with permission, used in the last three weeks.
    app = np.flatnonzero(devices.platform != _WEB)
    granted = _push_granted(run.seed, app, st.install_no[app], devices.platform[app])
    none = np.empty(0, np.int64)
    push_dev, push_at, push_c, tap_dev, tap_at, tap_c = ([none] for _ in range(6))
    for c, camp in enumerate(run.campaigns[d]):
        ok = (
            granted
            & st.installed[app]
            & (st.uninstall_at[app] > camp.at + _HOUR)
            & (st.last_seen[devices.person[app]] >= camp.at - 21 * _DAY)
        )
        target = app[ok & (rng.random(len(app)) < camp.audience * 0.92)]
        delay = rng.uniform(2, 300, len(target))
        offline = rng.random(len(target)) < 0.08
        delay += np.where(offline, rng.exponential(3 * 3600, len(target)), 0)
        received = camp.at + (delay * _US).astype(np.int64)
        push_dev.append(target)
        push_at.append(received)
        push_c.append(np.full(len(target), c))
        tapped = rng.random(len(target)) < camp.tap_rate
        wait = np.clip(rng.lognormal(np.log(120), 1.2, tapped.sum()), 3, 6 * 3600)
        opened = received[tapped] + (wait * _US).astype(np.int64)
        ok_tap = opened < st.uninstall_at[target[tapped]] - 2 * _HOUR
        tap_dev.append(target[tapped][ok_tap])
        tap_at.append(opened[ok_tap])
        tap_c.append(np.full(ok_tap.sum(), c))

    campaign = np.concatenate([np.full(len(device), -1), *tap_c])
    device = np.concatenate([device, *tap_dev])
    start = np.concatenate([start, *tap_at])
    person = devices.person[device]
    order = np.lexsort((start, person))
    device, start, campaign, person = device[order], start[order], campaign[order], person[order]

    # A device's first session today installs the app if it is new or was uninstalled.
    by_dev = np.lexsort((start, device))
    first_of_dev = np.zeros(len(device), bool)
    first_of_dev[by_dev] = _first_in_run(device[by_dev])
    installing = first_of_dev & ((st.first_seen[device] == _NEVER) | ~st.installed[device])
    k, k_t = device[installing], start[installing]
    again = st.first_seen[k] != _NEVER
    st.install_no[k] += again
    st.first_seen[k] = np.where(again, st.first_seen[k], k_t)
    st.installed[k] = True
    st.login_at[k] = _NEVER
    # About 30% of installs are uninstalled later (a day or more); a third of those come back.
    leave = (devices.platform[k] != _WEB) & (rng.random(len(k)) < 0.30)
    leave_at = k_t + (np.maximum(rng.exponential(22, len(k)), 1.0) * _DAY).astype(np.int64)
    back = leave & (rng.random(len(k)) < 0.3)
    back_at = leave_at + (np.maximum(rng.exponential(12, len(k)), 1.0) * _DAY).astype(np.int64)
    st.uninstall_at[k] = np.where(leave, leave_at, _NEVER)
    st.reinstall_at[k] = np.where(back, back_at, _NEVER)
    return {
        "person": person,
        "device": device,
        "start": start,
        "campaign": campaign,
        "first_of_dev": first_of_dev,
        "by_dev": by_dev,
        "installing": installing & (devices.platform[device] != _WEB),
        "install_no": st.install_no[device].copy(),
        "push": (np.concatenate(push_dev), np.concatenate(push_at), np.concatenate(push_c)),
    }


def _session_rows(
    run: _Run, d: int, rng: np.random.Generator, s: dict, eps: _Episodes
) -> dict[str, np.ndarray]:
    """The rows of today's sessions, in order and timed; settles sign-ups and logins."""
    people, devices, st, cat = run.people, run.devices, run.state, run.catalogue
    person, device, start = s["person"], s["device"], s["start"]
    n = len(person)
    plat = devices.platform[device]
    app = plat != _WEB
    kind = people.kind[person]

    # The funnel: views, then each step with drop-off (better on promotion days).
    conv = run.conversion[d]
    bounce = rng.random(n) < 0.15
    n_view = np.where(bounce, 0, np.minimum(1 + rng.negative_binomial(1.3, 1.3 / 3.9, n), 25))
    n_search = np.where(bounce, 0, np.minimum(rng.poisson(0.55, n), 4))
    n_category = np.where(bounce, 0, np.minimum(rng.poisson(0.45, n), 4))
    p_add = np.clip(0.30 * people.buy[person] * conv, 0, 0.9)
    adds = (n_view > 0) & (rng.random(n) < p_add)
    n_add = np.where(adds, np.minimum(n_view, rng.geometric(0.55, n)), 0)
    cart = adds & (rng.random(n) < 0.5)
    checkout = cart & (kind != _ANONYMOUS) & (rng.random(n) < 0.6)
    ordered = checkout & (rng.random(n) < min(0.6 * conv, 0.95))

    # Sign-up: a newcomer's k-th visit, or earlier when they want to buy (no guest checkout).
    visit_no = st.visits[person] + _count_before(np.ones(n), person) + 1
    unsigned = (kind == _NEWCOMER) & (st.signup_at[person] == _NEVER)
    wants = unsigned & ((visit_no >= people.signup_k[person]) | checkout)
    signup = wants & (_count_before(wants, person) == 0)
    signed = (st.signup_at[person] < start) | (_count_before(signup, person) > 0)
    # Logins: a signed-up person on a device that is not signed in, soon or to check out.
    by_dev = s["by_dev"]
    dev_sorted = device[by_dev]

    def earlier_on_device(flags: np.ndarray) -> np.ndarray:
        out = np.zeros(n, bool)
        out[by_dev] = _count_before(flags[by_dev], dev_sorted) > 0
        return out

    logged = (st.login_at[device] != _NEVER) | earlier_on_device(signup)
    wants_login = signed & ~logged & ~signup & (checkout | (rng.random(n) < 0.7))
    login = wants_login & ~earlier_on_device(wants_login)
    logged |= earlier_on_device(login)
    # Nobody checks out signed out: those carts are abandoned.
    checkout &= logged | signup | login
    ordered &= checkout
    refresh = s["first_of_dev"] & st.needs_identify[device] & logged
    st.needs_identify[device[refresh]] = False
    ident = signup | login
    late_ident = ident & checkout & (rng.random(n) < 0.75)
    alias = signup & (rng.random(n) < 0.06)

    referrer = np.where(app, 0, rng.choice(len(_REFERRERS), size=n, p=_REFERRER_P))
    late = app & (rng.random(n) < 0.005)  # the phone was offline; sent hours later
    login_at = np.where(logged, _LONG_AGO, _NEVER)  # sessions that sign in: set below
    ep = eps.add(person, device, s["install_no"], login_at, referrer, late)

    rows = _Rows()

    def add(kind_, idx, key, **kw):
        rows.add(kind_, ep[idx], 0, key=key, **kw)

    add(_K.INSTALLED, np.flatnonzero(s["installing"]), 0.0)
    tapped = np.flatnonzero(s["campaign"] >= 0)
    add(_K.PUSH_TAPPED, tapped, 0.01, aux=s["campaign"][tapped])
    opened = np.flatnonzero(app)
    background = ~s["installing"][opened] & (rng.random(len(opened)) < 0.3)
    add(_K.OPENED, opened, 0.02, aux=background)
    idx = np.flatnonzero(refresh)
    add(_K.IDENT_REFRESH, idx, np.where(app[idx], 0.03, 1.01))
    add(_K.LANDING, np.arange(n), 1.0)
    for idx, key in (
        (np.flatnonzero(ident & ~late_ident), 1.5),
        (np.flatnonzero(late_ident), 3.5),
    ):
        add(np.where(signup[idx], _K.IDENT_SIGNUP, _K.IDENT_LOGIN), idx, key)
        add(_K.ALIAS_SIGNUP, idx[alias[idx]], key + 0.001)
        up = idx[signup[idx]]
        method = rng.choice(len(_SIGNUP_METHODS), size=len(up), p=[0.7, 0.2, 0.1])
        add(_K.SIGNED_UP, up, key + 0.002, aux=method)

    # Browsing, in random order: mostly the person's favourite category.
    fav = people.fav_category[person]

    def category_of(idx):
        other = rng.choice(len(_CATEGORIES), size=len(idx), p=_CATEGORY_P)
        return np.where(rng.random(len(idx)) < 0.6, fav[idx], other)

    si = np.repeat(np.arange(n), n_search)
    key = 2 + rng.random(len(si))
    query = cat.pick_query(rng, category_of(si))
    add(_K.SEARCH_PAGE, si, key, aux=query)
    add(_K.SEARCHED, si, key + 1e-7, aux=query)
    ci = np.repeat(np.arange(n), n_category)
    add(_K.CATEGORY_PAGE, ci, 2 + rng.random(len(ci)), aux=category_of(ci))
    vi = np.repeat(np.arange(n), n_view)
    key = 2 + rng.random(len(vi))
    product = cat.pick(rng, category_of(vi))
    add(_K.PRODUCT_PAGE, vi, key, product=product)
    add(_K.PRODUCT_VIEWED, vi, key + 1e-7, product=product)
    # Sessions that add get a cart, holding the first n_add products viewed.
    cart_of = np.where(n_add > 0, np.cumsum(n_add > 0) - 1, -1)
    added = _count_before(np.ones(len(vi)), vi) < n_add[vi]
    ai, ap = vi[added], product[added]
    qty = np.where(cat.category[ap] == 5, rng.integers(1, 4, len(ai)), 1)
    qty += (cat.category[ap] != 5) & (rng.random(len(ai)) < 0.08)
    add(_K.PRODUCT_ADDED, ai, key[added] + 2e-7, product=ap, qty=qty, cart=cart_of[ai])
    for flags, page, track, key in (
        (cart, _K.CART_PAGE, _K.CART_VIEWED, 3.1),
        (checkout, _K.CHECKOUT_PAGE, _K.CHECKOUT_STARTED, 4.0),
    ):
        idx = np.flatnonzero(flags)
        add(page, idx, key, cart=cart_of[idx])
        add(track, idx, key + 1e-7, cart=cart_of[idx])
    idx = np.flatnonzero(ordered)
    server = rng.random(len(idx)) < 0.4  # the backend reports some orders itself
    payment = rng.choice(len(_PAYMENT_METHODS), size=len(idx), p=[0.8, 0.15, 0.05])
    add(_K.ORDER_PAGE, idx, 5.0, cart=cart_of[idx])
    kind_ = np.where(server, _K.ORDER_COMPLETED_SERVER, _K.ORDER_COMPLETED)
    add(kind_, idx, 5.0 + 1e-7, cart=cart_of[idx], aux=payment)
    add(_K.IDENT_ORDER, idx, 5.1)

    # Times: the session start plus the gaps between its rows.
    r = rows.arrays()
    order = np.lexsort((rows.key(), r["episode"]))
    r = {name: a[order] for name, a in r.items()}
    gap = (_gap_seconds(rng, r["kind"]) * _US).astype(np.int64)
    first = _first_in_run(r["episode"])
    gap[first] = 0
    elapsed = np.cumsum(gap)
    heads = np.flatnonzero(first)
    elapsed -= np.repeat(elapsed[heads], np.diff(np.append(heads, len(gap))))
    r["t"] = start[r["episode"]] + elapsed

    # Signing in sets the session's and the device's login time, and the sign-up time.
    # (Sessions are the day's first episodes, so an episode id is a session index.)
    is_ident = np.isin(r["kind"], [_K.IDENT_SIGNUP, _K.IDENT_LOGIN])
    sess, ident_t = r["episode"][is_ident], r["t"][is_ident]
    eps.parts["login_at"][0][sess] = ident_t
    st.login_at[device[sess]] = ident_t
    up = signup[sess]
    st.signup_at[person[sess[up]]] = ident_t[up]
    st.visits += np.bincount(person, minlength=len(st.visits))
    np.maximum.at(st.last_seen, person, start)
    s["carts"] = np.flatnonzero(n_add > 0)
    return r


def _server_changes(
    run: _Run, d: int, rng: np.random.Generator, eps: _Episodes, rows: _Rows
) -> _Changes:
    """Profile and consent changes recorded by the backend today, and the id migration."""
    people, st = run.people, run.state
    day0 = int(run.day_us[d])
    n = len(people.kind)
    known = np.flatnonzero(st.signup_at < day0)
    # Daytime in Iran: 05:00 to 22:00 Tehran time.
    when = day0 + (1.5 * _HOUR + rng.random(len(known)) * 17 * _HOUR).astype(np.int64)

    def server(kind, who, at):
        e = eps.add(who, -1, 0, _LONG_AGO)
        rows.add(kind, e, at)

    def change(share: float, eligible: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        hit = eligible & (rng.random(len(known)) < share)
        at = np.full(n, _NEVER, np.int64)
        at[known[hit]] = when[hit]
        return known[hit], when[hit], at

    # Moving house (now and then abroad): about 4% of customers over 90 days.
    who, at, city_at = change(0.0005, np.ones(len(known), bool))
    city = st.city.copy()
    to = rng.choice(len(_CITIES), size=len(who), p=_CITY_P)
    city[who] = np.where(to == st.city[who], (to + 1) % len(_CITIES), to)
    server(_K.IDENT_CITY, who, at)
    who, at, email_at = change(0.002, ~st.has_email[known])
    email_opt = np.zeros(n, bool)
    email_opt[who] = rng.random(len(who)) < 0.6
    server(_K.IDENT_EMAIL_ADDED, who, at)
    # Opt-outs: the unsubscribe link or an SMS reply, then the profile update.
    who, at, email_out_at = change(0.0009, st.has_email[known] & st.email_opt[known])
    server(_K.EMAIL_UNSUB, who, at)
    server(_K.IDENT_EMAIL_OPTOUT, who, at + _US)
    who, at, sms_out_at = change(0.0007, st.sms_opt[known])
    server(_K.SMS_UNSUB, who, at)
    server(_K.IDENT_SMS_OPTOUT, who, at + _US)
    who, at, plan_at = change(0.002, (st.plan[known] == 0) & (st.order_count[known] > 0))
    server(_K.IDENT_PLAN, who, at)
    if day0 <= run.migration_at < day0 + _DAY:
        who = np.flatnonzero(people.legacy & (st.signup_at < run.migration_at))
        server(_K.ALIAS_MIGRATION, who, np.full(len(who), run.migration_at))
    return _Changes(city_at, city, email_at, email_opt, email_out_at, sms_out_at, plan_at)


def _traits_at(
    run: _Run,
    person: np.ndarray,
    t: np.ndarray,
    orders: tuple[np.ndarray, np.ndarray],
    changes: _Changes,
    day0: int,
) -> dict[str, np.ndarray]:
    """Each row's person's traits as of the row's time (today's changes included)."""
    st = run.state
    # Orders up to t: the count at the start of the day plus today's, found by binary search.
    span = np.int64(1) << np.int64(40)
    o_key = np.sort(orders[0] * span + (orders[1] - day0))
    q_key = person * span + np.maximum(t - day0, 0)
    upto = np.searchsorted(o_key, q_key, side="right")
    today = upto - np.searchsorted(o_key, person * span, side="left")
    last_today = o_key[np.maximum(upto - 1, 0)] % span + day0 if len(o_key) else t
    order_count = st.order_count[person] + today
    last_order = np.where(today > 0, last_today, st.last_order_at[person])
    signup_at = st.signup_at[person]
    email_added = t >= changes.email_at[person]
    return {
        "order_count": order_count,
        "rfm": _rfm(order_count, last_order, np.minimum(signup_at, t), t),
        "city": np.where(t >= changes.city_at[person], changes.city[person], st.city[person]),
        "has_email": st.has_email[person] | email_added,
        "email_opt": np.where(email_added, changes.email_opt[person], st.email_opt[person])
        & (t < changes.email_out_at[person]),
        "sms_opt": st.sms_opt[person] & (t < changes.sms_out_at[person]),
        "plan": ((st.plan[person] == 1) | (t >= changes.plan_at[person])).astype(np.int64),
        "created_at": signup_at,
    }


def _carts(run: _Run, d: int, r: dict[str, np.ndarray], cart_sessions: np.ndarray) -> pl.DataFrame:
    """One row per cart of the day: value, products JSON, and its order's id and totals."""
    cat = run.catalogue
    added = r["kind"] == _K.PRODUCT_ADDED
    cart, product, qty = r["cart"][added], r["product"][added], r["qty"][added]
    n = len(cart_sessions)
    value = np.bincount(cart, weights=cat.price[product] * qty, minlength=n).astype(np.int64)
    items = np.bincount(cart, weights=qty, minlength=n).astype(np.int64)
    lines = pl.DataFrame(
        {"cart": cart, "fragment": pl.from_arrow(_take(cat.fragment, product)), "qty": qty}
    )
    products = lines.group_by("cart").agg(
        products=pl.concat_str(
            [
                pl.lit("["),
                pl.concat_str(
                    [pl.lit("{"), pl.col("fragment"), pl.lit(',"quantity":'),
                     pl.col("qty").cast(pl.String), pl.lit("}")]
                ).str.join(","),
                pl.lit("]"),
            ]
        )
    )  # fmt: skip
    tag = (run.start + timedelta(days=d)).strftime("%y%m%d")
    # Free shipping from 5,000,000 rials; 10% off on promotion days.
    discount = np.round(value * 0.1 * (run.conversion[d] > 1.0), -4).astype(np.int64)
    number = pl.col("cart").cast(pl.String).str.zfill(6)
    frame = pl.DataFrame(
        {
            "cart": np.arange(n, dtype=np.int64),
            "value": value,
            "num_products": items,
            "revenue": value - discount,
            "shipping": np.where(value >= 5_000_000, 0, 350_000).astype(np.int64),
            "discount": discount,
        }
    ).with_columns(
        cart_id=pl.concat_str([pl.lit(f"c{tag}"), number]),
        order_id=pl.concat_str([pl.lit(f"SF-{tag}-"), number]),
    )
    return frame.join(products, on="cart", how="left")


# --------------------------------------------------------------------------------------------
# Rendering rows as raw events: ids, clocks, context, properties and traits
# --------------------------------------------------------------------------------------------

_PAGE_KINDS = tuple(k for k, (msg_type, *_) in _KINDS.items() if msg_type == "page")
_TEXT_COLUMNS = (
    "message_id", "type", "event", "user_id", "anonymous_id", "previous_id", "properties",
    "traits", "context", "source_id", "context_device_id", "context_device_type",
    "context_device_model", "context_device_token", "context_os_name", "context_app_version",
    "context_timezone", "context_locale", "context_ip", "context_page_url",
)  # fmt: skip
_TIME_COLUMNS = ("timestamp", "original_timestamp", "sent_at", "received_at")
_APP_MODELS = (*_IOS_MODELS, *_ANDROID_MODELS)
_UA_COLUMNS = {
    name: [u[i] for u in _USER_AGENTS]
    for i, name in enumerate(("ua", "form", "os_name", "os_version"))
}
_APP_OS_VERSIONS = (*_IOS_VERSIONS, *_ANDROID_VERSIONS)
_LIBRARIES = {
    _WEB: ("analytics.js", "npm:next-1.72.0"),
    _IOS: ("analytics-swift", "1.5.11"),
    _ANDROID: ("analytics-kotlin", "1.16.3"),
    _SERVER: ("analytics-python", "2.3.3"),
}


def _j(*parts: str | pl.Expr) -> pl.Expr:
    """Concatenate literal text and string expressions (JSON assembly)."""
    return pl.concat_str([p if isinstance(p, pl.Expr) else pl.lit(p) for p in parts])


def _bool(expr: pl.Expr) -> pl.Expr:
    return pl.when(expr).then(pl.lit("true")).otherwise(pl.lit("false"))


def _num(name: str) -> pl.Expr:
    return pl.col(name).cast(pl.String)


def _fcm_tokens(h: np.ndarray) -> pa.Array:
    """FCM-style registration tokens: 22 characters, ':APA91b', 134 characters."""
    chars = np.concatenate(
        [
            _b64_chars(h, 22),
            np.broadcast_to(np.frombuffer(b":APA91b", np.uint8), (len(h), 7)),
            _b64_chars(_mix64(h), 134),
        ],
        axis=1,
    )
    return _strings(chars)


def _render(
    run: _Run,
    d: int,
    rng: np.random.Generator,
    r: dict[str, np.ndarray],
    e: dict[str, np.ndarray],
    traits: dict[str, np.ndarray],
    carts: pl.DataFrame,
) -> pl.DataFrame:
    """Turn the day's rows into raw-contract columns (timestamps still as µs integers)."""
    people, devices, st, cat, seed = run.people, run.devices, run.state, run.catalogue, run.seed
    n = len(r["kind"])
    if n == 0:
        return _EMPTY
    kind, ep, t = r["kind"], r["episode"], r["t"]
    person = e["person"][ep]
    server = _KIND_SERVER[kind] | (e["device"][ep] < 0)
    dev = np.where(server, -1, e["device"][ep])
    dv = np.maximum(dev, 0)
    plat = np.where(server, _SERVER, devices.platform[dv]).astype(np.int64)
    web, app = plat == _WEB, (plat == _IOS) | (plat == _ANDROID)
    install = e["install_no"][ep]

    # ---- clocks: device skew, SDK batching, offline delays, network latency ----------------
    n_ep = len(e["person"])
    a = np.flatnonzero(app)
    ep_start = np.full(n_ep, _NEVER)
    ep_end = np.full(n_ep, _LONG_AGO)
    np.minimum.at(ep_start, ep[a], t[a])
    np.maximum.at(ep_end, ep[a], t[a])
    flush = t + (rng.uniform(0.01, 1.0, n) * _US).astype(np.int64)  # analytics.js: at once
    flush[server] = t[server] + (rng.uniform(0.05, 3.0, server.sum()) * _US).astype(np.int64)
    # Mobile SDKs send every 30 s and when the app goes to the background.
    batch = (t[a] - ep_start[ep[a]]) // (30 * _US)
    closed = ep_end + (rng.uniform(0.5, 3.0, n_ep) * _US).astype(np.int64)
    flush[a] = np.minimum(ep_start[ep[a]] + (batch + 1) * 30 * _US, closed[ep[a]])
    offline = ep_end + (rng.uniform(1, 48, n_ep) * _HOUR).astype(np.int64)
    late = a[e["late"][ep[a]]]
    flush[late] = offline[ep[late]]
    # Network latency: one connection per session, so it barely varies within one (and the
    # corrected timestamps keep the session's order); the backend is next to the collector.
    latency = rng.uniform(0.05, 1.5, n_ep)[ep] + rng.uniform(0.0, 0.02, n)
    latency[server] = rng.uniform(0.005, 0.05, server.sum())
    skew = np.where(server, 0, devices.skew[dv])
    original = t + skew
    sent = flush + skew
    received = flush + (latency * _US).astype(np.int64)
    timestamp = received - (sent - original)
    # SDK retries: the same message received again, seconds or (rarely) a day later.
    dup_delay = np.where(
        rng.random(n) < 0.003,
        np.where(rng.random(n) < 0.85, rng.uniform(1, 300, n), rng.uniform(3600, 30 * 3600, n)),
        0,
    )

    # ---- ids ----------------------------------------------------------------------------
    words = rng.integers(0, 2**63 - 1, size=(n, 2), dtype=np.int64).astype(np.uint64)
    message_id = _uuids(words)
    client = np.flatnonzero(~server)
    install_key = dev * 16 + install
    keys, inv = np.unique(install_key[client], return_inverse=True)
    anon_vocab = _uuids(np.stack([_hash(seed, 31, keys, 0), _hash(seed, 31, keys, 1)], axis=1))
    anon_idx = np.full(n, -1)
    anon_idx[client] = inv
    anonymous_id = _take(anon_vocab, anon_idx)

    has_uid = server | (t >= e["login_at"][ep])
    legacy = has_uid & people.legacy[person] & (t < run.migration_at)
    n_people = len(people.kind)
    ids = pa.concat_arrays(
        [people.frame["user_id"].to_arrow(), people.frame["legacy_id"].to_arrow()]
    ).cast(pa.string())
    user_id = _take(ids, np.where(has_uid, person + n_people * legacy, -1))
    # Aliases: an anonymous id at sign-up, or a legacy user id at the migration.
    previous = np.select(
        [kind == _K.ALIAS_SIGNUP, kind == _K.ALIAS_MIGRATION],
        [anon_idx, len(anon_vocab) + person],
        -1,
    )
    previous_id = _take(pa.concat_arrays([anon_vocab, ids.slice(n_people)]), previous)

    # App device ids (iOS: identifierForVendor; Android: a 64-bit hex id), push tokens.
    ap = np.flatnonzero(app)
    udev, dinv = np.unique(dev[ap], return_inverse=True)
    ios_dev = devices.platform[udev] == _IOS
    h = np.stack([_hash(seed, 41, udev, 0), _hash(seed, 41, udev, 1)], axis=1)
    android_id = _strings(_hex_chars(h[:, :1]))
    vendor_id = _uuids(h, upper=True)
    device_vocab = pa.array(
        np.where(ios_dev, vendor_id.to_numpy(zero_copy_only=False), android_id.to_numpy(False))
        if len(udev)
        else np.empty(0, str),
        pa.string(),
    )
    device_idx = np.full(n, -1)
    device_idx[ap] = dinv
    device_id = _take(device_vocab, device_idx)

    granted = np.zeros(n, bool)
    granted[ap] = _push_granted(seed, dev[ap], install[ap], plat[ap])
    w = np.flatnonzero(web)
    first_seen = st.first_seen[dv[w]]
    after = devices.webpush_after[dv[w]]
    subscribed = (after != _NEVER) & (t[w] >= first_seen + np.where(after == _NEVER, 0, after))
    token_key = np.full(n, -1)
    token_key[ap[granted[ap]]] = install_key[ap[granted[ap]]]
    token_key[w[subscribed]] = dev[w[subscribed]] * 16 + 15  # one subscription per browser
    has_token = np.flatnonzero(token_key >= 0)
    tkeys, tinv = np.unique(token_key[has_token], return_inverse=True)
    ios_token = devices.platform[tkeys // 16] == _IOS
    apns = _strings(_hex_chars(np.stack([_hash(seed, 51, tkeys, j) for j in range(4)], axis=1)))
    fcm = _fcm_tokens(_hash(seed, 52, tkeys))
    token_vocab = pa.array(
        np.where(ios_token, apns.to_numpy(False), fcm.to_numpy(False))
        if len(tkeys)
        else np.empty(0, str),
        pa.string(),
    )
    token_idx = np.full(n, -1)
    token_idx[has_token] = tinv
    token = _take(token_vocab, token_idx)

    # ---- where the message came from: IP, locale, timezone, page -----------------------------
    city = traits["city"]
    country = _CITY_COUNTRY[city]
    hip = _hash(seed, 61, d * 2**32 + ep)  # one address per session
    octets = np.zeros((n, 4), np.int64)
    for c, blocks in enumerate(_IP_BLOCKS):
        m = country == c
        blk = np.array(blocks)[(hip[m] % np.uint64(len(blocks))).astype(np.int64)]
        span = blk[:, 2] - blk[:, 1] + 1
        octets[m, 0] = blk[:, 0]
        octets[m, 1] = blk[:, 1] + ((hip[m] >> np.uint64(8)) % span.astype(np.uint64)).astype(int)
        octets[m, 2] = ((hip[m] >> np.uint64(20)) % np.uint64(256)).astype(np.int64)
        octets[m, 3] = 1 + ((hip[m] >> np.uint64(32)) % np.uint64(254)).astype(np.int64)
    client_mask = ~server

    paths, titles = cat.page_paths, cat.page_titles
    n_cat, n_query = len(_CATEGORIES), len(cat.query_category)
    wk = kind[w]
    page_idx = np.select(
        [wk == _K.LANDING, wk == _K.CART_PAGE, wk == _K.CHECKOUT_PAGE, wk == _K.ORDER_PAGE,
         wk == _K.CATEGORY_PAGE, wk == _K.SEARCH_PAGE, wk == _K.PRODUCT_PAGE],
        [0, 1, 2, 3, 4 + r["aux"][w], 4 + n_cat + r["aux"][w],
         4 + n_cat + n_query + r["product"][w]],
        -1,
    )  # fmt: skip
    is_page = page_idx >= 0
    # Web rows are in session order and sessions start with a page, so a row's page is the
    # last page so far; a page's referrer is the page before it, or where the visit came from.
    current = np.maximum.accumulate(np.where(is_page, np.arange(len(w)), 0))
    page_idx = page_idx[current]
    ref = np.where(wk == _K.LANDING, e["referrer"][ep[w]], len(_REFERRERS) + np.roll(page_idx, 1))
    ref = ref[current]
    ref_vocab = [r_ for r_, _ in _REFERRERS] + [_SITE + p for p in paths]

    def web_col(vocab, idx):
        full = np.full(n, -1)
        full[w] = idx
        return _take(vocab, full)

    release = np.searchsorted(run.release_us, t - devices.update_lag[dv] * _DAY, "right") - 1
    release = np.maximum(release, 0)
    model_idx = np.where(devices.platform[dv] == _IOS, 0, len(_IOS_MODELS)) + devices.model[dv]
    os_idx = np.where(devices.platform[dv] == _IOS, 0, len(_IOS_VERSIONS)) + devices.os_version[dv]

    push_any = np.zeros(n_people, bool)
    on = np.flatnonzero((devices.platform != _WEB) & st.installed)
    ok = _push_granted(seed, on, st.install_no[on], devices.platform[on])
    push_any[devices.person[on[ok]]] = True

    frame = pl.DataFrame(
        {
            "kind": kind,
            "plat": plat,
            "person": person,
            "product": r["product"],
            "qty": r["qty"],
            "aux": r["aux"],
            "cart": r["cart"],
            "message_id": pl.from_arrow(message_id),
            "anonymous_id": pl.from_arrow(anonymous_id),
            "user_id": pl.from_arrow(user_id),
            "previous_id": pl.from_arrow(previous_id),
            "device_id": pl.from_arrow(device_id),
            "token": pl.from_arrow(token),
            **{f"ip{i}": octets[:, i] for i in range(4)},
            "client": client_mask,
            "language_idx": people.language[person],
            "tz_idx": np.where(client_mask, _CITY_TZ[city], -1),
            "path": pl.from_arrow(web_col(paths, page_idx)),
            "url": pl.from_arrow(web_col([_SITE + p for p in paths], page_idx)),
            "title": pl.from_arrow(web_col(titles, page_idx)),
            "referrer": pl.from_arrow(web_col(ref_vocab, ref)),
            "ua_idx": np.where(web, devices.ua[dv], -1),
            "model_idx": np.where(app, model_idx, -1),
            "os_idx": np.where(app, os_idx, -1),
            "release": np.where(app, release, -1),
            "timestamp": timestamp,
            "original_timestamp": original,
            "sent_at": sent,
            "received_at": received,
            "dup_delay": (dup_delay * _US).astype(np.int64),
            "order_count": traits["order_count"],
            "rfm_idx": traits["rfm"],
            "city_idx": city,
            "has_email": traits["has_email"],
            "email_opt": traits["email_opt"],
            "sms_opt": traits["sms_opt"],
            "push_opt": push_any[person] | granted,
            "plan_idx": traits["plan"],
            "created_at": traits["created_at"],
        }
    )
    ip = pl.concat_str([pl.col(f"ip{i}").cast(pl.String) for i in range(4)], separator=".")
    frame = frame.with_columns(ip=pl.when(pl.col("client")).then(ip).otherwise(None))
    parts = []
    for (k, p), part in frame.partition_by("kind", "plat", as_dict=True).items():
        parts.append(_render_part(run, d, int(k), int(p), part, carts))
    out = pl.concat(parts)
    dups = out.filter(pl.col("dup_delay") > 0).with_columns(
        sent_at=pl.col("sent_at") + pl.col("dup_delay"),
        received_at=pl.col("received_at") + pl.col("dup_delay"),
    )
    return pl.concat([out, dups]).select(_OUT_COLUMNS)


def _render_part(
    run: _Run, d: int, kind: int, plat: int, part: pl.DataFrame, carts: pl.DataFrame
) -> pl.DataFrame:
    """Rows of one kind from one platform as raw columns: each has a single JSON shape."""
    cat = run.catalogue

    # Text is looked up by index here, for the rows that need it, to keep the day's frame narrow.
    lookups: dict[str, tuple[pa.Array | list[str], str]] = {}  # column: (vocabulary, index)
    if plat != _SERVER:
        lookups["locale"] = (["fa-IR", "en-US"], "language_idx")
        lookups["tz"] = (list(_TIMEZONES), "tz_idx")
    if plat == _WEB:
        lookups |= {name: (vocab, "ua_idx") for name, vocab in _UA_COLUMNS.items()}
    elif plat in (_IOS, _ANDROID):
        lookups |= {
            "manufacturer": ([m[0] for m in _APP_MODELS], "model_idx"),
            "model": ([m[1] for m in _APP_MODELS], "model_idx"),
            "app_os_version": (list(_APP_OS_VERSIONS), "os_idx"),
            "app_version": (run.app_versions, "release"),
            "app_build": (run.app_builds, "release"),
        }
    if _KINDS[kind][0] == "identify":
        lookups |= {
            "rfm": (list(_RFM), "rfm_idx"),
            "city": (_CITY_NAMES, "city_idx"),
            "country": ([_COUNTRIES[c] for c in _CITY_COUNTRY], "city_idx"),
            "trait_tz": ([_TIMEZONES[z] for z in _CITY_TZ], "city_idx"),
            "language": (["fa", "en"], "language_idx"),
            "plan": (list(_PLANS), "plan_idx"),
        }
    if kind in (_K.PRODUCT_VIEWED, _K.PRODUCT_ADDED):
        lookups["fragment"] = (cat.fragment, "product")
    if kind == _K.PRODUCT_PAGE:
        lookups["product_id"] = (cat.product_id, "product")
    if kind in (_K.SEARCHED, _K.SEARCH_PAGE):
        lookups["query"] = (cat.query_lit, "aux")
    if kind == _K.CATEGORY_PAGE:
        lookups["category"] = (list(_CATEGORIES), "aux")
    if kind in (_K.PUSH_RECEIVED, _K.PUSH_TAPPED):
        camps = run.campaigns[d]
        lookups["campaign_id"] = ([x.campaign_id for x in camps], "aux")
        lookups["campaign_name"] = (_lit([x.name for x in camps]), "aux")
    if kind in (_K.ORDER_COMPLETED, _K.ORDER_COMPLETED_SERVER):
        lookups["payment"] = (list(_PAYMENT_METHODS), "aux")
    if kind == _K.SIGNED_UP:
        lookups["method"] = (list(_SIGNUP_METHODS), "aux")
    part = part.with_columns(
        pl.from_arrow(_take(vocab, part[index].to_numpy())).alias(name)
        for name, (vocab, index) in lookups.items()
    )
    if kind in (*_FULL_IDENTIFY, _K.IDENT_EMAIL_ADDED, _K.EMAIL_UNSUB, _K.SMS_UNSUB):
        part = part.hstack(run.people.frame.drop("user_id", "legacy_id")[part["person"].to_numpy()])
    if kind in (
        _K.PRODUCT_ADDED,
        _K.CART_VIEWED,
        _K.CHECKOUT_STARTED,
        _K.ORDER_COMPLETED,
        _K.ORDER_COMPLETED_SERVER,
    ):
        part = part.join(carts, on="cart", how="left")
    return part.select(_part_columns(kind, plat))


@functools.cache
def _part_columns(kind: int, plat: int) -> tuple[pl.Expr, ...]:
    """The raw columns for rows of one kind from one platform (built once, reused daily)."""
    c = pl.col
    msg_type, web_name, app_name, _ = _KINDS[kind]
    if msg_type == "page" and plat != _WEB:
        msg_type = "screen"
    name = web_name if plat in (_WEB, _SERVER) else app_name
    null = pl.lit(None, pl.String)
    token = (
        pl.when(c("token").is_null()).then(pl.lit("")).otherwise(_j(',"token":"', c("token"), '"'))
    )
    library = _LIBRARIES[plat]
    if plat == _WEB:
        context = _j(
            '{"device":{"type":"', c("form"), '"', token, '},"ip":"', c("ip"),
            f'","library":{{"name":"{library[0]}","version":"{library[1]}"}},"locale":"',
            c("locale"), '","os":{"name":"', c("os_name"), '","version":"', c("os_version"),
            '"},"page":{"path":"', c("path"), '","referrer":"', c("referrer"), '","title":',
            c("title"), ',"url":"', c("url"), '"},"timezone":"', c("tz"), '","userAgent":"',
            c("ua"), '"}',
        )  # fmt: skip
        extracted = {
            "context_device_id": null,
            "context_device_type": c("form"),
            "context_device_model": null,
            "context_device_token": c("token"),
            "context_os_name": c("os_name"),
            "context_app_version": null,
            "context_page_url": c("url"),
        }
    elif plat in (_IOS, _ANDROID):
        device_type, os_name = ("ios", "iOS") if plat == _IOS else ("android", "Android")
        context = _j(
            '{"app":{"build":"', c("app_build"),
            '","name":"Safar Shop","namespace":"ir.safar.shop","version":"', c("app_version"),
            '"},"device":{"id":"', c("device_id"), '","manufacturer":"', c("manufacturer"),
            '","model":"', c("model"), f'","type":"{device_type}"', token, '},"ip":"', c("ip"),
            f'","library":{{"name":"{library[0]}","version":"{library[1]}"}},"locale":"',
            c("locale"), f'","os":{{"name":"{os_name}","version":"', c("app_os_version"),
            '"},"timezone":"', c("tz"), '"}',
        )  # fmt: skip
        extracted = {
            "context_device_id": c("device_id"),
            "context_device_type": pl.lit(device_type),
            "context_device_model": c("model"),
            "context_device_token": c("token"),
            "context_os_name": pl.lit(os_name),
            "context_app_version": c("app_version"),
            "context_page_url": null,
        }
    else:
        context = pl.lit(f'{{"library":{{"name":"{library[0]}","version":"{library[1]}"}}}}')
        extracted = {
            "context_device_id": null,
            "context_device_type": null,
            "context_device_model": null,
            "context_device_token": null,
            "context_os_name": null,
            "context_app_version": null,
            "context_page_url": null,
        }
    client = plat != _SERVER
    extracted |= {
        "context_timezone": c("tz") if client else null,
        "context_locale": c("locale") if client else null,
        "context_ip": c("ip") if client else null,
    }

    return (
        c("message_id"),
        pl.lit(msg_type).alias("type"),
        pl.lit(name, pl.String).alias("event"),
        *(c(column) for column in ("user_id", "anonymous_id", "previous_id", *_TIME_COLUMNS)),
        _properties(kind, plat, name).alias("properties"),
        _traits(kind).alias("traits"),
        context.alias("context"),
        pl.lit(_SOURCE_IDS[plat]).alias("source_id"),
        *(expr.alias(column) for column, expr in extracted.items()),
        c("dup_delay"),
    )


def _properties(kind: int, plat: int, name: str | None) -> pl.Expr:
    """The ``properties`` JSON of a kind of row (null for identify and alias)."""
    c = pl.col
    k = _K
    version = _j('"build":"', c("app_build"), '"'), _j('"version":"', c("app_version"), '"')
    cart = _j(
        '{"cart_id":"', c("cart_id"), '","currency":"IRR","num_products":', _num("num_products"),
        ',"value":', _num("value"), "}",
    )  # fmt: skip
    campaign = _j(
        '{"campaign":{"id":"', c("campaign_id"), '","medium":"push","name":', c("campaign_name"),
        "}}",
    )  # fmt: skip
    if kind in _PAGE_KINDS:
        if plat == _WEB:
            return _j(
                '{"path":"', c("path"), '","referrer":"', c("referrer"), '","title":',
                c("title"), ',"url":"', c("url"), '"}',
            )  # fmt: skip
        if kind == k.PRODUCT_PAGE:
            return _j(f'{{"name":"{name}","product_id":"', c("product_id"), '"}')
        if kind == k.CATEGORY_PAGE:
            return _j('{"category":"', c("category"), f'","name":"{name}"}}')
        if kind == k.SEARCH_PAGE:
            return _j(f'{{"name":"{name}","query":', c("query"), "}")
        return pl.lit(f'{{"name":"{name}"}}')
    exprs = {
        k.SEARCHED: lambda: _j('{"query":', c("query"), "}"),
        k.PRODUCT_VIEWED: lambda: _j("{", c("fragment"), ',"currency":"IRR"}'),
        k.PRODUCT_ADDED: lambda: _j(
            '{"cart_id":"',
            c("cart_id"),
            '",',
            c("fragment"),
            ',"quantity":',
            _num("qty"),
            ',"currency":"IRR"}',
        ),  # fmt: skip
        k.CART_VIEWED: lambda: cart,
        k.CHECKOUT_STARTED: lambda: cart,
        k.ORDER_COMPLETED: lambda: _j(
            '{"order_id":"',
            c("order_id"),
            '","checkout_id":"',
            c("cart_id"),
            '","currency":"IRR","revenue":',
            _num("revenue"),
            ',"shipping":',
            _num("shipping"),
            ',"discount":',
            _num("discount"),
            ',"payment_method":"',
            c("payment"),
            '","products":',
            c("products"),
            "}",
        ),  # fmt: skip
        k.SIGNED_UP: lambda: _j('{"method":"', c("method"), '"}'),
        k.INSTALLED: lambda: _j("{", version[0], ",", version[1], "}"),
        k.OPENED: lambda: _j(
            "{", version[0], ',"from_background":', _bool(c("aux") == 1), ",", version[1], "}"
        ),
        k.PUSH_RECEIVED: lambda: campaign,
        k.PUSH_TAPPED: lambda: campaign,
        k.UNINSTALLED: lambda: pl.lit("{}"),
        k.EMAIL_UNSUB: lambda: _j('{"email":', c("email_lit"), ',"list":"marketing"}'),
        k.SMS_UNSUB: lambda: _j('{"keyword":"لغو","phone":', c("phone_lit"), "}"),
    }
    exprs[k.ORDER_COMPLETED_SERVER] = exprs[k.ORDER_COMPLETED]
    return exprs[kind]() if kind in exprs else pl.lit(None, pl.String)


def _traits(kind: int) -> pl.Expr:
    """The ``traits`` JSON of a kind of row: all traits on sign-in, the changes otherwise."""
    c = pl.col
    k = _K
    email = pl.when(c("has_email")).then(c("email_lit")).otherwise(pl.lit("null"))
    if kind in _FULL_IDENTIFY:
        created = pl.from_epoch("created_at", time_unit="us").dt.strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
        return _j(
            '{"email":', email, ',"phone":', c("phone_lit"), ',"first_name":', c("first_lit"),
            ',"last_name":', c("last_lit"), ',"name":', c("name_lit"), ',"city":"', c("city"),
            '","country":"', c("country"), '","carrier":', c("carrier_lit"), ',"language":"',
            c("language"), '","timezone":"', c("trait_tz"), '","rfm_class":"', c("rfm"),
            '","order_count":', _num("order_count"), ',"email_opt_in":', _bool(c("email_opt")),
            ',"sms_opt_in":', _bool(c("sms_opt")), ',"push_opt_in":', _bool(c("push_opt")),
            ',"created_at":"', created, '","gender":', c("gender_lit"), ',"birth_year":',
            c("birth_year"), ',"plan":"', c("plan"), '"}',
        )  # fmt: skip
    exprs = {
        k.IDENT_ORDER: lambda: _j(
            '{"order_count":', _num("order_count"), ',"rfm_class":"', c("rfm"), '"}'
        ),
        k.IDENT_RFM: lambda: _j('{"rfm_class":"', c("rfm"), '"}'),
        k.IDENT_CITY: lambda: _j(
            '{"city":"',
            c("city"),
            '","country":"',
            c("country"),
            '","timezone":"',
            c("trait_tz"),
            '"}',
        ),  # fmt: skip
        k.IDENT_EMAIL_ADDED: lambda: _j(
            '{"email":', c("email_lit"), ',"email_opt_in":', _bool(c("email_opt")), "}"
        ),
        k.IDENT_EMAIL_OPTOUT: lambda: pl.lit('{"email_opt_in":false}'),
        k.IDENT_SMS_OPTOUT: lambda: pl.lit('{"sms_opt_in":false}'),
        k.IDENT_PLAN: lambda: _j('{"plan":"', c("plan"), '"}'),
    }
    return exprs[kind]() if kind in exprs else pl.lit(None, pl.String)


_OUT_COLUMNS = [name for name in RAW_COLUMNS if name in _TEXT_COLUMNS or name in _TIME_COLUMNS]
_EMPTY = pl.DataFrame(
    schema={name: pl.Int64 if name in _TIME_COLUMNS else pl.String for name in _OUT_COLUMNS}
)


def _finish(batch: pl.DataFrame) -> pl.DataFrame:
    """A batch in contract column order, timestamps typed, in the order it was received."""
    return batch.sort("received_at", "message_id").select(
        pl.from_epoch(name, time_unit="us").alias(name) if name in _TIME_COLUMNS else name
        for name in _OUT_COLUMNS
    )
