"""Live alerting: after each SLO evaluation, move the alerts, dispatch notifications, deliver them.

One evaluator decides at a time. Every evaluator writes a heartbeat to ``evaluator_leases`` before
it reads the leases; the oldest live one (started first, ties by id) is the leader, and only the
leader moves alerts, runs the dispatcher and sends. Since each writes before it reads, two
evaluators starting together cannot both see themselves as oldest. A follower keeps no state: when
it becomes leader (the old one stopped beating for ``lease_ttl_s``) it loads the alerts and the
dispatcher's state from the store, so nothing is paged twice and no open incident is forgotten.

Notifications are stored when decided, before they are delivered. An evaluator that takes the lead
(a restart, a takeover) sends again the recent ones that no attempt delivered: deliveries are at
least once, and PagerDuty's dedup_key and the payloads' ids make a rare second delivery harmless.

When the store cannot be reached, the leader goes on deciding from the state it holds for as long
as its lease would still be valid (``lease_ttl_s`` after its last heartbeat): no other evaluator
can take the lead before then, so nothing is decided twice. It sends what it decides (an SLO with
``on_no_data: alert`` pages about the outage itself) with the silences and acknowledgements it last
read, and writes its decisions, alerts and delivery attempts to the store once it is back.

On the embedded store (chDB) only one process can hold the data directory, so no other evaluator can
be running: an ``exclusive`` evaluator takes the lease at once whoever holds it. Otherwise a process
restarted after a crash (a new evaluator id, started later) would follow its own dead predecessor
until that lease expired, and pages and resolves would wait for it.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace

from prometheus_client import CollectorRegistry

from alerts import attribution, state, store
from alerts.delivery import Deliveries, RetryPolicy
from alerts.dispatch import Dispatcher, DispatchState
from alerts.model import Alert, Attribution, Notification, Silence, Transition
from alerts.policy import Policy
from alerts.receivers import build
from slo.evaluator import InstanceResult
from slo.model import Slo, parse_duration
from store.backend import Backend, StoreError, StoreUnavailable

log = logging.getLogger(__name__)

#: An evaluator that has not written a heartbeat for this long is no longer leader: one and a half
#: evaluations at the default interval (sloscope/app.py scales it with the interval). Heartbeats are
#: written once per evaluation, so the TTL must be longer than the interval, or the leader's lease
#: would have expired whenever another evaluator looks; and shorter than two, so that a follower
#: takes over from a crashed leader at its second evaluation after the leader's last beat, whatever
#: the seconds each takes to evaluate (half an interval either way).
LEASE_TTL_S = 90
#: How far back a new leader looks for notifications that were decided but never delivered.
REDELIVERY_S = 3600


class Alerting:
    """The alerting of one sloscope process: state machine, dispatcher and deliveries."""

    def __init__(
        self,
        backend: Backend,
        policy: Policy,
        registry: CollectorRegistry | None = None,
        *,
        evaluator_id: str | None = None,
        deliveries: Deliveries | None = None,
        lease_ttl_s: int = LEASE_TTL_S,
        exclusive: bool = False,
        retry: RetryPolicy | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``exclusive``: no other evaluator can run on this store (the embedded one, whose data
        directory one process holds), so this one leads at once, taking over any lease left behind."""
        self.backend = backend
        self.policy = policy
        self.dispatcher = Dispatcher(policy)
        self.evaluator_id = evaluator_id or uuid.uuid4().hex
        self.lease_ttl_s = lease_ttl_s
        self.exclusive = exclusive
        #: Whether an exclusive evaluator has removed the leases its predecessors left behind.
        self._claimed = False
        self.clock = clock
        self.started_ms = int(clock() * 1000)
        if deliveries is None and policy.receivers:
            deliveries = Deliveries(
                [build(r) for r in policy.receivers],
                registry=registry or CollectorRegistry(),
                on_attempt=self._on_attempt,
                retry=retry,
            )
        self.deliveries = deliveries
        self._records: dict[str, state.AlertRecord] | None = None
        self._dispatch: DispatchState | None = None
        #: When this evaluator last wrote its heartbeat as the leader (clock seconds).
        self._led_at: float | None = None
        self._silences: list[Silence] = []
        self._acked: set[str] = set()
        #: Decided while the store was unreachable, written once it is back.
        self._offline = _Unsaved()

    def use_external_url(self, url: str) -> None:
        """Make links (incident URLs, relative runbook and dashboard links) from ``url``: the server
        knows its address only once its port is bound. Call before evaluations start."""
        self.policy = replace(self.policy, external_url=url.rstrip("/"))
        self.dispatcher = Dispatcher(self.policy)

    def _on_attempt(
        self, notification: Notification, receiver: str, attempt: int, ok: bool, error: str | None
    ) -> None:
        at_ms = int(self.clock() * 1000)
        try:
            store.record_delivery(self.backend, notification, attempt, at_ms, ok, error or "")
        except StoreUnavailable:
            self._offline.add_delivery((notification, attempt, at_ms, ok, error or ""))
        except StoreError:
            log.exception("cannot record a delivery", extra={"notification": notification.id})

    def is_leader(self) -> bool:
        """Beat, then look: is this evaluator the one that decides alerts? An exclusive one always is;
        it first removes the leases of evaluators that died on this store, so the table names the
        one that leads."""
        now_ms = int(self.clock() * 1000)
        if self.exclusive and not self._claimed:
            store.release_others(self.backend, self.evaluator_id)
            self._claimed = True
        store.heartbeat(self.backend, self.evaluator_id, self.started_ms, now_ms)
        if self.exclusive:
            return True
        return store.leader(self.backend, now_ms, self.lease_ttl_s * 1000) == self.evaluator_id

    def process(
        self, slos: Sequence[Slo], results: Sequence[InstanceResult], at_s: int
    ) -> list[Notification]:
        """Alerts and notifications for the evaluation at ``at_s``; returns the notifications sent."""
        try:
            leader = self.is_leader()
        except StoreUnavailable:
            return self._process_offline(slos, results, at_s)
        if not leader:
            self._records = self._dispatch = self._led_at = None  # the leader moves on without us
            return []
        self._led_at = self.clock()
        if self._records is None or self._dispatch is None:
            self._records = store.load_alerts(self.backend)
            saved = store.load_dispatch_state(self.backend)
            self._dispatch = DispatchState.from_json(saved) if saved else DispatchState()
            self._redeliver(at_s)
        self._save_offline()
        if self._dispatch.at_s is not None and at_s < self._dispatch.at_s:
            return []  # an instant before the last one decided (a clock step back)
        touched, transitions = state.step(self._records, slos, results, at_s)
        alerts = current_alerts(self._records, slos, results)
        silences = store.load_silences(self.backend, at_s)
        acked = set(store.acknowledgements(self.backend))
        self._silences, self._acked = silences, acked
        new_state, decided = self.dispatcher.step(self._dispatch, alerts, at_s, silences, acked)
        by_name = {slo.name: slo for slo in slos}
        decided = [self._attributed(n, by_name) for n in decided]

        store.save_alerts(self.backend, touched)
        store.save_transitions(self.backend, transitions, self._records)
        known = store.known_notifications(self.backend, [n.id for n in decided])
        store.save_notifications(self.backend, [n for n in decided if n.id not in known])
        incidents = [i.summary() for i in (*new_state.incidents, *new_state.closed)]
        store.save_incidents(self.backend, incidents, at_s)
        store.save_dispatch_state(self.backend, at_s, new_state.to_json())
        self._dispatch = new_state

        delivered = store.delivered_ids(self.backend, [n.id for n in decided])
        to_send = [n for n in decided if n.id not in delivered]
        if self.deliveries is not None:
            for notification in to_send:
                self.deliveries.submit(notification)
        return to_send

    def _process_offline(
        self, slos: Sequence[Slo], results: Sequence[InstanceResult], at_s: int
    ) -> list[Notification]:
        """:meth:`process` while the store is unreachable: the leader decides from what it holds
        while its lease lasts, sends, and keeps its decisions for :meth:`_save_offline`."""
        if self._records is None or self._dispatch is None or self._led_at is None:
            log.warning("store unreachable and this evaluator is not the leader: no alerts decided")
            return []
        if not self.exclusive and self.clock() - self._led_at >= self.lease_ttl_s:
            # Another evaluator may lead by now; an exclusive one has nobody to defer to.
            log.warning("store unreachable for longer than the lease: no alerts decided until it is back")
            return []
        if self._dispatch.at_s is not None and at_s < self._dispatch.at_s:
            return []
        touched, transitions = state.step(self._records, slos, results, at_s)
        alerts = current_alerts(self._records, slos, results)
        new_state, decided = self.dispatcher.step(self._dispatch, alerts, at_s, self._silences, self._acked)
        self._dispatch = new_state
        self._offline.decided(touched, transitions, decided, at_s)
        log.warning(
            "store unreachable: alerts decided from memory",
            extra={"at": at_s, "notifications": len(decided)},
        )
        if self.deliveries is not None:
            for notification in decided:  # no attribution: it reads the store
                self.deliveries.submit(notification)
        return decided

    def _save_offline(self) -> None:
        """Write what was decided while the store was unreachable (once it is reachable again)."""
        unsaved, self._offline = self._offline, _Unsaved()
        if unsaved.empty() or self._records is None:
            return
        try:
            store.save_alerts(self.backend, list(unsaved.records.values()))
            store.save_transitions(self.backend, unsaved.transitions, self._records)
            known = store.known_notifications(self.backend, [n.id for n in unsaved.notifications])
            store.save_notifications(self.backend, [n for n in unsaved.notifications if n.id not in known])
            for notification, attempt, at_ms, ok, error in unsaved.deliveries():
                store.record_delivery(self.backend, notification, attempt, at_ms, ok, error)
            if self._dispatch is not None and unsaved.at_s is not None:
                incidents = [i.summary() for i in (*self._dispatch.incidents, *self._dispatch.closed)]
                store.save_incidents(self.backend, incidents, unsaved.at_s)
                store.save_dispatch_state(self.backend, unsaved.at_s, self._dispatch.to_json())
        except StoreUnavailable:
            self._offline = unsaved.merge(self._offline)  # gone again: keep it for the next time
            raise

    def _redeliver(self, at_s: int) -> None:
        """On taking the lead (start-up, or after another leader stopped): send again what an earlier
        leader decided in the last ``REDELIVERY_S`` but never delivered (stopped with it queued, or
        gave up on a receiver that was down)."""
        if self.deliveries is None:
            return
        for notification in store.undelivered(self.backend, at_s - REDELIVERY_S):
            self.deliveries.submit(notification)

    def _attributed(self, notification: Notification, slos: dict[str, Slo]) -> Notification:
        """The notification with the burn attribution of its lead firing alert's short window."""
        lead = next((a for a in notification.alerts if a.state == "firing" and a.pair), None)
        if lead is None or lead.slo not in slos:
            return notification
        end = notification.at_s
        try:
            found = attribution.attribute(
                self.backend, slos[lead.slo], lead.group, end - parse_duration(lead.pair.short), end
            )
        except (ValueError, StoreError) as exc:
            log.warning("no burn attribution", extra={"slo": lead.slo, "error": str(exc)})
            found = Attribution()
        return replace(notification, attribution=found)

    def close(self, timeout_s: float = 10.0) -> None:
        """Finish the deliveries in progress (bounded by ``timeout_s``), then give up the lease.

        Without the release a restarted ``sloscope serve`` (a new evaluator id, started later) would
        find the old process's heartbeat still live and follow it for ``lease_ttl_s``: the
        evaluations of those minutes would move no alert and send no repeat or resolve."""
        if self.deliveries is not None:
            self.deliveries.close(timeout_s)
        self._records = self._dispatch = None
        try:
            store.release(self.backend, self.evaluator_id)
        except (StoreError, StoreUnavailable):  # stopping during a store outage: the lease expires
            log.exception("cannot release the evaluator lease", extra={"evaluator": self.evaluator_id})


