"""Latency statistics, timing loops, memory and machine facts (fast, no TensorFlow)."""

from __future__ import annotations

import sys
import time

import numpy as np
import pytest

from deeplab_edge.benchmarks import sysinfo
from deeplab_edge.benchmarks.timing import (
    measure_peak_rss,
    peak_rss_mb,
    peak_rss_source,
    rss_mb,
    time_callable,
    time_pipeline,
)
from deeplab_edge.errors import UserError
from deeplab_edge.runtime.stages import LatencyStats, latency_stats, percentile
from deeplab_edge.runtime.stages import stage_stats as summarize


def test_latency_stats_known_numbers_match_numpy():
    samples_ns = [ms * 1_000_000 for ms in range(1, 101)]  # 1..100 ms
    s = latency_stats(samples_ns[::-1])  # order must not matter
    assert s.runs == 100
    assert s.p50_ms == pytest.approx(50.5)
    assert s.p90_ms == pytest.approx(90.1)
    assert s.p99_ms == pytest.approx(99.01)
    ms = np.arange(1, 101, dtype=float)
    for q, got in ((50, s.p50_ms), (90, s.p90_ms), (99, s.p99_ms)):
        assert got == pytest.approx(np.percentile(ms, q))
    assert s.mean_ms == pytest.approx(50.5)
    assert s.std_ms == pytest.approx(np.std(ms, ddof=1))
    assert (s.min_ms, s.max_ms) == (1.0, 100.0)
    assert s.fps == pytest.approx(1000 / 50.5)
    assert s.outliers == 0 and s.outlier_note == ""


def test_percentile_random_matches_numpy():
    rng = np.random.default_rng(0)
    values = sorted(rng.lognormal(size=37).tolist())
    for q in (0, 1, 25, 50, 73.5, 90, 99, 100):
        assert percentile(values, q) == pytest.approx(np.percentile(values, q))


def test_outliers_are_counted_not_clipped():
    samples = [10_000_000] * 50 + [500_000_000]  # one 500 ms hiccup among 10 ms runs
    s = latency_stats(samples)
    assert s.outliers == 1 and "1 of 51" in s.outlier_note
    assert s.max_ms == 500.0 and s.mean_ms > 10.0


def test_single_sample_and_round_trip():
    s = latency_stats([2_000_000])
    assert (s.p50_ms, s.p99_ms, s.std_ms, s.runs) == (2.0, 2.0, 0.0, 1)
    assert LatencyStats.from_dict(s.to_dict()) == s


def test_latency_stats_rejects_empty_and_negative():
    with pytest.raises(UserError, match="received 0 samples"):
        latency_stats([])
    with pytest.raises(UserError, match=">= 0 ns"):
        latency_stats([5, -3])


def test_summarize_stages():
    st = summarize({"pre": [1_000_000] * 3, "infer": [4_000_000] * 3, "post": None})
    assert st.pre_ms == 1.0 and st.infer.p50_ms == 4.0 and st.post is None
    assert st.pre_post_ms == 1.0
    assert st.to_dict()["post"] is None
    assert summarize({"inference": [2_000_000]}).infer.p50_ms == 2.0
    with pytest.raises(UserError, match="Unknown timing stages"):
        summarize({"preprocess": [1]})


def test_time_callable_honours_min_runs():
    calls = []
    samples = time_callable(lambda: calls.append(1), warmup=3, min_runs=25, min_time_s=0.0)
    assert len(samples) == 25 and len(calls) == 28
    assert all(isinstance(s, int) and s >= 0 for s in samples)


def test_time_callable_honours_min_time():
    start = time.perf_counter()
    samples = time_callable(lambda: time.sleep(0.001), warmup=0, min_runs=2, min_time_s=0.05)
    assert time.perf_counter() - start >= 0.05
    assert 2 < len(samples) < 60  # a 1 ms step: time (not runs) decided, and it stopped soon after


def test_time_callable_max_runs_caps():
    assert len(time_callable(lambda: None, warmup=0, min_runs=5, min_time_s=60.0, max_runs=7)) == 7


def test_time_callable_measures_sleep():
    samples = time_callable(lambda: time.sleep(0.002), warmup=1, min_runs=5, min_time_s=0.0)
    assert latency_stats(samples).p50_ms >= 1.9


@pytest.mark.parametrize("kw, match", [
    ({"warmup": -1}, "warmup"),
    ({"min_runs": 0}, "min_runs"),
    ({"min_time_s": -1.0}, "min_time_s"),
    ({"min_runs": 10, "max_runs": 5}, "max_runs"),
])
def test_time_callable_rejects_bad_args(kw, match):
    with pytest.raises(UserError, match=match):
        time_callable(lambda: None, **kw)


