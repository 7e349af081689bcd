"""The SLO bodies a process keeps between passes, as compact JSON text."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any


class CompactBodies(MutableMapping[str, Mapping[str, Any]]):
    """SLO bodies by key, kept as JSON and decoded at each read, so every read is a private copy.

    A body decoded from the API server takes about 13 KiB as dicts and 3 KiB as text, and a pass reads its SLO
    once per interval. `metadata.managedFields` is not kept: nothing reads it from an SLO, and it grows with
    every client that ever wrote the object.
    """

    def __init__(self) -> None:
        self._texts: dict[str, str] = {}

    def __getitem__(self, key: str) -> Mapping[str, Any]:
        body: Mapping[str, Any] = json.loads(self._texts[key])
        return body

    def __setitem__(self, key: str, body: Mapping[str, Any]) -> None:
        kept = dict(body)
        metadata = kept.get("metadata")
        if isinstance(metadata, Mapping) and "managedFields" in metadata:
            kept["metadata"] = {name: value for name, value in metadata.items() if name != "managedFields"}
        self._texts[key] = json.dumps(kept, separators=(",", ":"))

    def __delitem__(self, key: str) -> None:
        del self._texts[key]

    def __contains__(self, key: object) -> bool:
        return key in self._texts

    def __iter__(self) -> Iterator[str]:
        return iter(self._texts)

    def __len__(self) -> int:
        return len(self._texts)
