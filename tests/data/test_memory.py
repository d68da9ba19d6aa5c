import platform

import numpy as np
import pytest

from fourdcontrast.data.memory import retain_freed_memory


def test_bad_thresholds_raise():
    with pytest.raises(ValueError, match="trim_threshold"):
        retain_freed_memory(trim_threshold=-1)
    with pytest.raises(ValueError, match="mmap_threshold"):
        retain_freed_memory(mmap_threshold=0)
    with pytest.raises(ValueError, match="mmap_threshold"):
        retain_freed_memory(mmap_threshold=1 << 40)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_retain_freed_memory_takes_effect_on_glibc():
    assert retain_freed_memory() is True
    # arrays still allocate, free and reuse memory correctly afterwards
    for _ in range(3):
        a = np.arange(1 << 20, dtype=np.int64)
        assert a[-1] == (1 << 20) - 1
        del a
