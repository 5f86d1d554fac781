"""Peak memory of the jobs (issue 25): each way of holding less leaves every value as it was."""

import subprocess
import sys

import numpy as np
import pytest

# Frees 64 blocks of 4 MiB that sit below a live one in the heap, and prints how
# many MiB of resident memory that returned to the system.
FREE_BLOCKS = r"""
import ctypes, sys
from playpen_attribution.core.smk import map_large_allocations
if sys.argv[1] == "mapped":
    assert map_large_allocations()
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096
size = 4 << 20
libc.free(libc.malloc(size))  # glibc's default then serves blocks of this size from its heap
blocks = [libc.malloc(size) for _ in range(64)]
for block in blocks:
    ctypes.memset(block, 1, size)
above = libc.malloc(size)  # live, at the heap's top: the heap cannot shrink below it
before = rss()
for block in blocks:
    libc.free(block)
print((before - rss()) / 2**20)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc and /proc")
def test_freed_large_blocks_leave_the_process_only_with_map_large_allocations():
    """run_step's setting: without it glibc keeps 256 MiB of freed blocks resident."""

    def released_mib(mode):
        out = subprocess.run(
            [sys.executable, "-c", FREE_BLOCKS, mode], capture_output=True, text=True, check=True
        )
        return float(out.stdout)

    assert released_mib("default") < 32
    assert released_mib("mapped") > 200


def test_run_step_sets_the_threshold_before_the_body(monkeypatch, tmp_path):
    from playpen_attribution.core import smk

    calls = []
    monkeypatch.setattr(smk, "map_large_allocations", lambda: calls.append("mapped"))
    smk.run_step("step", [str(tmp_path / "step.log")], [], lambda: calls.append("body"))
    assert calls == ["mapped", "body"]
    calls.clear()
    smk.run_step("sft", [str(tmp_path / "sft.log")], [], lambda: calls.append("body"), map_allocations=False)
    assert calls == ["body"]


@pytest.mark.parametrize("quant", ["Q4_K", "Q6_K", "Q8_0", "Q5_0"])
def test_dequantising_group_by_group_into_the_output_gives_gguf_s_bytes(quant):
    import gguf
    import gguf.quants

    from playpen_attribution.sft.models import _grouped_rows_into_output

    qtype = gguf.GGMLQuantizationType[quant]
    block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
    rng = np.random.default_rng(0)
    # 37 rows (groups of 16 and a remainder) of 2 blocks; random bytes, finite scales
    data = rng.integers(0, 256, size=(37, 2 * type_size), dtype=np.uint8)
    if quant in ("Q8_0", "Q5_0"):  # the block's first 2 bytes are its fp16 scale
        data.reshape(37, 2, type_size)[..., :2] = np.frombuffer(np.float16(0.01).tobytes(), np.uint8)
    expected = gguf.quants.dequantize(data, qtype)
    from unittest import mock

    with mock.patch.object(gguf.quants, "_apply_over_grouped_rows", _grouped_rows_into_output):
        got = gguf.quants.dequantize(data, qtype)
    assert got.shape == expected.shape == (37, 2 * block_size)
    assert got.dtype == expected.dtype and got.tobytes() == expected.tobytes()
    assert got.flags.owndata  # so that transformers' copy can be skipped


def test_only_a_fresh_array_skips_the_copy():
    from playpen_attribution.sft.models import _copy_unless_fresh

    fresh = np.arange(6, dtype=np.float32)
    assert _copy_unless_fresh(fresh) is fresh
    view = fresh.reshape(2, 3)[:, :2]
    read_only = np.arange(3.0)
    read_only.setflags(write=False)
    for array in (view, read_only, fresh.reshape(2, 3)):
        copied = _copy_unless_fresh(array)
        assert copied is not array and np.array_equal(copied, array) and copied.flags.owndata


def test_the_shared_gguf_reader_reads_what_gguf_reads(tmp_path):
    """One reader over a plain array (_plain_memmap) sees the header and tensors of one
    over np.memmap."""
    import gguf

    from playpen_attribution.sft.models import _one_gguf_parse

    path = tmp_path / "small.gguf"
    writer = gguf.GGUFWriter(str(path), "gemma3")
    writer.add_array("tokenizer.ggml.tokens", ["<pad>", "hello", "wörld"] * 50)
    writer.add_uint32("gemma3.block_count", 2)
    weights = np.arange(24, dtype=np.float32).reshape(4, 6)
    writer.add_tensor("token_embd.weight", weights)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    def contents(reader):
        fields = {name: [bytes(part) for part in field.parts] for name, field in reader.fields.items()}
        tensors = {t.name: (t.tensor_type, np.array(t.data).tobytes()) for t in reader.tensors}
        return fields, tensors

    expected = contents(gguf.GGUFReader(path))
    with _one_gguf_parse() as reads:
        reader = gguf.GGUFReader(path)
        assert type(reader.data) is np.ndarray and not reader.data.flags.writeable
        assert contents(reader) == expected
        assert gguf.GGUFReader(path) is reader
    assert reads == {"parsed": 1, "read": 2}


def test_numpy_stand_in_serves_its_replacements_even_falsy_ones_and_numpy_otherwise():
    from playpen_attribution.sft.models import _NumpyWith

    stand_in = _NumpyWith(copy=None, memmap=len)
    assert stand_in.copy is None and stand_in.memmap is len
    assert stand_in.float32 is np.float32
