"""Email delivery over SMTP (aiosmtplib): STARTTLS when offered or required, implicit TLS on 465."""

from __future__ import annotations

from email.message import EmailMessage

import aiosmtplib

from schemas.alerts import Alert
from schemas.settings import Settings


def message_of(alert: Alert, sender: str, to: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = f"[AgentTrace] {alert.state.upper()}: {alert.rule_type} on {alert.subject}"
    msg["X-AgentTrace-Alert-Id"] = alert.alert_id
    lines = [alert.message, "",
             f"rule: {alert.rule_id} ({alert.rule_type})", f"project: {alert.project_id}",
             f"subject: {alert.subject}", f"state: {alert.state}",
             f"value: {alert.value}", f"threshold: {alert.threshold}",
             f"time: {alert.timestamp.isoformat()}"]
    msg.set_content("\n".join(lines))
    return msg


async def send(settings: Settings, alert: Alert, to: str, timeout: float, cert_bundle: str = "") -> str | None:
    """Send one alert to one address; None on success, else the error text."""
    if not settings.smtp_host:
        return "SMTP is not configured (SMTP_HOST is empty)"
    implicit_tls = settings.smtp_secure and settings.smtp_port == 465
    try:
        await aiosmtplib.send(
            message_of(alert, settings.smtp_from, to),
            hostname=settings.smtp_host, port=settings.smtp_port,
            username=settings.smtp_user or None, password=settings.smtp_pass or None,
            use_tls=implicit_tls,
            # SMTP_SECURE: STARTTLS is required; otherwise it is used when the server offers it.
            start_tls=True if settings.smtp_secure and not implicit_tls else None,
            timeout=timeout, cert_bundle=cert_bundle or None,
        )
    except (aiosmtplib.SMTPException, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"[:500]
    return None
