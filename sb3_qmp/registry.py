"""The algorithms this package provides, by the names used in rl-zoo3 and the docs.

Values are import paths, resolved lazily so that importing the registry stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

ALGO_PATHS: dict[str, str] = {
    "qmp": "sb3_qmp.qmp:QMP",
    "separated": "sb3_qmp.separated:Separated",
    "shared": "sb3_qmp.shared:SharedSAC",
    "dnc": "sb3_qmp.dnc:DnC",
    "dnc_reg": "sb3_qmp.dnc:DnCReg",
    "qmp_uniform": "sb3_qmp.qmp:QMPUniform",
    "qmp_domain": "sb3_qmp.qmp:QMPDomain",
    "mtsac_multihead": "sb3_qmp.multihead:MultiHeadSAC",
    "qmp_multihead": "sb3_qmp.multihead:QMPMultiHead",
}


def get_algo(name: str) -> type[Any]:
    """The algorithm class registered under ``name``."""
    if name not in ALGO_PATHS:
        raise ValueError(f"Unknown algorithm {name!r}; sb3-qmp provides {sorted(ALGO_PATHS)}.")
    module, attr = ALGO_PATHS[name].split(":")
    return getattr(importlib.import_module(module), attr)