class _Unsaved:
    """Decisions and delivery attempts made while the store was unreachable."""

    def __init__(self) -> None:
        self.records: dict[str, state.AlertRecord] = {}
        self.transitions: list[Transition] = []
        self.notifications: list[Notification] = []
        self.at_s: int | None = None
        self._lock = threading.Lock()  # delivery attempts are reported from the receivers' workers
        self._deliveries: list[tuple[Notification, int, int, bool, str]] = []

    def decided(
        self,
        records: Sequence[state.AlertRecord],
        transitions: Sequence[Transition],
        notifications: Sequence[Notification],
        at_s: int,
    ) -> None:
        self.records.update((r.id, r) for r in records)
        self.transitions += transitions
        self.notifications += notifications
        self.at_s = at_s

    def add_delivery(self, attempt: tuple[Notification, int, int, bool, str]) -> None:
        with self._lock:
            self._deliveries.append(attempt)

    def deliveries(self) -> list[tuple[Notification, int, int, bool, str]]:
        with self._lock:
            return list(self._deliveries)

    def merge(self, newer: _Unsaved) -> _Unsaved:
        """This and ``newer`` (decided after it) as one."""
        self.records.update(newer.records)
        self.transitions += newer.transitions
        self.notifications += newer.notifications
        self.at_s = newer.at_s if newer.at_s is not None else self.at_s
        for attempt in newer.deliveries():
            self.add_delivery(attempt)
        return self

    def empty(self) -> bool:
        with self._lock:
            return not (self.records or self.transitions or self.notifications or self._deliveries)


def current_alerts(
    records: dict[str, state.AlertRecord], slos: Sequence[Slo], results: Sequence[InstanceResult]
) -> list[Alert]:
    """The alerts to dispatch: every firing or resolved alert of the loaded SLOs, with the numbers
    of the evaluation that moved it."""
    by_name = {slo.name: slo for slo in slos}
    by_instance = {(r.slo.name, r.group): r for r in results}
    return [
        state.alert(record, by_name[record.slo], by_instance.get((record.slo, record.group)))
        for record in sorted(records.values(), key=lambda r: r.id)
        if record.state != "inactive" and record.slo in by_name
    ]
