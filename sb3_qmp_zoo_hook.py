"""Start-up hook that makes ``python -m rl_zoo3.train --algo qmp`` work (installed as ``sb3_qmp_zoo.pth``).

Python runs the ``import`` line of every ``*.pth`` file in site-packages at start-up. Ours imports
this module, which must stay tiny: it only puts a finder on :data:`sys.meta_path` and imports
nothing else. The finder ignores every module except ``rl_zoo3.utils``,
``rl_zoo3.hyperparams_opt`` and ``rl_zoo3.exp_manager``; when one of those is imported, the real
module is loaded as usual and *then* :func:`sb3_qmp.zoo.patch_zoo_module` registers this
package's algorithms, Optuna samplers and default configs in it. So sb3-qmp (and torch) are only
imported by processes that use rl-zoo3 anyway.

The hook never raises: if sb3-qmp cannot be imported, rl-zoo3 still works (without our algorithms)
and a warning says why. Set ``SB3_QMP_NO_ZOO_HOOK=1`` to disable it.
"""

from __future__ import annotations

import os
import sys

# `typing` costs milliseconds at every interpreter start-up: import it for type checkers only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

WATCHED = frozenset({"rl_zoo3.utils", "rl_zoo3.hyperparams_opt", "rl_zoo3.exp_manager"})
DISABLE_ENV_VAR = "SB3_QMP_NO_ZOO_HOOK"


class _PatchingLoader:
    """Wraps the real loader of a watched module: executes it, then patches the module."""

    def __init__(self, loader: Any, fullname: str) -> None:
        self._loader = loader
        self._fullname = fullname

    def __getattr__(self, name: str) -> Any:
        # Everything else (get_resource_reader, get_data, is_package, ...) is the real loader's.
        return getattr(self._loader, name)

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self._loader.exec_module(module)
        try:
            from sb3_qmp.zoo import patch_zoo_module

            patch_zoo_module(module)
        except Exception as e:  # never break rl-zoo3 because of this package
            import warnings

            warnings.warn(
                f"sb3-qmp could not register its algorithms in rl-zoo3 ({type(e).__name__}: {e}). "
                f"Use `python -m sb3_qmp.train` to see the full error, or set {DISABLE_ENV_VAR}=1 to silence this.",
                RuntimeWarning,
                stacklevel=2,
            )


class ZooFinder:
    """A :data:`sys.meta_path` finder that only acts on the rl-zoo3 modules in :data:`WATCHED`."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname not in WATCHED:
            return None
        for finder in sys.meta_path:
            if finder is self or isinstance(finder, ZooFinder):
                continue
            find_spec = getattr(finder, "find_spec", None)
            if find_spec is None:
                continue
            spec = find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _PatchingLoader(spec.loader, fullname)
                return spec
        return None


def install() -> None:
    """Put the finder first on :data:`sys.meta_path` (idempotent; no-op when disabled). Never raises."""
    try:
        if os.environ.get(DISABLE_ENV_VAR, "").strip().lower() not in ("", "0", "false", "no"):
            return
        if "rl_zoo3.utils" in sys.modules:
            return  # too late to hook: use sb3_qmp.zoo.register_zoo()
        if not any(isinstance(finder, ZooFinder) for finder in sys.meta_path):
            sys.meta_path.insert(0, ZooFinder())
    except Exception:  # pragma: no cover - a start-up hook must never fail
        return


install()
