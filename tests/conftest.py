import os
import sys

# Tests import the package from the checkout without installation side effects.
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), '..')))

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _fresh_mmengine_loggers():
    """Drop mmengine's process-wide singletons after each test.

    An MMLogger keeps the stdout/stderr it saw when created; under pytest that
    is the previous test's capture file, closed once that test ends, so a later
    test's log line would hit a closed file ('I/O operation on closed file').
    Visualizer and MessageHub instances are keyed by experiment name (config
    name + second): two runners built within one second would share them and
    write scalars into the first one's work dir. One process = one run in real
    use, so only tests need this.
    """
    yield
    try:
        from mmengine.logging import MessageHub, MMLogger
        from mmengine.visualization import Visualizer
    except ImportError:
        return
    for vis in list(Visualizer._instance_dict.values()):
        vis.close()
    Visualizer._instance_dict.clear()
    MessageHub._instance_dict.clear()
    for logger in list(MMLogger._instance_dict.values()):
        for h in list(logger.handlers):
            logger.removeHandler(h)
            h.close()
    MMLogger._instance_dict.clear()
