"""The providers Safar can send through, in one registry, and senders built from settings.

A channel's settings name a provider and its options (``{"provider": "smtp", "options":
{"host": …}}``); the options are the fields of the provider's settings dataclass, so an unknown
or missing option is reported by name. Push has two providers behind one channel: an address
``apns:<token>`` goes to APNs, ``fcm:<token>`` (or a bare token) to FCM.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from channels.base import Envelope, Outcome, Sender
from channels.email import SmtpSender, SmtpSettings
from channels.push import ApnsSender, ApnsSettings, FcmSender, FcmSettings
from channels.sms import KavenegarSender, KavenegarSettings, TwilioSender, TwilioSettings
from channels.web_push import WebPushSender, WebPushSettings
from channels.webhook import WebhookSender, WebhookSettings
from safar.delivery.inbox import InboxSender
from safar.delivery.settings import ConfigError, DeliveryConfig, ProviderConfig


@dataclass(frozen=True)
class Provider:
    """One provider: the channel it serves and how to make its sender from its settings."""

    channel: str
    settings: type | None
    make: Callable[[Any], Sender]


PROVIDERS: dict[str, Provider] = {
    "smtp": Provider("email", SmtpSettings, SmtpSender),
    "kavenegar": Provider("sms", KavenegarSettings, KavenegarSender),
    "twilio": Provider("sms", TwilioSettings, TwilioSender),
    "fcm": Provider("push", FcmSettings, FcmSender),
    "apns": Provider("push", ApnsSettings, ApnsSender),
    "vapid": Provider("web_push", WebPushSettings, WebPushSender),
    "webhook": Provider("webhook", WebhookSettings, WebhookSender),
    "inbox": Provider("in_app", None, InboxSender),
}


class PushRouter:
    """The push channel's sender: each device token goes to its platform's provider."""

    channel = "push"
    provider = "push"

    def __init__(self, senders: Mapping[str, Sender]):
        self.senders = dict(senders)

    async def send(self, envelope: Envelope) -> Outcome:
        platform, _, token = envelope.to.partition(":")
        if not token:
            platform, token = "fcm", envelope.to
        sender = self.senders.get(platform)
        if sender is None:
            configured = ", ".join(sorted(self.senders)) or "none"
            return Outcome(
                "failed", platform, f"no {platform} provider is configured (have: {configured})"
            )
        return await sender.send(dataclasses.replace(envelope, to=token))

    async def aclose(self) -> None:
        for sender in self.senders.values():
            await sender.aclose()


def provider_settings(name: str, options: Mapping[str, Any], where: str) -> Any:
    """The settings dataclass of provider ``name`` from ``options``, or a :class:`ConfigError`.

    Example:
        >>> provider_settings("smtp", {"host": "mail", "port": 25, "from": "x"}, "providers.email")
        Traceback (most recent call last):
        ...
        safar.delivery.settings.ConfigError: providers.email.options: unknown option 'from' \
(options: host, port, from_address, from_name, username, password, starttls, timeout, \
pool_size, tracking_base_url, tracking_secret, unsubscribe_mailto, message_id_domain); \
providers.email.options: missing from_address
    """
    provider = PROVIDERS.get(name)
    if provider is None:
        raise ConfigError([(f"{where}.provider", f"unknown provider {name!r}")])
    if provider.settings is None:
        return None
    fields = dataclasses.fields(provider.settings)
    names = [f.name for f in fields]
    problems = [
        (f"{where}.options", f"unknown option {key!r} (options: {', '.join(names)})")
        for key in options
        if key not in names
    ]
    problems += [
        (f"{where}.options", f"missing {f.name}")
        for f in fields
        if f.name not in options
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if problems:
        raise ConfigError(problems)
    try:
        return provider.settings(**options)
    except (TypeError, ValueError) as exc:
        raise ConfigError([(f"{where}.options", str(exc))]) from None


def build_senders(
    config: DeliveryConfig, engine: sa.Engine, *, tracking: Mapping[str, str] | None = None
) -> dict[str, Sender]:
    """A sender per configured channel. ``in_app`` is always there (it needs no provider).

    ``tracking`` (``tracking_base_url``, ``tracking_secret``) fills those options of providers
    that have them and were not given them, so emails link back to this workspace's gateway.
    """
    senders: dict[str, Sender] = {"in_app": InboxSender(engine)}
    problems: list[tuple[str, str]] = []
    for channel, configured in config.providers.items():
        where = f"providers.{channel}"
        try:
            if channel == "push":
                senders[channel] = _push_router(configured, tracking, where)
            else:
                senders[channel] = _sender(channel, configured, engine, tracking, where)
        except ConfigError as error:
            problems += error.problems
    if problems:
        raise ConfigError(problems)
    return senders


def _sender(
    channel: str,
    configured: ProviderConfig,
    engine: sa.Engine,
    tracking: Mapping[str, str] | None,
    where: str,
) -> Sender:
    provider = PROVIDERS.get(configured.provider)
    if provider is None or provider.channel != channel:
        choices = ", ".join(name for name, p in PROVIDERS.items() if p.channel == channel)
        raise ConfigError(
            [
                (
                    f"{where}.provider",
                    f"{configured.provider!r} is not a {channel} provider (choose: {choices})",
                )
            ]
        )
    if provider.settings is None:
        return provider.make(engine)
    settings = provider_settings(
        configured.provider, _with_tracking(provider, configured.options, tracking), where
    )
    try:
        return provider.make(settings)
    except Exception as exc:  # any refusal to build from these options is a settings problem
        message = f"the {configured.provider} sender cannot be made: {exc}"
        raise ConfigError([(f"{where}.options", message)]) from None


def _push_router(
    configured: ProviderConfig, tracking: Mapping[str, str] | None, where: str
) -> PushRouter:
    # {"provider": "push", "options": {"fcm": {...}, "apns": {...}}}: one or both platforms.
    platforms = {name: options for name, options in configured.options.items()}
    unknown = sorted(set(platforms) - {"fcm", "apns"})
    if configured.provider != "push" or unknown or not platforms:
        raise ConfigError(
            [(where, 'must be {"provider": "push", "options": {"fcm": {...}, "apns": {...}}}')]
        )
    senders: dict[str, Sender] = {}
    for name, options in platforms.items():
        settings = provider_settings(name, dict(options), f"{where}.options.{name}")
        try:
            senders[name] = PROVIDERS[name].make(settings)
        except Exception as exc:  # a bad key or certificate is a settings problem
            message = f"the {name} sender cannot be made: {exc}"
            raise ConfigError([(f"{where}.options.{name}", message)]) from None
    return PushRouter(senders)


def _with_tracking(
    provider: Provider, options: Mapping[str, Any], tracking: Mapping[str, str] | None
) -> dict[str, Any]:
    merged = dict(options)
    assert provider.settings is not None
    names = {f.name for f in dataclasses.fields(provider.settings)}
    for key, value in (tracking or {}).items():
        if key in names and merged.get(key) is None:
            merged[key] = value
    return merged
