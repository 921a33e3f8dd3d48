"""TFRecord files of ``tf.train.Example`` protos, encoded by hand (no TensorFlow).

The standard pretraining schema has only int64 and float lists, so the protobuf
wire format is a few nested length-delimited fields. CRC32C (masked, as TFRecord
requires) comes from ``google-crc32c``'s C extension, else from the copy of absl
inside TensorFlow's shared library through ctypes, else from a pure-Python table
(slow but correct). ``tests/data`` checks TensorFlow parses what we write.

``encode_batch`` writes a whole Batch of instances: the varints of every id are
computed in numpy at once, and each record is then a join of a few byte strings
whose headers depend only on lengths (cached), so no Python runs per token.
``encode_block`` is what prepare-data calls: the compiled core's ``encode_records``
(``_native.c``, the same bytes with no Python step per record) where it is built,
else ``encode_batch`` joined.
"""

from __future__ import annotations

import ctypes
import functools
import glob
import logging
import os
import struct
import sysconfig

import numpy as np

from bert_trainer.prep.native import core

log = logging.getLogger(__name__)

_POLY = 0x82F63B78
_TABLE = []
for _n in range(256):
    _c = _n
    for _ in range(8):
        _c = (_c >> 1) ^ _POLY if _c & 1 else _c >> 1
    _TABLE.append(_c)


def crc32c_python(data: bytes) -> int:
    crc = 0xFFFFFFFF
    table = _TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


class _StringView(ctypes.Structure):  # libstdc++ std::string_view: {size_t len, const char* ptr}
    _fields_ = [("n", ctypes.c_size_t), ("p", ctypes.c_char_p)]


def _absl_crc32c():
    """absl::crc_internal::ExtendCrc32cInternal from libtensorflow_framework, or None."""
    paths = []
    for base in {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}:
        paths += glob.glob(os.path.join(base, "tensorflow", "libtensorflow_framework.so*"))
    for path in paths:
        try:
            lib = _quiet_load(path)
            names = _candidate_symbols(path)
        except (OSError, ValueError) as exc:  # unreadable, not a library for this machine, empty (mmap)
            log.debug("event=crc32c_probe path=%s error=%s", path, exc)
            continue
        for name in names:
            fn = getattr(lib, name, None)
            if fn is None:
                continue
            fn.restype, fn.argtypes = ctypes.c_uint32, [ctypes.c_uint32, _StringView]

            def crc(data: bytes, _fn=fn) -> int:
                return _fn(0, _StringView(len(data), data))

            if crc(b"123456789") == 0xE3069283 and crc(b"") == 0:
                return crc
    return None


def _quiet_load(path: str):
    """Load the library with stderr silenced (its static initialisers log a oneDNN notice).

    TF_CPP_MIN_LOG_LEVEL is defaulted first, as ``bert_trainer.cli`` does before a task imports
    TensorFlow: the library reads it once, and this load may come before that import."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        return ctypes.CDLL(path)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _candidate_symbols(path: str) -> list[str]:
    """Mangled names of ExtendCrc32cInternal for absl LTS versions found in the library."""
    import mmap  # noqa: PLC0415

    names: list[str] = []
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        marker = b"crc_internal20ExtendCrc32cInternal"
        pos = mm.find(marker)
        while pos != -1 and len(names) < 4:
            start = mm.rfind(b"\0", 0, pos) + 1
            end = mm.find(b"\0", pos)
            names.append(mm[start:end].decode("ascii", "replace"))
            pos = mm.find(marker, end)
    return [n for n in names if n.startswith("_ZN")]


def _google_crc32c():
    """google-crc32c's C implementation, or None (not installed, or only its pure-Python fallback)."""
    try:
        import google_crc32c  # noqa: PLC0415
    except ImportError:
        return None
    return google_crc32c.value if getattr(google_crc32c, "implementation", None) == "c" else None


