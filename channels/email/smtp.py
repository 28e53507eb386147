"""Sending one mail with aiosmtplib, SMTP failures mapped onto the channel error tree once.

4xx replies, timeouts and dropped connections are transient (:class:`ChannelError`: the core
retries with backoff); 5xx replies are permanent (:class:`ChannelPermanentError`: not retried).
"""

from __future__ import annotations

import ssl
from email.message import EmailMessage

import aiosmtplib

from channels.email.settings import EmailSettings
from gateway.errors import ChannelError, ChannelPermanentError

SMTP_TIMEOUT = 60.0


def tls_context(settings: EmailSettings) -> ssl.SSLContext:
    """The system trust store, plus ``tls_ca_file`` when configured."""
    context = ssl.create_default_context()
    if settings.tls_ca_file:
        context.load_verify_locations(cafile=settings.tls_ca_file)
    return context


async def send_mail(settings: EmailSettings, msg: EmailMessage) -> None:
    """Submit ``msg`` to the configured SMTP server; raise a ChannelError subclass on failure."""
    login = settings.smtp_login
    security = settings.smtp_security
    try:
        await aiosmtplib.send(
            msg,
            sender=settings.address,
            hostname=settings.smtp_host,
            port=settings.smtp_port_number,
            username=login[0] if login else None,
            password=login[1] if login else None,
            use_tls=security == "tls",
            # "none" means none: no opportunistic upgrade that could fail on a bad certificate
            start_tls=security == "starttls",
            tls_context=tls_context(settings) if security != "none" else None,
            timeout=SMTP_TIMEOUT,
        )
    except aiosmtplib.SMTPRecipientsRefused as exc:
        codes = [r.code for r in exc.recipients]
        detail = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
        if all(code >= 500 for code in codes):
            raise ChannelPermanentError(f"SMTP refused every recipient: {detail}") from exc
        raise ChannelError(f"SMTP deferred recipients: {detail}") from exc
    except aiosmtplib.SMTPResponseException as exc:
        text = f"SMTP {exc.code} {exc.message}"
        if 500 <= exc.code < 600:
            raise ChannelPermanentError(text) from exc
        raise ChannelError(text) from exc
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        raise ChannelError(f"SMTP {settings.smtp_host}:{settings.smtp_port_number} failed: {exc}") from exc
