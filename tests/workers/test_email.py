"""The ``email`` executor against a real aiosmtpd server on 127.0.0.1."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from engine.definitions.model import Node
from engine.errors import ExecutionFailedError
from engine.workers.email import EmailExecutor, SmtpServer
from engine.workers.executor import ExecutionResult, SystemTaskContext
from tests.support import free_port
from tests.workers.support import Mailbox, attempt

EMAIL = EmailExecutor()


async def send(config: dict[str, Any], context: SystemTaskContext, task_id: str) -> ExecutionResult:
    result = await EMAIL.execute(attempt("email", config, task_id=task_id), context)
    assert isinstance(result, ExecutionResult)
    return result


async def test_plain_and_html_message_is_delivered(mailbox: Mailbox, context: SystemTaskContext) -> None:
    context = replace(context, smtp_url=f"{mailbox.url}?from=workflows@stepwise.test")
    config = {
        "to": ["alice@example.com", "Bob <bob@example.com>"],
        "cc": ["carol@example.com"],
        "subject": "Expense\n approved",
        "body": "Your expense of 12.50 EUR was approved.",
        "html": "<p>Your expense of <b>12.50 EUR</b> was approved.</p>",
    }

    result = await send(config, context, task_id="mail-1")

    assert result.output == {"messageId": "<mail-1@stepwise.test>", "to": config["to"], "cc": ["carol@example.com"]}
    envelope = mailbox.inbox.envelopes[-1]
    assert envelope.mail_from == "workflows@stepwise.test"
    assert envelope.rcpt_tos == ["alice@example.com", "bob@example.com", "carol@example.com"]
    message = mailbox.messages()[-1]
    assert message["Subject"] == "Expense approved"
    assert message["To"] == "alice@example.com, Bob <bob@example.com>"
    assert message["Cc"] == "carol@example.com"
    assert message["Message-ID"] == "<mail-1@stepwise.test>"
    assert message.get_content_type() == "multipart/alternative"
    plain = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert plain is not None and plain.get_content().strip() == config["body"]
    assert html is not None and html.get_content().strip() == config["html"]


async def test_text_only_message_and_a_single_rendered_recipient(mailbox: Mailbox, context: SystemTaskContext) -> None:
    context = replace(context, smtp_url=mailbox.url)

    result = await send({"to": "dana@example.com", "subject": "Hi", "body": "Plain."}, context, task_id="mail-2")

    message = mailbox.messages()[-1]
    assert result.output["to"] == ["dana@example.com"]
    assert message.get_content_type() == "text/plain"
    assert message["From"] == "stepwise@localhost"
    assert message.get_content().strip() == "Plain."


async def test_without_smtp_url_the_task_fails_for_good(context: SystemTaskContext) -> None:
    with pytest.raises(ExecutionFailedError) as failure:
        await send({"to": ["a@example.com"], "subject": "Hi"}, context, task_id="mail-3")

    assert failure.value.non_retryable
    assert "STEPWISE_SMTP_URL" in failure.value.message


async def test_unreachable_server_is_retryable(context: SystemTaskContext) -> None:
    context = replace(context, smtp_url=f"smtp://user:pa55word@127.0.0.1:{free_port()}")

    with pytest.raises(ExecutionFailedError) as failure:
        await send({"to": ["a@example.com"], "subject": "Hi"}, context, task_id="mail-4")

    assert not failure.value.non_retryable
    assert "pa55word" not in failure.value.message + repr(failure.value.request)


async def test_an_empty_rendered_recipient_fails_for_good(mailbox: Mailbox, context: SystemTaskContext) -> None:
    context = replace(context, smtp_url=mailbox.url)

    with pytest.raises(ExecutionFailedError) as failure:
        await send({"to": ["ok@example.com", ""], "subject": "Hi"}, context, task_id="mail-5")

    assert failure.value.non_retryable
    assert "empty entry" in failure.value.message


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://mail.example.com", SmtpServer("mail.example.com", 25)),
        ("smtp://u%40x:p%2Fw@mail:2525?starttls=true&from=me@x.org",
         SmtpServer("mail", 2525, "u@x", "p/w", start_tls=True, sender="me@x.org")),
        ("smtps://mail.example.com", SmtpServer("mail.example.com", 465, use_tls=True)),
    ],
)  # fmt: skip
def test_smtp_url_parsing(url: str, expected: SmtpServer) -> None:
    assert SmtpServer.from_url(url) == expected


def test_smtp_url_must_be_smtp() -> None:
    with pytest.raises(ValueError, match="smtp://"):
        SmtpServer.from_url("http://mail.example.com")


@pytest.mark.parametrize(
    "entry",
    ["a@example.com, b@example.com", "a@example.com; b@example.com", "a@example.com b@example.com",
     "team: a@example.com, b@example.com;", "not an address", "a@"],
)  # fmt: skip
async def test_an_entry_that_is_not_exactly_one_address_fails_for_good(
    mailbox: Mailbox, context: SystemTaskContext, entry: str
) -> None:
    context = replace(context, smtp_url=mailbox.url)
    sent = len(mailbox.messages())

    with pytest.raises(ExecutionFailedError) as failure:
        await send({"to": ["ok@example.com"], "cc": [entry], "subject": "Hi"}, context, task_id="mail-6")

    assert failure.value.non_retryable
    assert f"config 'cc': {entry!r} is not exactly one email address" in failure.value.message
    assert len(mailbox.messages()) == sent


async def test_a_named_address_is_one_recipient(mailbox: Mailbox, context: SystemTaskContext) -> None:
    context = replace(context, smtp_url=mailbox.url)

    result = await send({"to": ['"Smith, Ann" <ann@example.com>'], "subject": "Hi"}, context, task_id="mail-7")

    assert result.output["to"] == ['"Smith, Ann" <ann@example.com>']
    assert mailbox.inbox.envelopes[-1].rcpt_tos == ["ann@example.com"]


def test_a_literal_entry_is_checked_at_deploy() -> None:
    node = Node(id="mail", type="email", config={"to": ["a@example.com, b@example.com", "{{ who }}"], "subject": "Hi"})

    assert EMAIL.validate(node) == ["config 'to': 'a@example.com, b@example.com' is not exactly one email address"]