@functools.cache
def crc32c_implementation():
    """The fastest CRC32C found, chosen on first use and kept for the process.

    Chosen lazily, not at import: probing may load TensorFlow's shared library (a few hundred
    MB mapped), which importing this module for its encoders or ``read_records`` should not
    cost. prepare-data calls it before forking its workers, so they inherit the choice."""
    compiled = core()  # (the compiled core's slicing-by-8 table, before loading TensorFlow's library to probe it)
    found = _google_crc32c() or (compiled.crc32c if compiled is not None else None) or _absl_crc32c()
    if found is None:
        log.warning("event=crc32c_fallback reason=no_native_crc32c (record writing will be slow)")
        return crc32c_python
    return found


def crc32c(data: bytes) -> int:
    """CRC32C of `data` (unmasked), with :func:`crc32c_implementation`."""
    return crc32c_implementation()(data)


def _masked(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


_HEADERS: dict[int, bytes] = {}  # record length -> its 12-byte TFRecord header (a few hundred lengths occur)
_U32 = struct.Struct("<I").pack


def frame(record: bytes) -> bytes:
    """One TFRecord: length, masked CRC of the length, data, masked CRC of the data. The header depends on the
    length only, so it is computed once per length."""
    crc = crc32c_implementation()
    header = _HEADERS.get(len(record))
    if header is None:
        length = struct.pack("<Q", len(record))
        header = _HEADERS.setdefault(len(record), length + _U32(_masked(crc(length))))
    return header + record + _U32(_masked(crc(record)))


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


#: The varints of one and two bytes (below 2**14). Not the three-byte ones too: a table of 65,536 byte strings cost
#: 18 ms at every import, a tenth of a small prepare-data run; ids above it are rare outside the tests' encoders.
_VARINTS = [bytes((i,)) for i in range(128)] + [bytes((i & 0x7F | 0x80, i >> 7)) for i in range(128, 1 << 14)]
assert all(_VARINTS[i] == _varint(i) for i in (0, 127, 128, 300, 16383))


def _v(n: int) -> bytes:
    return _VARINTS[n] if n < 16384 else _varint(n)


def _field(tag: int, payload: bytes) -> bytes:  # a length-delimited field
    return _VARINTS[(tag << 3) | 2] + _v(len(payload)) + payload


def _entry(key: bytes, feature: bytes) -> bytes:  # map<string, Feature> entry in Features
    return _field(1, _field(1, key) + _field(2, feature))


def int64_feature(values) -> bytes:
    """Feature{int64_list: Int64List{value: packed varints}} for non-negative ints."""
    varints = _VARINTS
    packed = b"".join([varints[v] if v < 16384 else _varint(v) for v in values])
    return _field(3, _field(1, packed))


def float_feature(values) -> bytes:
    return _field(2, _field(1, struct.pack(f"<{len(values)}f", *values)))


def example(features: dict[str, bytes]) -> bytes:
    """tf.train.Example from already encoded features (name -> Feature bytes)."""
    return _field(1, b"".join(_entry(k.encode(), v) for k, v in features.items()))


def pretraining_example(input_ids, input_mask, segment_ids, masked_lm_positions, masked_lm_ids,
                        masked_lm_weights, next_sentence_label: int) -> bytes:
    return example({
        "input_ids": int64_feature(input_ids),
        "input_mask": int64_feature(input_mask),
        "segment_ids": int64_feature(segment_ids),
        "masked_lm_positions": int64_feature(masked_lm_positions),
        "masked_lm_ids": int64_feature(masked_lm_ids),
        "masked_lm_weights": float_feature(masked_lm_weights),
        "next_sentence_labels": int64_feature([next_sentence_label]),
    })


def _packed(values) -> bytes:
    try:
        return b"".join(map(_VARINTS.__getitem__, values))
    except IndexError:  # an id of 2**14 or more
        return b"".join(map(_v, values))


_ONE_F, _ZERO_F = struct.pack("<f", 1.0), struct.pack("<f", 0.0)
_KEYS = {name: _VARINTS[(1 << 3) | 2] + _v(len(name)) + name.encode() for name in (
    "input_ids", "input_mask", "segment_ids", "masked_lm_positions", "masked_lm_ids", "masked_lm_weights",
    "next_sentence_labels")}


def _fast_entry(name: str, feature: bytes) -> bytes:
    body = _KEYS[name] + _field(2, feature)
    return _VARINTS[(1 << 3) | 2] + _v(len(body)) + body


def padded_pretraining_example(input_ids: list[int], segment_ids: list[int], positions: list[int],
                               labels: list[int], next_sentence_label: int, max_seq_length: int,
                               max_predictions_per_seq: int) -> bytes:
    """``pretraining_example`` of an unpadded instance, padding with zeros as bytes
    (a zero varint is one 0x00 byte): same bytes, several times faster."""
    n, k = len(input_ids), len(positions)
    pad, ppad = max_seq_length - n, max_predictions_per_seq - k
    zeros, pzeros = b"\0" * pad, b"\0" * ppad
    return _field(1, b"".join((
        _fast_entry("input_ids", _field(3, _field(1, _packed(input_ids) + zeros))),
        _fast_entry("input_mask", _field(3, _field(1, b"\1" * n + zeros))),
        _fast_entry("segment_ids", _field(3, _field(1, bytes(segment_ids) + zeros))),
        _fast_entry("masked_lm_positions", _field(3, _field(1, _packed(positions) + pzeros))),
        _fast_entry("masked_lm_ids", _field(3, _field(1, _packed(labels) + pzeros))),
        _fast_entry("masked_lm_weights", _field(2, _field(1, _ONE_F * k + _ZERO_F * ppad))),
        _fast_entry("next_sentence_labels", _field(3, _field(1, _VARINTS[next_sentence_label]))),
    )))


def varint_rows(values: np.ndarray) -> tuple[bytes, np.ndarray]:
    """The packed varints of each row of a non-negative int matrix (ids below 2**21), concatenated row
    after row, and each row's end offset in them."""
    top = int(values.max()) if values.size else 0
    if top < 1 << 7:  # one byte each (positions of a 128-token instance): nothing to compress
        return values.astype(np.uint8).tobytes(), np.arange(1, len(values) + 1, dtype=np.int64) * values.shape[1]
    if top >= 1 << 21:
        raise ValueError("an id of 2**21 or more (a vocab of over two million tokens)")
    v = values.astype(np.uint32)
    two, three = v >= 1 << 7, v >= 1 << 14
    width = 1 + two.astype(np.int64) + three
    b = np.empty(v.shape + (3,), np.uint8)
    b[..., 0] = (v & 0x7F) | (two << 7)
    b[..., 1] = ((v >> 7) & 0x7F) | (three << 7)
    b[..., 2] = v >> 14
    return b[np.arange(3) < width[..., None]].tobytes(), np.cumsum(width.sum(axis=1))


class _Entries:
    """The bytes of map entries of the pretraining schema that depend only on lengths, cached: a record
    is then a join of these and three slices of packed ids."""

    def __init__(self, max_seq_length: int, max_predictions_per_seq: int) -> None:
        s, p = max_seq_length, max_predictions_per_seq
        self.s = s
        self.heads: dict[str, dict[int, bytes]] = {name: {} for name in ("input_ids", "masked_lm_positions", "masked_lm_ids")}
        self.masks = [_fast_entry("input_mask", _field(3, _field(1, b"\1" * n + b"\0" * (s - n)))) for n in range(s + 1)]
        self.weights = [_fast_entry("masked_lm_weights", _field(2, _field(1, _ONE_F * k + _ZERO_F * (p - k))))
                        for k in range(p + 1)]
        self.labels = [_fast_entry("next_sentence_labels", _field(3, _field(1, _VARINTS[label]))) for label in (0, 1)]
        self.segments: dict[tuple[int, int], bytes] = {}

    def head(self, name: str, packed_len: int) -> bytes:
        """Everything of an int64 entry before its packed values (which are ``packed_len`` bytes)."""
        values_head = _VARINTS[(1 << 3) | 2] + _v(packed_len)  # Int64List.value, packed
        list_len = len(values_head) + packed_len
        feature_head = _VARINTS[(3 << 3) | 2] + _v(list_len)  # Feature.int64_list
        feature_len = len(feature_head) + list_len
        value_field = _VARINTS[(2 << 3) | 2] + _v(feature_len)  # the map entry's value: the Feature
        body_len = len(_KEYS[name]) + len(value_field) + feature_len
        got = _VARINTS[(1 << 3) | 2] + _v(body_len) + _KEYS[name] + value_field + feature_head + values_head
        return self.heads[name].setdefault(packed_len, got)

    def segment(self, a_len: int, n: int) -> bytes:
        got = _fast_entry("segment_ids", _field(3, _field(1, bytes(a_len + 2) + b"\1" * (n - a_len - 2) +
                                                          bytes(self.s - n))))
        return self.segments.setdefault((a_len, n), got)


@functools.lru_cache(maxsize=4)
def _entries(max_seq_length: int, max_predictions_per_seq: int) -> _Entries:
    return _Entries(max_seq_length, max_predictions_per_seq)  # one per process and record shape: caches persist


def encode_batch(batch, max_seq_length: int, max_predictions_per_seq: int) -> list[bytes]:
    """The framed TFRecords of a ``prep.instances.Batch``, in order: the same bytes as
    ``frame(padded_pretraining_example(...))`` of each instance."""
    e = _entries(max_seq_length, max_predictions_per_seq)
    ids, ids_end = varint_rows(batch.input_ids)
    pos, pos_end = varint_rows(batch.positions)
    mids, mids_end = varint_rows(batch.masked_ids)
    ids_heads, pos_heads, mids_heads = e.heads["input_ids"], e.heads["masked_lm_positions"], e.heads["masked_lm_ids"]
    masks, weights, labels, segments = e.masks, e.weights, e.labels, e.segments
    tag, framed = _VARINTS[(1 << 3) | 2], frame
    out = []
    i0 = p0 = m0 = 0
    for n, la, k, label, i1, p1, m1 in zip(batch.lengths.tolist(), batch.a_lengths.tolist(),
                                           batch.n_predictions.tolist(), batch.next_sentence_labels.tolist(),
                                           ids_end.tolist(), pos_end.tolist(), mids_end.tolist()):
        features = b"".join((
            ids_heads.get(i1 - i0) or e.head("input_ids", i1 - i0), ids[i0:i1], masks[n],
            segments.get((la, n)) or e.segment(la, n),
            pos_heads.get(p1 - p0) or e.head("masked_lm_positions", p1 - p0), pos[p0:p1],
            mids_heads.get(m1 - m0) or e.head("masked_lm_ids", m1 - m0), mids[m0:m1], weights[k], labels[label]))
        out.append(framed(tag + _v(len(features)) + features))
        i0, p0, m0 = i1, p1, m1
    return out


def encode_block(batch, max_seq_length: int, max_predictions_per_seq: int) -> bytes:
    """The framed TFRecords of a ``prep.instances.Batch`` as one bytes object, ready to write: the compiled
    core's where it is built (``prep/native.py``), else ``encode_batch``'s records joined (the same bytes)."""
    native = core()
    if native is None:
        return b"".join(encode_batch(batch, max_seq_length, max_predictions_per_seq))
    i64 = np.int64
    return native.encode_records(
        len(batch), np.ascontiguousarray(batch.input_ids, np.int32), np.ascontiguousarray(batch.lengths, i64),
        np.ascontiguousarray(batch.a_lengths, i64), np.ascontiguousarray(batch.positions, i64),
        np.ascontiguousarray(batch.masked_ids, i64), np.ascontiguousarray(batch.n_predictions, i64),
        np.ascontiguousarray(batch.next_sentence_labels, i64), max_seq_length, max_predictions_per_seq)


def read_records(path: str):
    """Yield the payloads of a TFRecord file, checking both CRCs (tests, tools)."""
    with open(path, "rb") as fh:
        data = fh.read()
    pos = 0
    while pos < len(data):
        header = data[pos:pos + 8]
        (length,) = struct.unpack("<Q", header)
        (hcrc,) = struct.unpack("<I", data[pos + 8:pos + 12])
        if hcrc != _masked(crc32c(header)):
            raise ValueError(f"{path}: bad length CRC at byte {pos}")
        record = data[pos + 12:pos + 12 + length]
        (dcrc,) = struct.unpack("<I", data[pos + 12 + length:pos + 16 + length])
        if dcrc != _masked(crc32c(record)):
            raise ValueError(f"{path}: bad data CRC at byte {pos}")
        yield record
        pos += 16 + length
