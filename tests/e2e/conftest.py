"""Shared fixtures of the end-to-end tests: the real `sipp` binary and the tiny models."""
import os
import pathlib
import subprocess

import pytest

BIN_DIR = pathlib.Path(os.environ.get("SIPP_BIN_DIR", pathlib.Path(__file__).parents[2] / "build/bin"))
MODELS = pathlib.Path(os.environ.get("SIPP_TEST_MODELS_DIR", pathlib.Path(__file__).parents[3] / "shared/models"))
CHAT_MODEL = MODELS / "tinystories-instruct-3m-soda-chat-Q4_0.gguf"
STORY_MODEL = MODELS / "stories260K.gguf"


@pytest.fixture
def models_dir(tmp_path):
    """A models directory holding both tiny models (as symlinks)."""
    d = tmp_path / "models"
    d.mkdir()
    for m in (CHAT_MODEL, STORY_MODEL):
        (d / m.name).symlink_to(m)
    return d


@pytest.fixture
def sipp(models_dir):
    """Runs build/bin/sipp with a clean environment pointing at `models_dir`."""

    def run(*args, env=None, timeout=120):
        e = {k: v for k, v in os.environ.items() if not k.startswith("SIPP_")}
        e["SIPP_MODELS_DIR"] = str(models_dir)
        e.update(env or {})
        return subprocess.run([str(BIN_DIR / "sipp"), *args], capture_output=True, text=True,
                              env=e, timeout=timeout)

    return run
