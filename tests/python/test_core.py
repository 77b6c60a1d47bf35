"""kdistill.system_info from Python, against what the machine says independently."""
import pytest

kdistill = pytest.importorskip("kdistill", reason="kdistill is not importable: build it and set PYTHONPATH=build/python")


def test_system_info_reports_the_cpus_bf16_instructions():
    flags = set()
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    want = "amx_bf16" if "amx_bf16" in flags else "avx512_bf16" if "avx512_bf16" in flags else "none"
    info = kdistill.system_info()
    assert info["cpu_bf16"] == want
    assert info["threads"] >= 1
