"""Build hook: ship the Alembic migrations (``alembic/`` in the repository) inside the package.

The repository keeps them at the top level, where Alembic users expect them; a wheel carries a
copy as ``supplychain/_migrations`` so that ``supplychain db upgrade`` works from any install.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithMigrations(build_py):
    """build_py that also copies ``alembic/`` to ``supplychain/_migrations``."""

    def run(self) -> None:
        super().run()
        source = Path(__file__).parent / "alembic"
        target = Path(self.build_lib) / "supplychain" / "_migrations"
        if source.is_dir() and not self.editable_mode:
            shutil.copytree(
                source, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__")
            )


setup(cmdclass={"build_py": BuildWithMigrations})
