"""A tiny name -> factory registry, used for encoders, losses and miners.

`create(name, **kw)` is the one constructor scripts call; `names()` lets tests parametrise over
every registered component so that a new one is tested for free.
"""

from collections.abc import Callable
from typing import Any

from .errors import ConfigError


class Registry:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., Any]] = {}

    def register(self, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def decorator(factory: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._factories:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._factories[name] = factory
            return factory

        return decorator

    def names(self) -> list[str]:
        return sorted(self._factories)

    def get(self, name: str) -> Callable[..., Any]:
        if name not in self._factories:
            raise ConfigError(
                f"unknown {self.kind} '{name}'; choose one of: {', '.join(self.names())}"
            )
        return self._factories[name]

    def create(self, name: str, **kwargs: Any) -> Any:
        return self.get(name)(**kwargs)
