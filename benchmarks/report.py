"""Output shared by the speed benchmarks: the markdown table on stdout, the full result as JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def report(result: dict[str, Any], header: str, table: str, output: Path | None) -> None:
    """Print ``header`` and ``table``; write ``result`` as JSON to ``output`` (folders created) when given."""
    print(header)
    print(table)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(result, indent=2, default=str))
