"""Demo mode for delivery: providers pointed at the local sinks, and a welcome campaign to send.

``make demo`` starts :mod:`safar.delivery.local_sinks`, points every channel's provider at it
(unless the workspace has providers of its own), and queues a Persian welcome campaign for some
reachable people per channel, rendered from their warehouse profiles exactly as a send renders.
The dispatcher then sends it through the real senders, so the Messages page shows real
deliveries and the sinks hold what each provider received.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from channels.templates import TemplateError, build_context, compile_templates, render
from channels.webhook import new_secret
from safar.config import SafarHome
from safar.delivery import outbox
from safar.delivery.local_sinks import FCM_PROJECT, KAVENEGAR_API_KEY, WEBHOOK_PATH
from safar.delivery.people import Person, load_people, reachable_people
from safar.delivery.settings import load_config, load_setting, save_config, store_setting
from safar.warehouse import connect

CAMPAIGN_ID = "demo-welcome"
# The last providers the demo stored: while the settings still hold exactly these, the
# workspace has none of its own and the demo may repoint them at new sink ports.
DEMO_PROVIDERS_KEY = "demo_providers"
PEOPLE_PER_CHANNEL = {"email": 300, "sms": 200, "push": 200, "in_app": 200, "webhook": 100}

_GREETING = "{{ user.first_name | default('دوست', true) }} عزیز"
TEMPLATES: dict[str, dict[str, str]] = {
    "email": {
        "subject": _GREETING + "، به فروشگاه سفر خوش آمدید",
        "html": (
            "<h1>سلام " + _GREETING + "!</h1>\n"
            "<p>از {{ user.first_seen_at | jalali }} با ما بوده‌اید"
            "{% if user.order_count %} و {{ user.order_count | fa_digits }} سفارش داده‌اید"
            " (جمعاً {{ user.revenue | currency('IRT') }}){% endif %}.</p>\n"
            "<p>کد تخفیف ۲۰٪ شما: <b>SAFAR20</b></p>\n"
            '<p><a href="https://shop.example/sale?utm_campaign=welcome">دیدن پیشنهادها</a></p>'
        ),
        "text": (
            "سلام " + _GREETING + "!\n"
            "کد تخفیف ۲۰٪ شما: SAFAR20\nhttps://shop.example/sale?utm_campaign=welcome"
        ),
    },
    "sms": {"text": "سلام " + _GREETING + "! کد تخفیف ۲۰٪ شما: SAFAR20 — فروشگاه سفر"},
    "push": {
        "title": "هدیه‌ی خوش‌آمد برای " + _GREETING,
        "body": "۲۰٪ تخفیف روی اولین خرید؛ فقط تا آخر هفته",
        "deep_link": "shop://sale/welcome",
    },
    "in_app": {
        "title": "خوش آمدید، " + _GREETING,
        "body": "کد SAFAR20 را در سبد خرید وارد کنید.",
    },
    "webhook": {
        "body": (
            '{"event": "welcome_offer", "user_id": {{ user.user_id | tojson }},'
            ' "email": {{ user.email | default(none) | tojson }},'
            ' "orders": {{ user.order_count | tojson }}, "coupon": "SAFAR20"}'
        )
    },
}
# A welcome offer is marketing: people who unsubscribed from promotions do not get it. The
# webhook tells the shop's own API, which no one unsubscribes from.
CATEGORIES = {"webhook": "transactional"}


def _fcm_service_account(token_uri: str) -> dict[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return {
        "type": "service_account",
        "project_id": FCM_PROJECT,
        "private_key_id": "local-sink",
        "private_key": pem.decode(),
        "client_email": "demo@safar-demo.iam.gserviceaccount.com",
        "token_uri": token_uri,
    }


def demo_providers(smtp_port: int, http_port: int, webhook_secret: str) -> dict[str, Any]:
    """The ``providers`` settings that send every channel to the local sinks on these ports."""
    http = f"http://127.0.0.1:{http_port}"
    return {
        "email": {
            "provider": "smtp",
            "options": {
                "host": "127.0.0.1",
                "port": smtp_port,
                "from_address": "shop@safar.localhost",
                "from_name": "فروشگاه سفر",
                "starttls": False,
                "timeout": 10.0,
            },
        },
        "sms": {
            "provider": "kavenegar",
            "options": {"api_key": KAVENEGAR_API_KEY, "base_url": f"{http}/kavenegar"},
        },
        "push": {
            "provider": "push",
            "options": {
                "fcm": {
                    "service_account": _fcm_service_account(f"{http}/fcm/token"),
                    "base_url": f"{http}/fcm",
                }
            },
        },
        "webhook": {"provider": "webhook", "options": {"secret": webhook_secret}},
    }


def demo_webhook_secret(engine: sa.Engine) -> str:
    """The webhook secret the demo's providers sign with (made on the first demo)."""
    stored = load_setting(engine, DEMO_PROVIDERS_KEY)
    if stored:
        secret = json.loads(stored).get("webhook", {}).get("options", {}).get("secret")
        if secret:
            return secret
    return new_secret()


