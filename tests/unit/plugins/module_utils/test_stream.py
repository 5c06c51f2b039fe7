from __future__ import annotations

import gzip
import os

import pytest
import zstandard

from ansible_collections.locksmith.ops.plugins.module_utils import _stream
from ansible_collections.locksmith.ops.plugins.module_utils._storage import StorageError


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("none", ("none", 0)),
        ("gzip", ("gzip", 6)),
        ("gzip:9", ("gzip", 9)),
        ("zstd", ("zstd", 3)),
        ("lz4:2", ("lz4", 2)),
    ],
)
def test_parse_compression(value, expected):
    assert _stream.parse_compression(value) == expected


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("zstd:0", "out of range"),
        ("gzip:10", "out of range"),
        ("none:1", "out of range"),
        ("brotli", "not valid"),
        ("zstd:3; rm -rf /", "not valid"),
        ("", "not valid"),
    ],
)
def test_bad_compression_names_the_option(value, match):
    with pytest.raises(_stream.CompressionError, match=match) as err:
        _stream.parse_compression(value)
    assert err.value.details["option"] == "compression"


def test_plan_prefers_pg_dump_and_streams_zstd_for_old_versions():
    assert _stream.plan_compression("zstd:5", 15)["by"] == "locksmith"
    assert _stream.plan_compression("zstd:5", 15)["pg_dump_args"] == ["-Z", "0"]
    assert _stream.plan_compression("zstd:5", 16)["pg_dump_args"] == ["-Z", "zstd:5"]
    assert _stream.plan_compression("gzip:2", 15)["pg_dump_args"] == ["-Z", "2"]
    assert _stream.plan_compression("none", 15)["suffix"] == ""
    assert _stream.plan_compression("lz4", 17)["pg_dump_args"] == ["-Z", "lz4:1"]
    with pytest.raises(_stream.CompressionError, match="needs pg_dump 16"):
        _stream.plan_compression("lz4", 15)


@pytest.mark.parametrize(("method", "suffix", "reader"), [("zstd", ".zst", None), ("gzip", ".gz", gzip.decompress)])
def test_compressors_round_trip_and_match_the_standard_tools(method, suffix, reader):
    data = os.urandom(1000) * 50
    stage = _stream.compressor(method, 3)
    packed = stage.feed(data[:20000]) + stage.feed(data[20000:]) + stage.finish()
    assert len(packed) < len(data)
    if reader is None:
        reader = zstandard.ZstdDecompressor().decompressobj().decompress
    assert reader(packed) == data
    back = _stream.decompressor(suffix)
    assert back.feed(packed) + back.finish() == data


@pytest.mark.parametrize("threads", [0, 1, 2])
def test_zstd_threads_give_one_standard_frame(threads):
    # Several workers split the input into jobs; the output must still be one stream any zstd reads.
    data = os.urandom(4096) * 4096  # 16 MiB: more than one zstd job at level 3
    stage = _stream.compressor("zstd", 3, threads)
    packed = b"".join(stage.feed(data[i : i + (1 << 20)]) for i in range(0, len(data), 1 << 20)) + stage.finish()
    assert len(packed) < len(data) // 10
    assert zstandard.ZstdDecompressor().decompressobj().decompress(packed) == data


class FakeSink:
    def __init__(self, fail_at=None, size_delta=0):
        self.data = bytearray()
        self.fail_at = fail_at
        self.size_delta = size_delta
        self.aborted = False

    def write(self, data):
        if self.fail_at is not None and len(self.data) + len(data) > self.fail_at:
            raise StorageError("disk full")
        self.data += data

    def close(self):
        return {"size": len(self.data) + self.size_delta}

    def abort(self):
        self.aborted = True


def test_tee_drops_a_failing_sink_and_keeps_the_others():
    good, bad, liar = FakeSink(), FakeSink(fail_at=10), FakeSink(size_delta=-1)
    tee = _stream.Tee({0: good, 1: bad, 2: liar})
    pipeline = _stream.Pipeline([_stream.compressor("none", 0), None], tee)
    for _round in range(5):
        pipeline.push(b"abcdef")
    pipeline.finish()
    results = tee.close()
    assert sorted(results) == [0] and bytes(good.data) == b"abcdef" * 5
    assert bad.aborted and str(tee.failures[1]) == "disk full"
    assert "differs" in str(tee.failures[2])
    assert tee.size == 30 and len(tee.hexdigest) == 64 and tee.alive


def test_pipeline_finishes_every_stage_in_order():
    tee = _stream.Tee({0: FakeSink()})
    pipeline = _stream.Pipeline([_stream.compressor("gzip", 1), _stream.compressor("zstd", 1)], tee)
    pipeline.push(b"x" * 1000)
    pipeline.finish()
    tee.close()
    stored = bytes(tee.sinks[0].data)
    inner = zstandard.ZstdDecompressor().decompressobj().decompress(stored)
    assert gzip.decompress(inner) == b"x" * 1000


def test_threaded_tee_writes_in_order_and_reraises_a_crash():
    sink = FakeSink()
    tee = _stream.Tee({0: sink}, threaded=True)
    for index in range(50):
        tee.write(b"%03d" % index)
    assert tee.close() == {0: {"size": 150}} and bytes(sink.data) == b"".join(b"%03d" % i for i in range(50))

    class Broken(FakeSink):
        def write(self, data):
            raise RuntimeError("bug")

    broken = _stream.Tee({0: Broken()}, threaded=True)
    broken.write(b"x")
    with pytest.raises(RuntimeError, match="bug"):
        broken.abort()
