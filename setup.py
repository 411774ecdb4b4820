"""Build hook: install ``sb3_qmp_zoo.pth`` at the root of site-packages (regular and editable installs).

All metadata lives in pyproject.toml. The ``.pth`` file makes the literal ``python -m rl_zoo3.train
--algo qmp`` work: it imports the tiny ``sb3_qmp_zoo_hook`` module (see its docstring).
"""

from __future__ import annotations

import os

from setuptools import setup
from setuptools.command.build_py import build_py

PTH_FILE = "sb3_qmp_zoo.pth"
HERE = os.path.dirname(os.path.abspath(__file__))


class BuildPyWithPth(build_py):
    """``build_py`` that also ships the start-up ``.pth`` file next to the top-level modules."""

    def run(self) -> None:
        super().run()
        source = os.path.join(HERE, PTH_FILE)
        self.copy_file(source, os.path.join(self.build_lib, PTH_FILE), preserve_mode=False)
        if getattr(self, "editable_mode", False):
            # Editable wheels only contain what is written to the wheel folder (the `install_lib`
            # that `editable_wheel` configured), not the temporary build_lib.
            install_lib = self.get_finalized_command("install").install_lib
            if install_lib:
                self.copy_file(source, os.path.join(install_lib, PTH_FILE), preserve_mode=False)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        return [*super().get_outputs(include_bytecode), os.path.join(self.build_lib, PTH_FILE)]


setup(cmdclass={"build_py": BuildPyWithPth})