def configure_demo_providers(engine: sa.Engine, providers: Mapping[str, Any]) -> bool:
    """Point the channels at the local sinks unless the workspace set its own providers.

    Returns:
        True when the demo's providers are in place, False when the workspace's own were kept.
    """
    config = load_config(engine)
    current = dict(config.raw.get("providers") or {})
    last = load_setting(engine, DEMO_PROVIDERS_KEY)
    if current and current != (json.loads(last) if last else None):
        return False
    save_config(engine, {**config.raw, "providers": dict(providers)})
    store_setting(engine, DEMO_PROVIDERS_KEY, json.dumps(providers, ensure_ascii=False))
    return True


def _content(channel: str, rendered: Mapping[str, str]) -> dict[str, Any]:
    if channel == "webhook":
        return {"method": "POST", "body": json.loads(rendered["body"])}
    if channel == "push":
        return {"layout": "text", **rendered}
    return dict(rendered)


def demo_deliveries(
    home: SafarHome, webhook_url: str, now: datetime, per_channel: Mapping[str, int] | None = None
) -> list[outbox.Delivery]:
    """The welcome campaign: a delivery per channel for its most active reachable people.

    Each person gets one channel (email first, then SMS, push, in-app, webhook), as a campaign
    with a channel priority would; the ids depend only on campaign, channel and person, so
    queueing it again adds nothing.
    """
    per_channel = dict(per_channel or PEOPLE_PER_CHANNEL)
    compiled = {channel: compile_templates(TEMPLATES[channel]) for channel in per_channel}
    con = connect(home, read_only=True)
    try:
        chosen: dict[str, list[str]] = {}
        taken: list[str] = []
        for channel, count in per_channel.items():
            # A webhook reaches anyone known; push is sent to Android people only (the demo
            # has an FCM sink, not an APNs one), so more are read than are needed.
            source = "in_app" if channel == "webhook" else channel
            wanted = count * 3 if channel == "push" else count
            ids = reachable_people(con, source, wanted, exclude=taken)
            chosen[channel] = ids
            taken += ids
        people = load_people(con, taken)
    finally:
        con.close()
    deliveries = []
    for channel, ids in chosen.items():
        made = 0
        for person_id in ids:
            person = people.get(person_id)
            if person is None or made == per_channel[channel]:
                continue
            address = _address(channel, person, webhook_url)
            if address is None:
                continue
            try:
                rendered = render(compiled[channel], build_context(person.traits, now=now))
            except TemplateError as error:  # a person's odd profile must not stop the demo
                print(f"demo: skipped {person_id} on {channel}: {error}")
                continue
            deliveries.append(
                outbox.Delivery(
                    delivery_id=outbox.delivery_id(CAMPAIGN_ID, channel, person_id, "1"),
                    channel=channel,
                    person_id=person_id,
                    address=address,
                    category=CATEGORIES.get(channel, "promotions"),
                    content=_content(channel, rendered),
                    user_id=person.user_id,
                    time_zone=person.time_zone,
                    campaign_id=CAMPAIGN_ID,
                    expires_at=now + timedelta(days=1),
                    ttl_seconds=86_400 if channel == "push" else None,
                )
            )
            made += 1
    return deliveries


def _address(channel: str, person: Person, webhook_url: str) -> str | None:
    if channel == "webhook":
        return webhook_url
    address = person.addresses.get(channel)
    if channel == "push" and address and not address.startswith("fcm:"):
        return None
    return address


def webhook_url(http_port: int) -> str:
    return f"http://127.0.0.1:{http_port}{WEBHOOK_PATH}"
