"""The ``email`` system task: one message sent with aiosmtplib to the server in ``STEPWISE_SMTP_URL``.

Config: ``to`` (list), ``cc`` (list), ``subject``, ``body`` (plain text) and ``html`` (optional; with it the
message is ``multipart/alternative``). The result stored under ``storeAs`` is ``{messageId, to, cc}``. Each
``to`` and ``cc`` entry must be exactly one address (:func:`one_address`), as written or as rendered.

The server URL (``SystemTaskContext.smtp_url``): ``smtp://[user:password@]host[:port]`` (port 25), with
``?starttls=true`` to upgrade the connection, or ``smtps://`` for TLS from the start (port 465); ``?from=``
sets the sender, unless the ``mailFrom`` setting does; the default is ``stepwise@localhost``.

The ``Message-ID`` is derived from the task id, so if a crash makes the engine send a message twice the copies
share one id, which mail clients and servers use to drop duplicates.
"""

from __future__ import annotations

import email.policy
import email.utils
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib

from engine.definitions.model import Node
from engine.errors import ExecutionFailedError
from engine.workers.config_checks import check_keys, check_string, check_string_list, pending, require_valid
from engine.workers.executor import ExecutionRequest, ExecutionResult, SystemTaskContext, WaitUntil
from engine.workers.redaction import redact, redact_text

KEYS = ("to", "cc", "subject", "body", "html")
DEFAULT_SENDER = "stepwise@localhost"
SMTP_TIMEOUT_S = 30.0


def config_problems(config: Mapping[str, Any], *, rendered: bool) -> list[str]:
    problems = check_keys(config, ("to", "subject"), KEYS)
    for key in ("to", "cc"):
        listed = check_string_list(config, key, rendered=rendered, non_empty=key == "to")
        problems += listed or _address_problems(config, key, rendered=rendered)
    for key in ("subject", "body", "html"):
        problems += check_string(config, key, rendered=rendered)
    return problems


def one_address(entry: str) -> str | None:
    """``entry`` as one mailbox (``a@x.test`` or ``Ann <a@x.test>``), or None unless it is exactly one.

    One entry, one recipient: a template that renders ``"a@x.test, b@y.test"`` (or a group, or anything the
    parser had to repair) must not address a second person the definition never named."""
    try:
        header = email.policy.default.header_factory("To", entry.strip())
    except Exception:  # the parser raises IndexError and friends on some malformed input, not only its own
        return None
    addresses = header.addresses
    if header.defects or len(addresses) != 1 or any(group.display_name for group in header.groups):
        return None
    local, _, domain = addresses[0].addr_spec.rpartition("@")
    return str(addresses[0]) if local and domain else None


def _address_problems(config: Mapping[str, Any], key: str, *, rendered: bool) -> list[str]:
    entries = config.get(key)
    entries = [entries] if isinstance(entries, str) else list(entries or [])
    bad = [entry for entry in entries if not pending(entry, rendered) and entry.strip() and one_address(entry) is None]
    return [f"config {key!r}: {entry!r} is not exactly one email address" for entry in bad]


@dataclass(frozen=True)
class SmtpServer:
    """Where and how to send, parsed from the SMTP URL."""

    hostname: str
    port: int
    username: str | None = None
    password: str | None = None
    use_tls: bool = False
    start_tls: bool = False
    sender: str | None = None

    @classmethod
    def from_url(cls, url: str) -> SmtpServer:
        """Parse ``smtp://`` / ``smtps://`` URLs; raise ``ValueError`` with a readable message otherwise."""
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("the SMTP URL must look like smtp://[user:password@]host[:port] or smtps://…")
        query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        use_tls = parts.scheme == "smtps"
        return cls(
            hostname=parts.hostname,
            port=parts.port or (465 if use_tls else 25),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            use_tls=use_tls,
            # aiosmtplib would otherwise upgrade whenever the server offers it, failing on self-signed
            # certificates with no way to say so here; upgrading is the URL's explicit choice.
            start_tls=not use_tls and query.get("starttls", "false").lower() in ("1", "true", "yes"),
            sender=query.get("from") or None,
        )

    @property
    def address(self) -> str:
        """The server without credentials, for the attempt record."""
        return f"{'smtps' if self.use_tls else 'smtp'}://{self.hostname}:{self.port}"


