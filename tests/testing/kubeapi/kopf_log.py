"""A log handler that keeps kopf's records, so tests can assert the log has no problems."""

from __future__ import annotations

import logging

IN_A_THREAD = "OS signals are ignored"  # kopf run in a thread says so; not a problem


class LogCollector(logging.Handler):
    def __init__(self, known: tuple[str, ...] = (IN_A_THREAD,)) -> None:
        super().__init__(logging.DEBUG)
        self.known = known
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def problems(self) -> list[str]:
        """Warnings and errors, less the known harmless ones."""
        return [
            f"{r.levelname} {r.name}: {r.getMessage()}"
            for r in self.records
            if r.levelno >= logging.WARNING and not any(k in r.getMessage() for k in self.known)
        ]
