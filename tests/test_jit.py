"""The kernel build machinery: lock (stale recovery, timeout, several processes at once),
cache keys, fallback and errors, the doctor report, and compiling the CUDA sources with nvcc."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import pytest
import torch

from lightning_gans.ops import _isa, _jit, doctor, setup_filter, upfirdn2d

TINY = """
#include <pybind11/pybind11.h>
int answer() { return 42; }
PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) { m.def("answer", &answer); }
"""


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def write_lock(path: Path, pid: int, host: str | None = None, age: float = 0.0) -> None:
    path.write_text(json.dumps({"pid": pid, "host": host or socket.gethostname(), "token": "x"}))
    if age:
        t = time.time() - age
        os.utime(path, (t, t))


def test_stale_lock_of_dead_process_is_removed(tmp_path):
    lock = tmp_path / "a.lock"
    write_lock(lock, dead_pid())
    t0 = time.monotonic()
    with _jit.BuildLock(lock, timeout=10) as held:
        assert held.token in lock.read_text()
    assert time.monotonic() - t0 < 5
    assert not lock.exists()  # released


def test_unrefreshed_lock_from_another_host_is_removed(tmp_path):
    """A lock nobody refreshed for longer than stale_after is taken over at once (its pid means
    nothing here: it is another host's), not waited on until the timeout."""
    lock = tmp_path / "b.lock"
    write_lock(lock, os.getpid(), host="some-other-node", age=600)  # a live pid on this host
    t0 = time.monotonic()
    with _jit.BuildLock(lock, timeout=10, stale_after=60) as held:
        assert time.monotonic() - t0 < 5
        assert json.loads(lock.read_text())["token"] == held.token  # ours now, not the old one
    assert not lock.exists()  # the stale lock is gone and ours was released
    # The same lock refreshed recently is a live holder's: waited for, then a timeout.
    write_lock(lock, 1, host="some-other-node", age=1)
    with pytest.raises(_jit.LockTimeout, match="some-other-node"):
        _jit.BuildLock(lock, timeout=0.5, stale_after=60).acquire()
    assert lock.exists()


def test_live_lock_is_waited_for_then_times_out(tmp_path):
    lock = tmp_path / "c.lock"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        write_lock(lock, sleeper.pid)
        t0 = time.monotonic()
        with pytest.raises(_jit.LockTimeout, match=str(sleeper.pid)):
            _jit.BuildLock(lock, timeout=1.0).acquire()
        assert 1.0 <= time.monotonic() - t0 < 5
        assert lock.exists()  # a live holder's lock is never taken away
    finally:
        sleeper.kill()
        sleeper.wait()
    with _jit.BuildLock(lock, timeout=10):  # its holder is gone now
        pass


def test_holder_refreshes_its_lock(tmp_path):
    lock = tmp_path / "d.lock"
    with _jit.BuildLock(lock, stale_after=0.4):
        t = time.time() - 100
        os.utime(lock, (t, t))
        time.sleep(0.5)
        assert time.time() - lock.stat().st_mtime < 0.4


def tiny_spec(tmp_path: Path, source: str = TINY) -> _jit.ExtensionSpec:
    src = tmp_path / "tiny.cpp"
    src.write_text(source)
    return _jit.ExtensionSpec("lg_tiny", (src,))


def test_two_processes_building_at_once_both_load(tmp_path):
    """Both start the build at the same moment: one compiles, the other waits and loads."""
    spec = tiny_spec(tmp_path)
    root = tmp_path / "cache"
    # A torch build lock left behind by a killed build must not stop us (torch 2.13 hangs on it).
    (_jit.build_dir(spec, root)).mkdir(parents=True)
    (_jit.build_dir(spec, root) / "lock").write_text("")
    script = textwrap.dedent(f"""
        import json, os, sys, time
        from pathlib import Path
        from lightning_gans.ops import _jit
        barrier = Path({str(tmp_path)!r})
        (barrier / f"ready-{{os.getpid()}}").touch()
        while len(list(barrier.glob("ready-*"))) < 2:
            time.sleep(0.01)
        spec = _jit.ExtensionSpec("lg_tiny", (Path({str(spec.sources[0])!r}),))
        module, built = _jit.build_or_load(spec, root=Path({str(root)!r}), timeout=600)
        print(json.dumps({{"built": built, "answer": module.answer()}}))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert [r["answer"] for r in results] == [42, 42]
    assert sorted(r["built"] for r in results) == [False, True]
    assert _jit.is_built(spec, root)
    assert not list(root.glob("*.lock"))


def test_failed_build_names_the_compiler_log(tmp_path):
    spec = tiny_spec(tmp_path, TINY.replace("return 42;", "return undeclared_thing;"))
    with pytest.raises(_jit.BuildError, match="compiler output: ") as info:
        _jit.build_or_load(spec, root=tmp_path / "cache")
    log = Path(str(info.value).rsplit("compiler output: ", 1)[1])
    assert log.is_file() and "undeclared_thing" in log.read_text()
    assert "undeclared_thing" in str(info.value)  # the first error line is in the message


def test_cache_key_follows_sources_and_arch(tmp_path):
    a = tiny_spec(tmp_path)
    b = _jit.ExtensionSpec("lg_tiny", a.sources, arch="8.0")
    assert a.key != b.key
    key = a.key
    a.sources[0].write_text(TINY.replace("42", "43"))
    assert _jit.ExtensionSpec("lg_tiny", a.sources).key != key
    assert _jit.spec_for("cpu").key == _jit.spec_for("cpu").key


def test_cpu_isa_override_enters_flags_and_key(monkeypatch):
    """LG_CPU_ISA picks the vector ISA of the CPU build: its flags and cache key follow it; an
    unknown name, or an ISA the CPU lacks (the build would crash on an illegal instruction), is
    a BuildError naming the variable."""
    have = _isa.detected_isa()
    monkeypatch.delenv("LG_CPU_ISA", raising=False)
    default = _jit.spec_for("cpu")
    assert default.isa == have and not set(default.cflags) & {"-mno-avx512f", "-mno-avx2"}
    monkeypatch.setenv("LG_CPU_ISA", have.upper())
    assert _jit.spec_for("cpu").key == default.key
    lower = _isa.CPU_ISAS[_isa.CPU_ISAS.index(have) + 1:]
    for isa in lower:
        monkeypatch.setenv("LG_CPU_ISA", isa)
        spec = _jit.spec_for("cpu")
        assert spec.isa == isa and spec.key != default.key
        assert "-mno-avx512f" in spec.cflags
        assert ("-mno-avx2" in spec.cflags) == (isa == "generic")
    for bad in ("sse9", *_isa.CPU_ISAS[:_isa.CPU_ISAS.index(have)]):
        monkeypatch.setenv("LG_CPU_ISA", bad)
        with pytest.raises(_jit.BuildError, match="LG_CPU_ISA"):
            _jit.spec_for("cpu")


def test_missing_compiler_warns_once_and_falls_back(tmp_path, monkeypatch):
    monkeypatch.setenv("LG_EXTENSIONS_DIR", str(tmp_path))
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-c++"))
    monkeypatch.delenv("LG_OPS", raising=False)
    _jit.forget_loaded()
    try:
        x, f = torch.randn(1, 2, 8, 8), setup_filter([1, 3, 3, 1])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            y1 = upfirdn2d(x, f, up=2)
            y2 = upfirdn2d(x, f, down=2)
        fallbacks = [w for w in caught if issubclass(w.category, _jit.KernelFallbackWarning)]
        assert len(fallbacks) == 1 and "no-such-c++" in str(fallbacks[0].message)
        torch.testing.assert_close(y1, upfirdn2d(x, f, up=2, impl="ref"))
        assert y2.shape == (1, 2, 3, 3)
        with pytest.raises(_jit.BuildError, match="no C\\+\\+ compiler"):
            upfirdn2d(x, f, impl="compiled")
    finally:
        _jit.forget_loaded()  # later tests load the real kernels again


def test_doctor_reports_without_building(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LG_EXTENSIONS_DIR", str(tmp_path))
    assert doctor.report() == 0
    out = capsys.readouterr().out
    assert str(tmp_path) in out and "torch" in out and "C++ compiler" in out
    isa_line = next(ln for ln in out.splitlines() if ln.startswith("CPU ISA"))
    assert f"{_isa.detected_isa()} (CPU); kernels target {_isa.target_isa()}" in isa_line
    rows = [ln.split() for ln in out.splitlines() if ln.startswith(("cpu ", "cuda "))]
    assert {(r[0], r[1]) for r in rows} == {(d, o) for d in ("cpu", "cuda") for o in doctor.OPS}
    assert not list(tmp_path.iterdir())  # nothing was built
    monkeypatch.setenv("LG_OPS", "ref")
    doctor.report()
    assert "LG_OPS=ref" in capsys.readouterr().out


def nvcc_available() -> bool:
    home = _jit.cuda_home()
    nvcc = Path(home) / "bin" / "nvcc" if home else None
    return nvcc is not None and nvcc.is_file() and shutil.which("c++") is not None


def test_cuda_sources_compile(monkeypatch):
    """nvcc compiles csrc/*.cu and the CUDA binding (no GPU needed); the module imports.
    Skips without nvcc, unless LG_REQUIRE_NVCC=1 (CI), where a missing nvcc fails."""
    if torch.version.cuda is None or not nvcc_available():
        if os.environ.get("LG_REQUIRE_NVCC") == "1":
            pytest.fail(f"LG_REQUIRE_NVCC=1 but nvcc was not found (CUDA_HOME={_jit.cuda_home()}, "
                        f"torch CUDA {torch.version.cuda})")
        pytest.skip("nvcc not found")
    if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
        monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "9.0")  # one arch: CI checks that the sources compile
    spec = _jit.spec_for("cuda")
    assert "upfirdn2d_tiled.cu" in {s.name for s in spec.sources}  # the opt-in tiled kernel
    module, _ = _jit.build_or_load(spec)  # BuildError carries nvcc's errors
    assert callable(module.upfirdn2d) and callable(module.upfirdn2d_tiled) and callable(module.bias_act)
