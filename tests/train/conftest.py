"""Fixtures of the training tests (the tiny config lives in tiny.py, importable by name)."""

import pytest
from tiny import TINY

from fourdcontrast.train.config import config_from_dict


@pytest.fixture
def tiny_config():
    return config_from_dict(TINY, "tiny")
