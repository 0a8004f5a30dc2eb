"""``BrokerlessHostLink``: the ingest's ``HostLink`` without a broker, for tests and benchmarks
that feed ``SparkplugIngest`` messages directly (what the host session would publish, such as
rebirth requests, is dropped)."""

from __future__ import annotations

import threading

from andon.sparkplug.actions import Publish
from andon.sparkplug.host import HostApplicationSession

__all__ = ["BrokerlessHostLink"]


class BrokerlessHostLink:
    def __init__(self, session: HostApplicationSession) -> None:
        self.session = session
        self.session_lock = threading.Lock()

    def publish(self, action: Publish) -> None:
        pass

    def disconnect(self) -> None:
        pass
