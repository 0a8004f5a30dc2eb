"""Site -> enterprise forwarding as ``MesServer`` runs it (DESIGN.md A9, §4.6; README "Sites and
enterprise"): the outbox and its dispatcher on a site (``[outbox]``), the consumer of the sites'
feeds on an enterprise server (``[enterprise]``). A server may be both (a site that also
collects others), or neither (the default).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from andon.server.enterprise_consumer import EnterpriseConsumer, EnterpriseSource
from andon.server.host_connection import BrokerClientFactory
from andon.server.outbox_dispatcher import OutboxDispatcher
from andon.settings import ServerSettings
from andon.storage.enterprise import EnterpriseRepository
from andon.storage.mes import MesRepository
from andon.storage.outbox import OutboxRepository, enable_outbox

__all__ = ["Forwarding", "enable_site_outbox", "enterprise_sources"]

log = logging.getLogger(__name__)


def enable_site_outbox(settings: ServerSettings, mes_repository: MesRepository) -> None:
    """With ``[outbox] enabled``: MES changes go to the outbox from now on, and, the first time
    for this site name, every record the site already holds is queued too (so the enterprise
    gets the records made before forwarding was turned on). Call before the MES loads the
    plant file, whose orders and runs are MES records too."""
    if not settings.outbox.enabled:
        return
    site = settings.outbox.site
    enable_outbox(mes_repository.engine, site)
    seeded = OutboxRepository(mes_repository.engine).seed(site)
    if seeded is not None:
        log.info("forwarding starts for site %s: its %d existing MES records queued", site, seeded)


def enterprise_sources(
    settings: ServerSettings, own_host_id: str | None = None
) -> list[EnterpriseSource]:
    """The brokers to consume, each a persistent session with a stable client id, per node
    (``own_host_id``: cluster nodes share ``host_id``, and one client id on two nodes would
    make them take the session from each other)."""
    node = own_host_id or settings.host_id
    configured = settings.enterprise.sources
    pairs = [(s.name, s.mqtt, list(s.sites)) for s in configured] or [
        ("local", settings.mqtt, ["+"])
    ]
    return [
        EnterpriseSource(
            name,
            dataclasses.replace(
                mqtt.endpoint(client_id=f"andon-enterprise-{node}-{name}"),
                clean_session=False,
                manual_ack=True,
            ),
            tuple(sites),
        )
        for name, mqtt, sites in pairs
    ]


class Forwarding:
    def __init__(
        self,
        settings: ServerSettings,
        *,
        mes_repository: MesRepository | None,
        own_host_id: str,
        client_factory: BrokerClientFactory,
        may_publish: Callable[[], bool] | None = None,
    ) -> None:
        #: Publishes this site's outbox; None unless ``[outbox] enabled`` (and a plant file).
        self.outbox: OutboxDispatcher | None = None
        #: The enterprise's copy of the sites' records; None unless ``[enterprise] enabled``.
        self.enterprise_records: EnterpriseRepository | None = None
        self.enterprise: EnterpriseConsumer | None = None
        outbox = settings.outbox
        if outbox.enabled and mes_repository is None:
            log.warning("[outbox] enabled but no plant_file: there are no MES records to forward")
        elif outbox.enabled and mes_repository is not None:
            # The write paths already queue (enable_site_outbox, before the plant file loaded).
            self.outbox = OutboxDispatcher(
                OutboxRepository(mes_repository.engine),
                # Per node: two nodes sharing a client id would take each other's session.
                settings.mqtt.endpoint(client_id=f"andon-outbox-{own_host_id}"),
                client_factory,
                topic_prefix=outbox.topic_prefix,
                batch_size=outbox.batch_size,
                may_publish=may_publish,
            )
        if settings.enterprise.enabled:
            self.enterprise_records = EnterpriseRepository(settings.database_url)
            self.enterprise = EnterpriseConsumer(
                self.enterprise_records,
                enterprise_sources(settings, own_host_id),
                client_factory,
                topic_prefix=settings.enterprise.topic_prefix,
                batch_size=settings.enterprise.batch_size,
            )

    def start(self) -> None:
        # The consumer first: a server that is its own enterprise has its session subscribed
        # before its first message goes out (a broker keeps messages only for known sessions).
        if self.enterprise is not None:
            self.enterprise.start()
        if self.outbox is not None:
            self.outbox.start()

    def stop(self) -> None:
        if self.outbox is not None:
            self.outbox.stop()
        if self.enterprise is not None:
            self.enterprise.stop()
        if self.enterprise_records is not None:
            self.enterprise_records.close()

    def health(self) -> dict[str, dict[str, Any]]:
        """The ``outbox`` and ``enterprise`` components of ``/api/v1/health`` (if enabled)."""
        components = {}
        if self.outbox is not None:
            components["outbox"] = self.outbox.health()
        if self.enterprise is not None:
            components["enterprise"] = self.enterprise.health()
        return components
