"""Extra networks of a job (`<lora:...>`, `<hypernet:...>`): a registry of handlers activated per batch."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from modules.extra_networks_syntax import ExtraNetworkParams, parse_prompt, parse_prompts

__all__ = ["ExtraNetwork", "ExtraNetworkParams", "ExtraNetworkRegistry", "activate_for_batch", "add_error",
           "extra_network_registry", "parse_prompt", "parse_prompts", "register_extra_network"]

log = logging.getLogger(__name__)


class ExtraNetwork:
    """A handler for one tag type (A1111's base class: extensions subclass it and call `super().__init__(name)`).
    `activate` is called for every batch, with an empty list when not mentioned."""

    name: str

    def __init__(self, name: str) -> None:
        self.name = name

    def activate(self, p: Any, params_list: list[ExtraNetworkParams]) -> None:
        raise NotImplementedError

    def deactivate(self, p: Any) -> None:
        raise NotImplementedError


class _Handler(Protocol):
    name: str

    def activate(self, p: Any, params_list: list[ExtraNetworkParams]) -> None: ...

    def deactivate(self, p: Any) -> None: ...


extra_network_registry: dict[str, Any] = {}
"""Handlers extensions registered with register_extra_network (A1111's module-level dict)."""


def register_extra_network(extra_network: Any) -> None:
    """A1111's call: register a handler for `<name:...>` tags; it is added to the running app's registry too."""
    extra_network_registry[extra_network.name] = extra_network
    from modules import shared

    runtime = shared._runtime
    if runtime is not None:
        runtime.extra_networks.register(extra_network)


def register_extra_network_alias(extra_network: Any, alias: str) -> None:
    from modules import shared

    extra_network_registry[alias] = extra_network
    if shared._runtime is not None:
        shared._runtime.extra_networks.register(extra_network, aliases=(alias,))


class ExtraNetworkRegistry:
    """Handlers by tag name, plus aliases (`lyco` -> `lora`, as A1111 keeps for old LyCORIS prompts)."""

    def __init__(self) -> None:
        self.networks: dict[str, _Handler] = {}
        self.aliases: dict[str, str] = {}
        # Run before the networks, every batch, with the job's settings overrides active (VAE selection).
        self.before_batch: list[Callable[[Any], None]] = []

    def register(self, network: _Handler, aliases: Iterable[str] = ()) -> None:
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
