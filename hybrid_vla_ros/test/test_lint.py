"""Lint at ROS settings (99 columns): ruff with pyflakes, pycodestyle, import order."""
import os
import shutil
import subprocess

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))


def test_ruff_clean():
    ruff = shutil.which('ruff')
    if ruff is None:
        pytest.fail('ruff is not installed (it is pinned in requirements/python.txt)')
    result = subprocess.run([ruff, 'check', '--config', os.path.join(REPO, 'ruff.toml'),
                             os.path.join(REPO, 'hybrid_vla_ros')],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
