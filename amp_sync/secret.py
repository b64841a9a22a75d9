"""A string wrapper that never shows its value in repr, str, logs or tracebacks."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Secret:
    """An API or secret key; call `reveal()` only where the value goes on the wire."""

    _value: str = field(repr=False)

    def reveal(self) -> str:
        """The real value, for request bodies and auth headers only."""
        return self._value

    def masked(self) -> str:
        """The last four characters behind bullets, enough to tell keys apart."""
        tail = self._value[-4:] if len(self._value) > 8 else ""
        return f"••••{tail}"

    def __str__(self) -> str:
        return self.masked()

    def __repr__(self) -> str:
        return f"Secret({self.masked()})"

    def __bool__(self) -> bool:
        return bool(self._value)
