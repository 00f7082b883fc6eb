"""Receivers: deliver one :class:`~alerts.model.Notification` to one external system.

One module per kind (``webhook``, ``alertmanager``, ``pagerduty``, ``slack``, ``email``); each holds a
class built from a :class:`~alerts.model.ReceiverConfig` whose ``send`` either returns (delivered) or
raises :class:`DeliveryError`. Retrying, queueing and metrics are :mod:`alerts.delivery`'s job, so a
receiver makes exactly one attempt per call.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from alerts.model import Notification, ReceiverConfig

__all__ = ["DEFAULT_TIMEOUT_S", "DeliveryError", "Receiver", "build"]

#: Seconds a single attempt may take (connect plus response), so a hanging endpoint costs one worker
#: this long per attempt and never more.
DEFAULT_TIMEOUT_S = 10.0


class DeliveryError(Exception):
    """A delivery attempt failed.

    ``retryable`` says whether the same request may succeed later: HTTP 5xx and 429, SMTP 4xx,
    connection errors and timeouts are; HTTP 4xx (a bad payload, a revoked key) and SMTP 5xx are not,
    since repeating them only repeats the refusal. ``status`` is the HTTP or SMTP code when there was
    one; ``retry_after_s`` the server's ``Retry-After`` when it sent one.
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        status: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status
        self.retry_after_s = retry_after_s


@runtime_checkable
class Receiver(Protocol):
    """What :mod:`alerts.delivery` needs of a receiver.

    A receiver may also have ``secrets``, the strings to mask in its errors
    (:func:`alerts.redact.receiver_secrets` of its config); the built-in ones all do.
    """

    name: str
    kind: str

    def send(self, notification: Notification) -> None:
        """Deliver ``notification`` once; raise :class:`DeliveryError` if it was not delivered."""
        ...


def build(config: ReceiverConfig, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> Receiver:
    """The receiver for ``config``; ``ValueError`` naming the receiver and setting when a required
    setting is missing or malformed."""
    # Imported here so that importing the package (for DeliveryError) does not import every kind.
    if config.kind == "webhook":
        from alerts.receivers.webhook import WebhookReceiver

        return WebhookReceiver(config, timeout_s=timeout_s)
    if config.kind == "alertmanager":
        from alerts.receivers.alertmanager import AlertmanagerReceiver

        return AlertmanagerReceiver(config, timeout_s=timeout_s)
    if config.kind == "pagerduty":
        from alerts.receivers.pagerduty import PagerDutyReceiver

        return PagerDutyReceiver(config, timeout_s=timeout_s)
    if config.kind == "slack":
        from alerts.receivers.slack import SlackReceiver

        return SlackReceiver(config, timeout_s=timeout_s)
    if config.kind == "email":
        from alerts.receivers.email import EmailReceiver

        return EmailReceiver(config, timeout_s=timeout_s)
    raise ValueError(f"receiver {config.name!r}: unknown kind {config.kind!r}")