def test_time_pipeline_times_each_stage():
    out = time_pipeline(lambda: 1, lambda x: x + 1, lambda y: y * 2, warmup=1, min_runs=4, min_time_s=0.0)
    assert sorted(out) == ["infer", "post", "pre"] and all(len(v) == 4 for v in out.values())
    st = summarize(out)
    assert st.pre_ms is not None and st.post_ms is not None
    assert "post" not in time_pipeline(lambda: 1, lambda x: x, warmup=0, min_runs=2, min_time_s=0.0)


def test_memory_readings():
    assert peak_rss_source() != "unavailable"
    peak, now = peak_rss_mb(), rss_mb()
    assert peak is not None and now is not None and peak > 0 and now > 0
    if sys.platform.startswith("linux"):
        assert peak >= now * 0.99


def test_measure_peak_rss_sees_an_allocation():
    def allocate():
        a = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
        time.sleep(0.03)
        return float(a[-1])

    result, mem = measure_peak_rss(allocate, interval_s=0.005)
    assert result == 1.0
    assert mem is not None and mem.added_mb >= 48
    assert mem.peak_mb >= mem.before_mb and set(mem.to_dict()) >= {"before_mb", "peak_mb", "added_mb"}


CPUINFO_X86 = """processor\t: 0
vendor_id\t: GenuineIntel
model\t\t: 143
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512_vnni amx_tile amx_int8 amx_bf16
"""
CPUINFO_AMD = "model name\t: AMD EPYC 7B13\nflags\t\t: sse2 avx avx2 fma\n"
CPUINFO_ARM = "Features\t: fp asimd asimddp i8mm\nModel\t\t: Raspberry Pi 5 Model B Rev 1.0\n"


def test_cpu_model_and_flags_from_cpuinfo():
    assert sysinfo.cpu_model(CPUINFO_X86) == "Intel(R) Xeon(R) Platinum 8480+"
    assert sysinfo.cpu_model(CPUINFO_ARM) == "Raspberry Pi 5 Model B Rev 1.0"
    assert sysinfo.cpu_model("") != ""  # platform fallback
    isa = lambda text: {f: f in sysinfo.cpu_flags(text) for f in sysinfo.ISA_FLAGS}  # noqa: E731
    assert sysinfo.isa_summary({"isa": isa(CPUINFO_X86)}) == "AVX2+FMA+AVX512F+VNNI+AMX"
    assert sysinfo.isa_summary({"isa": isa(CPUINFO_AMD)}) == "AVX2+FMA"
    assert sysinfo.isa_summary({"isa": isa(CPUINFO_ARM)}) == "NEON+DOTPROD+I8MM"
    assert sysinfo.isa_summary({"isa": isa("flags: sse2")}) == "none"
    assert sysinfo.isa_summary({"isa": {f: None for f in sysinfo.ISA_FLAGS}}) == "unknown"
    assert sysinfo.isa_summary({}) == "unknown"


def test_machine_info_is_json_ready_and_never_imports_tensorflow():
    import json
    import subprocess

    # In a fresh interpreter where importing TensorFlow or Keras raises: machine_info and the bench
    # report modules must not need them (versions are read from package metadata).
    code = (
        "import importlib.abc, sys\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('tensorflow', 'tf_keras', 'keras'):\n"
        "            raise ImportError(name + ' blocked')\n"
        "sys.meta_path.insert(0, Block())\n"
        "from deeplab_edge.benchmarks import sysinfo, report, results, budget, worker\n"
        "import json; print(json.dumps(sysinfo.machine_info()['versions']))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "tensorflow" in json.loads(proc.stdout.strip().splitlines()[-1])
    info = sysinfo.machine_info()
    json.dumps(info)
    assert {"cpu_model", "isa", "isa_summary", "cpu_count", "cpu_affinity", "os", "python", "versions",
            "ort_providers", "gpus", "date"} <= set(info)
    assert set(info["versions"]) >= {"numpy", "onnxruntime", "ai-edge-litert", "tensorflow", "tf-keras",
                                     "onnx", "tf2onnx"}
    assert info["versions"]["numpy"] == np.__version__
    assert isinstance(info["gpus"], list) and info["date"].endswith("+00:00")
    assert info["isa_summary"] == sysinfo.isa_summary(info)
    line = sysinfo.machine_summary(info, threads=2)
    assert info["cpu_model"] in line and "2 threads" in line
