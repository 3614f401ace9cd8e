"""The runnable examples in examples/ run as written and do what they say."""
import runpy
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.slow
def test_own_loop_example_finds_the_injected_label_errors():
    main = runpy.run_path(str(EXAMPLES / "own_loop.py"))["main"]
    result = main()
    assert 1 <= result["start_epoch"] < 30 and 0 < result["momentum"] <= 0.6
    assert result["precision"] > 0.8 and result["recall"] > 0.8