class EmailExecutor:
    """Runs ``email`` nodes: builds the message with :class:`email.message.EmailMessage` and sends it."""

    type = "email"
    task_type = "EMAIL"

    def validate(self, node: Node) -> list[str]:
        return config_problems(node.config, rendered=False)

    async def execute(self, request: ExecutionRequest, context: SystemTaskContext) -> ExecutionResult | WaitUntil:
        config, secrets = request.config, request.secrets
        require_valid(config_problems(config, rendered=True), secrets)
        if not context.smtp_url:
            raise ExecutionFailedError("no SMTP server is configured (set STEPWISE_SMTP_URL)", non_retryable=True)
        try:
            server = SmtpServer.from_url(context.smtp_url)
        except ValueError as exc:
            raise ExecutionFailedError(str(exc), non_retryable=True) from exc
        to, cc = _addresses(config.get("to")), _addresses(config.get("cc"))
        sender = str(context.settings.get("mailFrom") or server.sender or DEFAULT_SENDER)
        domain = sender.rpartition("@")[2] or "localhost"
        message_id = f"<{request.task_id}@{domain}>"
        recorded = redact({"server": server.address, "from": sender, "to": to, "cc": cc,
                           "subject": config.get("subject", ""), "messageId": message_id}, secrets)  # fmt: skip

        def failed(message: str, *, non_retryable: bool = False) -> ExecutionFailedError:
            return ExecutionFailedError(redact_text(message, secrets), non_retryable=non_retryable, request=recorded)

        try:
            message = _build(config, sender, to, cc, message_id, email.utils.format_datetime(context.clock.now()))
        except ValueError as exc:  # e.g. a line break in a header: a header injection attempt or a bad template
            raise failed(f"the message cannot be built: {exc}", non_retryable=True) from exc
        try:
            refused, reply = await aiosmtplib.send(
                message,
                hostname=server.hostname,
                port=server.port,
                username=server.username,
                password=server.password,
                use_tls=server.use_tls,
                start_tls=server.start_tls,
                timeout=SMTP_TIMEOUT_S,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            permanent = all(r.code >= 500 for r in exc.recipients)
            raise failed(f"the SMTP server refused every recipient: {exc}", non_retryable=permanent) from exc
        except aiosmtplib.SMTPResponseException as exc:
            # 4xx replies are "try again later" by definition; 5xx are final (bad address, bad credentials).
            raise failed(f"the SMTP server answered {exc.code}: {exc.message}", non_retryable=exc.code >= 500) from exc
        except (aiosmtplib.SMTPTimeoutError, aiosmtplib.SMTPConnectError, aiosmtplib.SMTPServerDisconnected,
                OSError) as exc:  # fmt: skip
            raise failed(f"could not deliver to {server.address}: {exc}") from exc
        except aiosmtplib.SMTPException as exc:  # e.g. STARTTLS asked for but not offered
            raise failed(f"could not deliver to {server.address}: {exc}", non_retryable=True) from exc
        response = {"reply": reply, "refused": {address: str(answer) for address, answer in refused.items()}}
        return ExecutionResult(
            output={"messageId": message_id, "to": to, "cc": cc}, request=recorded, response=redact(response, secrets)
        )


def _addresses(value: Any) -> list[str]:
    """The rendered, checked entries (:func:`one_address`), each in its canonical spelling."""
    entries = [] if value is None else [value] if isinstance(value, str) else list(value)
    return [address for address in map(one_address, map(str, entries)) if address is not None]


def _build(
    config: Mapping[str, Any], sender: str, to: list[str], cc: list[str], message_id: str, date: str
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(to)
    if cc:
        message["Cc"] = ", ".join(cc)
    # A templated subject may render across lines; a header cannot span them, so fold into one.
    message["Subject"] = " ".join(str(config.get("subject", "")).split())
    message["Date"] = date
    message["Message-ID"] = message_id
    message.set_content(str(config.get("body") or ""))
    html = config.get("html")
    if html:
        message.add_alternative(str(html), subtype="html")
    return message
