"""Extra networks of a job (`<lora:...>`, `<hypernet:...>`): a registry of handlers activated per batch."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from modules.extra_networks_syntax import ExtraNetworkParams

log = logging.getLogger(__name__)


class ExtraNetwork(Protocol):
    """A handler for one tag type. `activate` is called for every batch, with an empty list when not mentioned."""

    name: str

    def activate(self, p: Any, params_list: list[ExtraNetworkParams]) -> None: ...

    def deactivate(self, p: Any) -> None: ...


class ExtraNetworkRegistry:
    """Handlers by tag name, plus aliases (`lyco` -> `lora`, as A1111 keeps for old LyCORIS prompts)."""

    def __init__(self) -> None:
        self.networks: dict[str, ExtraNetwork] = {}
        self.aliases: dict[str, str] = {}
        # Run before the networks, every batch, with the job's settings overrides active (VAE selection).
        self.before_batch: list[Callable[[Any], None]] = []

    def register(self, network: ExtraNetwork, aliases: Iterable[str] = ()) -> None:
        self.networks[network.name] = network
        for alias in aliases:
            self.aliases[alias] = network.name

    def _merged(self, data: Mapping[str, list[ExtraNetworkParams]]) -> dict[str, list[ExtraNetworkParams]]:
        merged: dict[str, list[ExtraNetworkParams]] = {}
        for kind, params in data.items():
            merged.setdefault(self.aliases.get(kind, kind), []).extend(params)
        return merged

    def activate(self, p: Any, data: Mapping[str, list[ExtraNetworkParams]]) -> None:
        """Activate every handler: mentioned ones with their tags, the rest with [] (which restores the model)."""
        for hook in self.before_batch:
            hook(p)
        merged = self._merged(data)
        for kind in merged:
            if kind not in self.networks:
                log.warning("Extra network type %r is unknown; its tags are ignored", kind)
        for name, network in self.networks.items():
            try:
                network.activate(p, merged.get(name, []))
            except Exception as e:  # one broken handler (extension) must not stop the job
                log.exception("activating extra network %s", name)
                add_error(p, f"{name}: {e}")

    def deactivate(self, p: Any) -> None:
        for name, network in self.networks.items():
            try:
                network.deactivate(p)
            except Exception:
                log.exception("deactivating extra network %s", name)


def add_error(p: Any, message: str) -> None:
    """Record a message for the job's result (UI info and API `comments`), once."""
    errors = getattr(p, "extra_network_errors", None)
    if errors is None:
        errors = []
        p.extra_network_errors = errors
    if message not in errors:
        errors.append(message)


def activate_for_batch(p: Any, data: Mapping[str, list[ExtraNetworkParams]]) -> list[str]:
    """What generation calls per batch; returns the messages of networks that could not be applied."""
    registry = getattr(p, "extra_networks", None) or getattr(getattr(p, "runtime", None), "extra_networks", None)
    if registry is None:
        return []
    if getattr(p, "disable_extra_networks", False):
        data = {}
    registry.activate(p, data)
    return list(getattr(p, "extra_network_errors", None) or [])
