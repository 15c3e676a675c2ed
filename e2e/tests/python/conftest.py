"""Shared fixtures for the Python-side tests: the local test ground
(e2e/stack up) as the Rust tests see it, read from e2e/.stack/env."""

import os
import pathlib
import socket

import pytest

E2E_DIR = pathlib.Path(__file__).resolve().parents[2]
ENV_FILE = pathlib.Path(os.environ.get("MCPK_STACK_ENV", E2E_DIR / ".stack" / "env"))


def read_stack_env() -> dict[str, str]:
    if not ENV_FILE.exists():
        pytest.fail(f"the test ground is not up ({ENV_FILE} is missing): run `e2e/stack up`", pytrace=False)
    env = {}
    for line in ENV_FILE.read_text().splitlines():
        if line.startswith("export ") and "=" in line:
            key, value = line[len("export "):].split("=", 1)
            env[key] = value
    return env


@pytest.fixture(scope="session")
def stack_env() -> dict[str, str]:
    return read_stack_env()


@pytest.fixture
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
