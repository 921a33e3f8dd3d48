/*
 * The compiled core of prepare-data: the steps that were still one Python step per instance or per word.
 *
 *   encode_records(...)  the framed TFRecords of a block of instances, as one bytes object
 *                        (prep/records.py: encode_batch, joined);
 *   pairs(...)           the packing decisions of dupe_factor passes over a shard's documents
 *                        (prep/instances.py: _pairs), drawing from the caller's random.Random;
 *   WordCache            prep/word_cache.py's cache from word to WordPiece ids, with the word split.
 *
 * Why C and why these: after numpy took the per-token work, a profile of 20 MB left a third of the CPU
 * time in joining each record's byte strings and CRCs, a quarter in splitting words and looking them up,
 * and a tenth in the packing loop. All are byte and integer work with no allocation per item, which C
 * does at memory speed. WordPiece itself stays the tokenizer's (a word not cached goes to its model).
 *
 * Same bytes as the Python code, by construction: the record layout is the one records.py writes
 * (nested length-delimited protobuf fields, TFRecord framing with masked CRC32C), and pairs() runs the
 * same loop on a copy of the Python generator's Mersenne Twister state (random.getstate()), producing
 * random() exactly as CPython does, and hands the advanced state back. tests/data/test_native.py holds
 * both paths to identical output. Nothing here is required: bert_trainer.prep.native falls back to the
 * Python code when this module is not built.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <math.h>
#include <string.h>

/* Bumped whenever a function's arguments or results change, so a stale build is not used. */
#define NATIVE_ABI 3

/* ---- CRC32C (Castagnoli), slicing by 8 ---------------------------------------------------------- */

static uint32_t crc_table[8][256];

static void crc_init(void) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc_table[0][n] = c;
    }
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = crc_table[0][n];
        for (int t = 1; t < 8; t++) {
            c = crc_table[0][c & 0xFF] ^ (c >> 8);
            crc_table[t][n] = c;
        }
    }
}

static uint32_t crc32c(const unsigned char *p, size_t n) {
    uint32_t crc = 0xFFFFFFFFu;
    while (n && ((uintptr_t)p & 7)) {
        crc = crc_table[0][(crc ^ *p++) & 0xFF] ^ (crc >> 8);
        n--;
    }
    while (n >= 8) {
        uint32_t lo, hi;
        memcpy(&lo, p, 4);
        memcpy(&hi, p + 4, 4);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        lo = __builtin_bswap32(lo);
        hi = __builtin_bswap32(hi);
#endif
        lo ^= crc;
        crc = crc_table[7][lo & 0xFF] ^ crc_table[6][(lo >> 8) & 0xFF] ^ crc_table[5][(lo >> 16) & 0xFF] ^
              crc_table[4][lo >> 24] ^ crc_table[3][hi & 0xFF] ^ crc_table[2][(hi >> 8) & 0xFF] ^
              crc_table[1][(hi >> 16) & 0xFF] ^ crc_table[0][hi >> 24];
        p += 8;
        n -= 8;
    }
    while (n--) crc = crc_table[0][(crc ^ *p++) & 0xFF] ^ (crc >> 8);
    return crc ^ 0xFFFFFFFFu;
}

static uint32_t masked_crc(const unsigned char *p, size_t n) {
    uint32_t c = crc32c(p, n);
    return ((c >> 15) | (c << 17)) + 0xA282EAD8u;
}

static PyObject *py_crc32c(PyObject *self, PyObject *args) {
    Py_buffer data;
    if (!PyArg_ParseTuple(args, "y*", &data)) return NULL;
    uint32_t c = crc32c((const unsigned char *)data.buf, (size_t)data.len);
    PyBuffer_Release(&data);
    return PyLong_FromUnsignedLong(c);
}

/* ---- protobuf pieces ---------------------------------------------------------------------------- */

static inline size_t varint_size(uint64_t v) {
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static inline unsigned char *put_varint(unsigned char *p, uint64_t v) {
    while (v >= 0x80) {
        *p++ = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    *p++ = (unsigned char)v;
    return p;
}

static inline void put_u32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

/* A length-delimited field of tag `field` holding `len` bytes: the size of its tag and length. */
static inline size_t ld_head(size_t len) { return 1 + varint_size(len); }

static inline unsigned char *put_ld_head(unsigned char *p, unsigned field, size_t len) {
    *p++ = (unsigned char)((field << 3) | 2);
    return put_varint(p, len);
}

/* The schema's feature names, in the order records.py writes them. */
enum { F_IDS, F_MASK, F_SEGMENTS, F_POSITIONS, F_MASKED_IDS, F_WEIGHTS, F_LABELS, N_FEATURES };
static const char *feature_names[N_FEATURES] = {
    "input_ids", "input_mask", "segment_ids", "masked_lm_positions", "masked_lm_ids", "masked_lm_weights",
    "next_sentence_labels"};

/* Sizes of one map entry (Features.feature) holding a list of `payload` bytes:
 * entry{key: name, value: Feature{<kind>_list: List{value: packed payload}}}. */
typedef struct {
    size_t list, feature, body, entry;
} EntrySize;

static inline EntrySize entry_size(int feature, size_t payload) {
    EntrySize s;
    size_t name = strlen(feature_names[feature]);
    s.list = ld_head(payload) + payload;                             /* List.value (packed) */
    s.feature = ld_head(s.list) + s.list;                            /* Feature.int64_list / float_list */
    s.body = ld_head(name) + name + ld_head(s.feature) + s.feature;  /* key, value */
    s.entry = ld_head(s.body) + s.body;                              /* Features.feature map entry */
    return s;
}

static inline unsigned char *put_entry_head(unsigned char *p, int feature, EntrySize s, size_t payload) {
    size_t name = strlen(feature_names[feature]);
    p = put_ld_head(p, 1, s.body);
    p = put_ld_head(p, 1, name);
    memcpy(p, feature_names[feature], name);
    p += name;
    p = put_ld_head(p, 2, s.feature);
    p = put_ld_head(p, feature == F_WEIGHTS ? 2 : 3, s.list); /* Feature: float_list = 2, int64_list = 3 */
    return put_ld_head(p, 1, payload);
}

static int get_buffer(PyObject *obj, Py_buffer *view, Py_ssize_t itemsize, Py_ssize_t count, const char *what) {
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return -1;
    if (view->itemsize != itemsize || view->len != itemsize * count) {
        PyErr_Format(PyExc_ValueError, "%s: expected %zd items of %zd bytes, got %zd bytes of %zd-byte items", what,
                     count, itemsize, view->len, view->itemsize);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* One buffer a function takes: the object, where its view goes, its item size and count, its name in errors. */
typedef struct {
    PyObject *obj;
    Py_buffer *view;
    Py_ssize_t itemsize, count;
    const char *what;
} Wanted;

/* Take each wanted buffer in order; *got counts those taken (the caller releases them), -1 on the first refusal. */
static int get_buffers(const Wanted *wanted, int n, int *got) {
    for (int i = 0; i < n; i++) {
        if (get_buffer(wanted[i].obj, wanted[i].view, wanted[i].itemsize, wanted[i].count, wanted[i].what) < 0) return -1;
        (*got)++;
    }
    return 0;
}

/* encode_records(input_ids int32[n, S], lengths int64[n], a_lengths int64[n], positions int64[n, P],
 *                masked_ids int64[n, P], n_predictions int64[n], labels int64[n], S, P) -> bytes */
static PyObject *py_encode_records(PyObject *self, PyObject *args) {
    PyObject *o_ids, *o_len, *o_alen, *o_pos, *o_mids, *o_npred, *o_labels;
    Py_ssize_t n, S, P;
    if (!PyArg_ParseTuple(args, "nOOOOOOOnn", &n, &o_ids, &o_len, &o_alen, &o_pos, &o_mids, &o_npred, &o_labels,
                          &S, &P))
        return NULL;
    if (n < 0 || S < 3 || P < 1) return PyErr_Format(PyExc_ValueError, "bad shape: n=%zd S=%zd P=%zd", n, S, P);
    Py_buffer b_ids, b_len, b_alen, b_pos, b_mids, b_npred, b_labels;
    int got = 0;
    PyObject *out = NULL;
    size_t *sizes = NULL;
    const Wanted wanted[] = {
        {o_ids, &b_ids, 4, n * S, "input_ids"},        {o_len, &b_len, 8, n, "lengths"},
        {o_alen, &b_alen, 8, n, "a_lengths"},          {o_pos, &b_pos, 8, n * P, "positions"},
        {o_mids, &b_mids, 8, n * P, "masked_ids"},     {o_npred, &b_npred, 8, n, "n_predictions"},
        {o_labels, &b_labels, 8, n, "labels"},
    };
    if (get_buffers(wanted, 7, &got) < 0) goto done;

    const int32_t *ids = b_ids.buf;
    const int64_t *len = b_len.buf, *alen = b_alen.buf, *pos = b_pos.buf, *mids = b_mids.buf;
    const int64_t *npred = b_npred.buf, *labels = b_labels.buf;

    /* First pass: check every value and size every record (3 sizes per record: packed ids, positions, masked ids). */
    sizes = PyMem_Malloc(sizeof(size_t) * 4 * (n ? n : 1));
    if (!sizes) {
        PyErr_NoMemory();
        goto done;
    }
    size_t total = 0;
    for (Py_ssize_t r = 0; r < n; r++) {
        int64_t nr = len[r], la = alen[r], k = npred[r], label = labels[r];
        if (nr < 3 || nr > S || la < 1 || la + 2 >= nr || k < 0 || k > P || (label != 0 && label != 1)) {
            PyErr_Format(PyExc_ValueError, "instance %zd: length %lld, A %lld, predictions %lld, label %lld out of range",
                         r, (long long)nr, (long long)la, (long long)k, (long long)label);
            goto done;
        }
        size_t packed[3] = {0, 0, 0};
        for (Py_ssize_t j = 0; j < S; j++) {
            int32_t v = ids[r * S + j];
            if (v < 0) {
                PyErr_Format(PyExc_ValueError, "instance %zd: negative token id %d", r, v);
                goto done;
            }
            packed[0] += varint_size((uint64_t)v);
        }
        for (Py_ssize_t j = 0; j < P; j++) {
            int64_t a = pos[r * P + j], b = mids[r * P + j];
            if (a < 0 || b < 0) {
                PyErr_Format(PyExc_ValueError, "instance %zd: negative position or id", r);
                goto done;
            }
            packed[1] += varint_size((uint64_t)a);
            packed[2] += varint_size((uint64_t)b);
        }
        size_t features = entry_size(F_IDS, packed[0]).entry + entry_size(F_MASK, (size_t)S).entry +
                          entry_size(F_SEGMENTS, (size_t)S).entry + entry_size(F_POSITIONS, packed[1]).entry +
                          entry_size(F_MASKED_IDS, packed[2]).entry + entry_size(F_WEIGHTS, 4 * (size_t)P).entry +
                          entry_size(F_LABELS, 1).entry;
        size_t example = ld_head(features) + features;
        sizes[4 * r] = packed[0];
        sizes[4 * r + 1] = packed[1];
        sizes[4 * r + 2] = packed[2];
        sizes[4 * r + 3] = features;
        total += 12 + example + 4;
    }

    out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)total);
    if (!out) goto done;
    unsigned char *p = (unsigned char *)PyBytes_AS_STRING(out);
    static const unsigned char one_f[4] = {0x00, 0x00, 0x80, 0x3F}; /* 1.0f, little-endian */
    for (Py_ssize_t r = 0; r < n; r++) {
        int64_t nr = len[r], la = alen[r], k = npred[r];
        size_t features = sizes[4 * r + 3];
        uint64_t data_len = ld_head(features) + features;
        unsigned char *frame = p;
        for (int b = 0; b < 8; b++) p[b] = (unsigned char)(data_len >> (8 * b));
        put_u32(p + 8, masked_crc(p, 8));
        p += 12;
        unsigned char *data = p;
        p = put_ld_head(p, 1, features); /* Example.features */

        size_t payload = sizes[4 * r];
        p = put_entry_head(p, F_IDS, entry_size(F_IDS, payload), payload);
        for (Py_ssize_t j = 0; j < S; j++) p = put_varint(p, (uint64_t)ids[r * S + j]);

        p = put_entry_head(p, F_MASK, entry_size(F_MASK, (size_t)S), (size_t)S);
        memset(p, 1, (size_t)nr);
        memset(p + nr, 0, (size_t)(S - nr));
        p += S;

        p = put_entry_head(p, F_SEGMENTS, entry_size(F_SEGMENTS, (size_t)S), (size_t)S);
        memset(p, 0, (size_t)(la + 2));
        memset(p + la + 2, 1, (size_t)(nr - la - 2));
        memset(p + nr, 0, (size_t)(S - nr));
        p += S;

        payload = sizes[4 * r + 1];
        p = put_entry_head(p, F_POSITIONS, entry_size(F_POSITIONS, payload), payload);
        for (Py_ssize_t j = 0; j < P; j++) p = put_varint(p, (uint64_t)pos[r * P + j]);

        payload = sizes[4 * r + 2];
        p = put_entry_head(p, F_MASKED_IDS, entry_size(F_MASKED_IDS, payload), payload);
        for (Py_ssize_t j = 0; j < P; j++) p = put_varint(p, (uint64_t)mids[r * P + j]);

        p = put_entry_head(p, F_WEIGHTS, entry_size(F_WEIGHTS, 4 * (size_t)P), 4 * (size_t)P);
        for (Py_ssize_t j = 0; j < P; j++, p += 4) {
            if (j < k) memcpy(p, one_f, 4);
            else memset(p, 0, 4);
        }

        p = put_entry_head(p, F_LABELS, entry_size(F_LABELS, 1), 1);
        *p++ = (unsigned char)labels[r];

        put_u32(p, masked_crc(data, (size_t)(p - data)));
        p += 4;
        if ((uint64_t)(p - frame) != 16 + data_len) {
            PyErr_SetString(PyExc_SystemError, "encode_records: record size mismatch");
            Py_CLEAR(out);
            goto done;
        }
    }

done:
    PyMem_Free(sizes);
    Py_buffer *views[7] = {&b_ids, &b_len, &b_alen, &b_pos, &b_mids, &b_npred, &b_labels};
    for (int i = 0; i < got; i++) PyBuffer_Release(views[i]);
    return out;
}

/* ---- CPython's random.random(), on a copy of a random.Random's state ----------------------------- */

#define MT_N 624
#define MT_M 397

typedef struct {
    uint32_t mt[MT_N];
    int index;
} Twister;

static uint32_t mt_next(Twister *t) {
    static const uint32_t mag01[2] = {0x0u, 0x9908b0dfu};
    uint32_t y;
    if (t->index >= MT_N) {
        int kk;
        for (kk = 0; kk < MT_N - MT_M; kk++) {
            y = (t->mt[kk] & 0x80000000u) | (t->mt[kk + 1] & 0x7fffffffu);
            t->mt[kk] = t->mt[kk + MT_M] ^ (y >> 1) ^ mag01[y & 0x1u];
        }
        for (; kk < MT_N - 1; kk++) {
            y = (t->mt[kk] & 0x80000000u) | (t->mt[kk + 1] & 0x7fffffffu);
            t->mt[kk] = t->mt[kk + (MT_M - MT_N)] ^ (y >> 1) ^ mag01[y & 0x1u];
        }
        y = (t->mt[MT_N - 1] & 0x80000000u) | (t->mt[0] & 0x7fffffffu);
        t->mt[MT_N - 1] = t->mt[MT_M - 1] ^ (y >> 1) ^ mag01[y & 0x1u];
        t->index = 0;
    }
    y = t->mt[t->index++];
    y ^= (y >> 11);
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= (y >> 18);
    return y;
}

static inline double mt_random(Twister *t) { /* random_random() in CPython's _randommodule.c */
    uint32_t a = mt_next(t) >> 5, b = mt_next(t) >> 6;
    return (a * 67108864.0 + b) * (1.0 / 9007199254740992.0);
}

static int twister_from(PyObject *state, Twister *t) {
    if (!PyTuple_Check(state) || PyTuple_GET_SIZE(state) != MT_N + 1) {
        PyErr_SetString(PyExc_ValueError, "expected random.Random's internal state: a tuple of 625 ints");
        return -1;
    }
    for (int i = 0; i < MT_N; i++) {
        unsigned long v = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(state, i));
        if (v == (unsigned long)-1 && PyErr_Occurred()) return -1;
        t->mt[i] = (uint32_t)v;
    }
    long index = PyLong_AsLong(PyTuple_GET_ITEM(state, MT_N));
    if (index == -1 && PyErr_Occurred()) return -1;
    if (index < 0 || index > MT_N) {
        PyErr_SetString(PyExc_ValueError, "random state index out of range");
        return -1;
    }
    t->index = (int)index;
    return 0;
}

static PyObject *twister_state(const Twister *t) {
    PyObject *state = PyTuple_New(MT_N + 1);
    if (!state) return NULL;
    for (int i = 0; i < MT_N; i++) {
        PyObject *v = PyLong_FromUnsignedLong(t->mt[i]);
        if (!v) {
            Py_DECREF(state);
            return NULL;
        }
        PyTuple_SET_ITEM(state, i, v);
    }
    PyObject *index = PyLong_FromLong(t->index);
    if (!index) {
        Py_DECREF(state);
        return NULL;
    }
    PyTuple_SET_ITEM(state, MT_N, index);
    return state;
}

/* The first position in [lo, hi) whose offset is >= x, or hi (bisect.bisect_left). */
static inline int64_t bisect_left(const int64_t *a, int64_t x, int64_t lo, int64_t hi) {
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (a[mid] < x) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* pairs(offsets int64[sentences + 1], doc_sentences int64[documents + 1], own, dupe_factor, max_tokens,
 *       short_seq_prob, state) -> (rows int64[m, 5] as bytes, advanced state) */
static PyObject *py_pairs(PyObject *self, PyObject *args) {
    PyObject *o_off, *o_docs, *state;
    Py_ssize_t own, dupe_factor, max_tokens;
    double short_seq_prob;
    if (!PyArg_ParseTuple(args, "OOnnndO", &o_off, &o_docs, &own, &dupe_factor, &max_tokens, &short_seq_prob, &state))
        return NULL;
    Twister t;
    if (twister_from(state, &t) < 0) return NULL;
    Py_buffer b_off, b_docs;
    if (PyObject_GetBuffer(o_off, &b_off, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return NULL;
    if (PyObject_GetBuffer(o_docs, &b_docs, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        PyBuffer_Release(&b_off);
        return NULL;
    }
    PyObject *result = NULL, *rows = NULL, *new_state = NULL;
    int64_t *out = NULL;
    if (b_off.itemsize != 8 || b_docs.itemsize != 8 || b_off.len < 8 || b_docs.len < 8) {
        PyErr_SetString(PyExc_ValueError, "offsets and doc_sentences must be non-empty int64 arrays");
        goto done;
    }
    const int64_t *off = b_off.buf, *docs = b_docs.buf;
    int64_t n_off = b_off.len / 8, sources = b_docs.len / 8 - 1;
    int ordered = docs[0] >= 0 && off[0] >= 0;
    for (int64_t d = 0; ordered && d < sources; d++) ordered = docs[d] <= docs[d + 1];
    for (int64_t i = 0; ordered && i + 1 < n_off; i++) ordered = off[i] <= off[i + 1];
    if (!ordered || own < 0 || own > sources || max_tokens < 2 || docs[sources] > n_off - 1) {
        PyErr_SetString(PyExc_ValueError, "pairs: documents and offsets disagree");
        goto done;
    }
    size_t cap = 1024, m = 0;
    out = PyMem_Malloc(cap * 5 * sizeof(int64_t));
    if (!out) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t pass = 0; pass < dupe_factor; pass++) {
        for (int64_t index = 0; index < own; index++) {
            int64_t first = docs[index], last = docs[index + 1];
            int64_t target = max_tokens;
            if (mt_random(&t) < short_seq_prob) target = 2 + (int64_t)(mt_random(&t) * (double)(max_tokens - 1));
            int64_t start = first, i = first;
            while (i < last) {
                if (i == last - 1 || off[i + 1] - off[start] >= target) {
                    int64_t n_chunk = i - start + 1;
                    int64_t a_end = start + (n_chunk < 2 ? 1 : 1 + (int64_t)(mt_random(&t) * (double)(n_chunk - 1)));
                    int64_t a0 = off[start], a1 = off[a_end];
                    if (m == cap) {
                        cap *= 2;
                        int64_t *grown = PyMem_Realloc(out, cap * 5 * sizeof(int64_t));
                        if (!grown) {
                            PyErr_NoMemory();
                            goto done;
                        }
                        out = grown;
                    }
                    int64_t *row = out + 5 * m++;
                    if (n_chunk == 1 || mt_random(&t) < 0.5) {
                        int64_t other = index;
                        if (sources > 1) {
                            other = (int64_t)(mt_random(&t) * (double)(sources - 1));
                            other += other >= index;
                        }
                        int64_t r_first = docs[other], r_last = docs[other + 1];
                        int64_t j = r_first + (int64_t)(mt_random(&t) * (double)(r_last - r_first));
                        if (j + 1 > n_off - 1) { /* an empty last document: Python's loop fails on it too */
                            PyErr_SetString(PyExc_ValueError, "pairs: a random next sentence from an empty document");
                            goto done;
                        }
                        int64_t k = bisect_left(off, off[j] + target - (a1 - a0), j + 1, r_last);
                        row[0] = a0;
                        row[1] = a1 - a0;
                        row[2] = off[j];
                        row[3] = off[k] - off[j];
                        row[4] = 1;
                        i = a_end - 1;
                    } else {
                        row[0] = a0;
                        row[1] = a1 - a0;
                        row[2] = a1;
                        row[3] = off[i + 1] - a1;
                        row[4] = 0;
                    }
                    start = i + 1;
                }
                i++;
            }
        }
    }
    rows = PyBytes_FromStringAndSize((const char *)out, (Py_ssize_t)(m * 5 * sizeof(int64_t)));
    if (!rows) goto done;
    new_state = twister_state(&t);
    if (!new_state) goto done;
    result = PyTuple_Pack(2, rows, new_state);

done:
    Py_XDECREF(rows);
    Py_XDECREF(new_state);
    PyMem_Free(out);
    PyBuffer_Release(&b_off);
    PyBuffer_Release(&b_docs);
    return result;
}

/* ---- block: gathering and masking a block of instances (prep/instances.py: _block, _mask_block) -------- */
/*
 * numpy did this over [block, max_seq_length] matrices with a dozen full-size temporaries; here it is one pass a
 * row. The random draws stay numpy's, made by the caller in the order _mask_block makes them (keys, then the
 * 80/10/10 draw, then the random ids), so both paths consume the generator alike. A row's predictions are its k
 * candidates with the smallest keys, ties broken by position (_mask_block sorts by the same composite key).
 */

/* block(corpus int32[N], a0, la, b0, lb int64[m], keys float32[m, width], r float64[m, q], random_ids int64[m, q],
 *       width, P, masked_lm_prob, cls, sep, mask)
 *   -> (input_ids int32[m, width], positions int64[m, P], masked_ids int64[m, P], n_predictions int64[m]) as bytes */
static PyObject *py_block(PyObject *self, PyObject *args) {
    PyObject *o_corpus, *o_a0, *o_la, *o_b0, *o_lb, *o_keys, *o_r, *o_ids;
    Py_ssize_t m, width, q, P;
    double prob;
    long cls, sep, mask;
    if (!PyArg_ParseTuple(args, "nnnOOOOOOOOndlll", &m, &width, &q, &o_corpus, &o_a0, &o_la, &o_b0, &o_lb, &o_keys,
                          &o_r, &o_ids, &P, &prob, &cls, &sep, &mask))
        return NULL;
    if (m < 0 || width < 5 || width > 65535 || P < 1 || q != (P < width ? P : width))
        return PyErr_Format(PyExc_ValueError, "block: bad shape m=%zd width=%zd q=%zd P=%zd", m, width, q, P);
    Py_buffer b_corpus, b_a0, b_la, b_b0, b_lb, b_keys, b_r, b_ids;
    Py_buffer *views[8] = {&b_corpus, &b_a0, &b_la, &b_b0, &b_lb, &b_keys, &b_r, &b_ids};
    int got = 0;
    PyObject *o_tokens = NULL, *o_pos = NULL, *o_orig = NULL, *o_k = NULL, *result = NULL;
    int32_t *cand_key = NULL;
    int32_t *cand_pos = NULL;
    if (PyObject_GetBuffer(o_corpus, &b_corpus, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) goto done;
    got = 1;
    if (b_corpus.itemsize != 4) {
        PyErr_SetString(PyExc_ValueError, "block: corpus tokens must be int32");
        goto done;
    }
    const Wanted wanted[] = {
        {o_a0, &b_a0, 8, m, "a0"},          {o_la, &b_la, 8, m, "la"},           {o_b0, &b_b0, 8, m, "b0"},
        {o_lb, &b_lb, 8, m, "lb"},          {o_keys, &b_keys, 4, m * width, "keys"},
        {o_r, &b_r, 8, m * q, "r"},         {o_ids, &b_ids, 8, m * q, "random_ids"},
    };
    if (get_buffers(wanted, 7, &got) < 0) goto done;
    const int32_t *corpus = b_corpus.buf;
    Py_ssize_t n_corpus = b_corpus.len / 4;
    const int64_t *a0 = b_a0.buf, *la = b_la.buf, *b0 = b_b0.buf, *lb = b_lb.buf, *rand_ids = b_ids.buf;
    const float *keys = b_keys.buf;
    const double *r = b_r.buf;
    o_tokens = PyBytes_FromStringAndSize(NULL, m * width * 4);
    o_pos = PyBytes_FromStringAndSize(NULL, m * P * 8);
    o_orig = PyBytes_FromStringAndSize(NULL, m * P * 8);
    o_k = PyBytes_FromStringAndSize(NULL, m * 8);
    cand_key = PyMem_Malloc(sizeof(int32_t) * (size_t)(q + 1));
    cand_pos = PyMem_Malloc(sizeof(int32_t) * (size_t)(q + 1));
    if (!o_tokens || !o_pos || !o_orig || !o_k || !cand_key || !cand_pos) {
        if (!PyErr_Occurred()) PyErr_NoMemory();
        goto done;
    }
    int32_t *tokens = (int32_t *)PyBytes_AS_STRING(o_tokens);
    int64_t *positions = (int64_t *)PyBytes_AS_STRING(o_pos), *original = (int64_t *)PyBytes_AS_STRING(o_orig);
    int64_t *counts = (int64_t *)PyBytes_AS_STRING(o_k);
    memset(positions, 0, (size_t)(m * P * 8));
    memset(original, 0, (size_t)(m * P * 8));
    for (Py_ssize_t row = 0; row < m; row++) {
        int64_t a = la[row], b = lb[row], n = a + b + 3;
        if (a < 1 || b < 1 || n > width || a0[row] < 0 || a0[row] + a > n_corpus || b0[row] < 0 ||
            b0[row] + b > n_corpus) {
            PyErr_Format(PyExc_ValueError, "block: row %zd (A %lld at %lld, B %lld at %lld) does not fit", row,
                         (long long)a, (long long)a0[row], (long long)b, (long long)b0[row]);
            goto done;
        }
        int32_t *t = tokens + row * width;
        t[0] = (int32_t)cls;
        memcpy(t + 1, corpus + a0[row], (size_t)a * 4);
        t[a + 1] = (int32_t)sep;
        memcpy(t + a + 2, corpus + b0[row], (size_t)b * 4);
        t[n - 1] = (int32_t)sep;
        memset(t + n, 0, (size_t)(width - n) * 4);

        /* k = min(P, max(1, rint(n * prob)), candidates): candidates are 1..n-2 but for A's [SEP] at a + 1 */
        int64_t k = (int64_t)nearbyint((double)n * prob);
        if (k < 1) k = 1;
        if (k > P) k = P;
        if (k > n - 3) k = n - 3;
        /* the k smallest (key, position) among the candidates, kept sorted in cand_* (insertion) */
        const float *rk = keys + row * width;
        int64_t have = 0;
        for (int64_t j = 1; j < n - 1; j++) {
            if (j == a + 1) continue;
            int32_t key = (int32_t)(rk[j] * 16777216.0f); /* numpy's float32 draws are multiples of 2**-24 */
            if (have == k && key >= cand_key[have - 1]) continue; /* positions rise: an equal key loses */
            int64_t at = have < k ? have++ : k - 1;
            while (at > 0 && cand_key[at - 1] > key) {
                cand_key[at] = cand_key[at - 1];
                cand_pos[at] = cand_pos[at - 1];
                at--;
            }
            cand_key[at] = key;
            cand_pos[at] = (int32_t)j;
        }
        /* the chosen positions in ascending order; draws are indexed by that order */
        for (int64_t x = 1; x < k; x++) {
            int32_t v = cand_pos[x];
            int64_t y = x;
            while (y > 0 && cand_pos[y - 1] > v) {
                cand_pos[y] = cand_pos[y - 1];
                y--;
            }
            cand_pos[y] = v;
        }
        int64_t *prow = positions + row * P, *orow = original + row * P;
        for (int64_t c = 0; c < k; c++) {
            int64_t j = cand_pos[c];
            double draw = r[row * q + c];
            prow[c] = j;
            orow[c] = t[j];
            if (draw < 0.8) t[j] = (int32_t)mask;
            else if (draw >= 0.9) t[j] = (int32_t)rand_ids[row * q + c];
        }
        counts[row] = k;
    }
    result = PyTuple_Pack(4, o_tokens, o_pos, o_orig, o_k);
done:
    Py_XDECREF(o_tokens);
    Py_XDECREF(o_pos);
    Py_XDECREF(o_orig);
    Py_XDECREF(o_k);
    PyMem_Free(cand_key);
    PyMem_Free(cand_pos);
    for (int i = 0; i < got; i++) PyBuffer_Release(views[i]);
    return result;
}

/* ---- WordCache: word -> WordPiece ids, for prep/word_cache.py ------------------------------------ */
/*
 * The per-process cache of CachedWordPiece, with the word split in C. Python's version joins a shard's
 * sentences, splits them with one regex into a list of str, maps each through a dict and joins the ids:
 * three Python objects per word. Here a word is a slice of the text's bytes, looked up in an open-addressing
 * table whose keys and ids live in two arenas, so a warm shard costs no allocation per word.
 *
 * Protocol (three calls a shard, all in prep/word_cache.py): missing(text, mode) gives the distinct words not
 * cached; Python tokenizes them with the real WordPiece model and add(words, ids) stores them (past max_words,
 * only until the next encode); encode(text, mode) gives the ids and each sentence's length.
 *
 * mode 0: ASCII text as the regex path sees it (control characters removed, lower-cased when uncased): a word is
 * a run of letters and digits, any other printable character a word of its own, spaces, tabs and carriage returns
 * separate, and a newline ends a sentence. mode 1: words already pre-tokenized (the Unicode path), joined by
 * spaces, a newline ending a sentence.
 */

typedef struct {
    uint64_t hash;
    uint32_t key_off, key_len, ids_off, ids_len; /* ids_len == UINT32_MAX: an empty slot */
} Slot;

typedef struct {
    Slot *slots;
    size_t cap, count; /* cap: a power of two, at most half full */
    char *keys;
    size_t keys_len, keys_cap;
    int32_t *ids;
    size_t ids_len, ids_cap;
} Table;

static uint64_t hash_bytes(const char *p, size_t n) { /* FNV-1a, 64 bits */
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
    return h;
}

static int table_init(Table *t, size_t cap) {
    memset(t, 0, sizeof *t);
    t->slots = PyMem_Malloc(cap * sizeof(Slot));
    if (!t->slots) return -1;
    for (size_t i = 0; i < cap; i++) t->slots[i].ids_len = UINT32_MAX;
    t->cap = cap;
    return 0;
}

static void table_free(Table *t) {
    PyMem_Free(t->slots);
    PyMem_Free(t->keys);
    PyMem_Free(t->ids);
    memset(t, 0, sizeof *t);
}

static void table_clear(Table *t) {
    for (size_t i = 0; i < t->cap; i++) t->slots[i].ids_len = UINT32_MAX;
    t->count = t->keys_len = t->ids_len = 0;
}

static Slot *table_find(const Table *t, const char *key, size_t n, uint64_t h) {
    size_t mask = t->cap - 1;
    for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
        Slot *s = &t->slots[i];
        if (s->ids_len == UINT32_MAX) return NULL;
        if (s->hash == h && s->key_len == n && memcmp(t->keys + s->key_off, key, n) == 0) return s;
    }
}

static int grow(void **buf, size_t *cap, size_t need, size_t item) {
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 1024;
    while (c < need) c *= 2;
    void *b = PyMem_Realloc(*buf, c * item);
    if (!b) {
        PyErr_NoMemory();
        return -1;
    }
    *buf = b;
    *cap = c;
    return 0;
}

static int table_rehash(Table *t) {
    size_t cap = t->cap * 2;
    Slot *slots = PyMem_Malloc(cap * sizeof(Slot));
    if (!slots) {
        PyErr_NoMemory();
        return -1;
    }
    for (size_t i = 0; i < cap; i++) slots[i].ids_len = UINT32_MAX;
    for (size_t i = 0; i < t->cap; i++) {
        Slot s = t->slots[i];
        if (s.ids_len == UINT32_MAX) continue;
        size_t j = (size_t)s.hash & (cap - 1);
        while (slots[j].ids_len != UINT32_MAX) j = (j + 1) & (cap - 1);
        slots[j] = s;
    }
    PyMem_Free(t->slots);
    t->slots = slots;
    t->cap = cap;
    return 0;
}

/* Store key -> ids (the key must not be in the table). ids_len UINT32_MAX is refused by the caller. */
static int table_put(Table *t, const char *key, size_t n, uint64_t h, const int32_t *ids, size_t m) {
    if (n > UINT32_MAX / 2 || m >= UINT32_MAX / 2 || t->keys_len + n > UINT32_MAX || t->ids_len + m > UINT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "word cache: too large");
        return -1;
    }
    if (2 * (t->count + 1) > t->cap && table_rehash(t) < 0) return -1;
    if (grow((void **)&t->keys, &t->keys_cap, t->keys_len + n, 1) < 0) return -1;
    if (grow((void **)&t->ids, &t->ids_cap, t->ids_len + m, sizeof(int32_t)) < 0) return -1;
    size_t mask = t->cap - 1, i = (size_t)h & mask;
    while (t->slots[i].ids_len != UINT32_MAX) i = (i + 1) & mask;
    Slot *s = &t->slots[i];
    s->hash = h;
    s->key_off = (uint32_t)t->keys_len;
    s->key_len = (uint32_t)n;
    s->ids_off = (uint32_t)t->ids_len;
    s->ids_len = (uint32_t)m;
    memcpy(t->keys + t->keys_len, key, n);
    if (m) memcpy(t->ids + t->ids_len, ids, m * sizeof(int32_t));
    t->keys_len += n;
    t->ids_len += m;
    t->count++;
    return 0;
}

typedef struct {
    PyObject_HEAD
    Table main, extra;
    Py_ssize_t max_words;
} WordCache;

static void wc_dealloc(WordCache *self) {
    table_free(&self->main);
    table_free(&self->extra);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *wc_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"max_words", NULL};
    Py_ssize_t max_words;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "n", kwlist, &max_words)) return NULL;
    if (max_words < 0) return PyErr_Format(PyExc_ValueError, "max_words must be >= 0, got %zd", max_words);
    WordCache *self = (WordCache *)type->tp_alloc(type, 0);
    if (!self) return NULL;
    if (table_init(&self->main, 1 << 12) < 0 || table_init(&self->extra, 1 << 8) < 0) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    self->max_words = max_words;
    return (PyObject *)self;
}

/* The (text, mode) arguments of a call: the text's UTF-8 bytes (ASCII only for mode 0), and the mode. */
static const char *text_arg(PyObject *args, int *mode_out, Py_ssize_t *n) {
    PyObject *text;
    int mode;
    if (!PyArg_ParseTuple(args, "Ui", &text, &mode)) return NULL;
    *mode_out = mode;
    if (mode == 0 && !PyUnicode_IS_ASCII(text)) {
        PyErr_SetString(PyExc_ValueError, "mode 0 takes ASCII text only");
        return NULL;
    }
    if (mode != 0 && mode != 1) {
        PyErr_SetString(PyExc_ValueError, "mode must be 0 (ASCII text) or 1 (words joined by spaces)");
        return NULL;
    }
    return PyUnicode_AsUTF8AndSize(text, n);
}

static inline int is_alnum(unsigned char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

/* The next word of p[*i..n) (its start and length), or a sentence end (returns 1), or the end of the text (0). */
static inline int next_token(const char *p, Py_ssize_t n, Py_ssize_t *i, int mode, const char **w, Py_ssize_t *len) {
    Py_ssize_t k = *i;
    if (mode == 0) {
        while (k < n && (p[k] == ' ' || p[k] == '\t' || p[k] == '\r')) k++;
    } else {
        while (k < n && p[k] == ' ') k++;
    }
    if (k >= n) {
        *i = k;
        return 0;
    }
    if (p[k] == '\n') {
        *i = k + 1;
        return 1;
    }
    Py_ssize_t start = k;
    if (mode == 0) {
        if (is_alnum((unsigned char)p[k])) {
            while (k < n && is_alnum((unsigned char)p[k])) k++;
        } else {
            k++;
        }
    } else {
        while (k < n && p[k] != ' ' && p[k] != '\n') k++;
    }
    *w = p + start;
    *len = k - start;
    *i = k;
    return 2;
}

static PyObject *wc_missing(WordCache *self, PyObject *args) {
    int mode;
    Py_ssize_t n;
    const char *p = text_arg(args, &mode, &n);
    if (!p) return NULL;
    PyObject *out = PyList_New(0);
    if (!out) return NULL;
    Table seen;
    if (table_init(&seen, 1 << 8) < 0) {
        Py_DECREF(out);
        return PyErr_NoMemory();
    }
    Py_ssize_t i = 0, len = 0;
    const char *w = NULL;
    int kind;
    while ((kind = next_token(p, n, &i, mode, &w, &len))) {
        if (kind != 2) continue;
        uint64_t h = hash_bytes(w, (size_t)len);
        if (table_find(&self->main, w, (size_t)len, h) || table_find(&self->extra, w, (size_t)len, h) ||
            table_find(&seen, w, (size_t)len, h))
            continue;
        PyObject *word = PyUnicode_DecodeUTF8(w, len, "strict");
        if (!word || table_put(&seen, w, (size_t)len, h, NULL, 0) < 0 || PyList_Append(out, word) < 0) {
            Py_XDECREF(word);
            Py_DECREF(out);
            table_free(&seen);
            return NULL;
        }
        Py_DECREF(word);
    }
    table_free(&seen);
    return out;
}

static PyObject *wc_add(WordCache *self, PyObject *args) {
    PyObject *words, *ids;
    if (!PyArg_ParseTuple(args, "O!O!", &PyList_Type, &words, &PyList_Type, &ids)) return NULL;
    if (PyList_GET_SIZE(words) != PyList_GET_SIZE(ids)) {
        PyErr_SetString(PyExc_ValueError, "add: as many id strings as words");
        return NULL;
    }
    for (Py_ssize_t k = 0; k < PyList_GET_SIZE(words); k++) {
        PyObject *word = PyList_GET_ITEM(words, k), *data = PyList_GET_ITEM(ids, k);
        Py_ssize_t n;
        const char *key = PyUnicode_Check(word) ? PyUnicode_AsUTF8AndSize(word, &n) : NULL;
        if (!key) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "add: words must be str");
            return NULL;
        }
        if (!PyBytes_Check(data) || PyBytes_GET_SIZE(data) % 4 != 0) {
            PyErr_SetString(PyExc_TypeError, "add: ids must be bytes of int32 values");
            return NULL;
        }
        uint64_t h = hash_bytes(key, (size_t)n);
        if (table_find(&self->main, key, (size_t)n, h) || table_find(&self->extra, key, (size_t)n, h)) continue;
        Table *t = (Py_ssize_t)self->main.count < self->max_words ? &self->main : &self->extra;
        int32_t *values = (int32_t *)PyBytes_AS_STRING(data);
        if (table_put(t, key, (size_t)n, h, values, (size_t)(PyBytes_GET_SIZE(data) / 4)) < 0) return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *wc_encode(WordCache *self, PyObject *args) {
    int mode;
    Py_ssize_t n;
    const char *p = text_arg(args, &mode, &n);
    if (!p) return NULL;
    size_t cap_ids = 0, n_ids = 0, cap_len = 0, n_len = 0;
    int32_t *ids = NULL;
    int64_t *lengths = NULL;
    PyObject *result = NULL, *o_ids = NULL, *o_len = NULL;
    int64_t current = 0;
    Py_ssize_t i = 0, len = 0;
    const char *w = NULL;
    int kind;
    if (grow((void **)&ids, &cap_ids, (size_t)n + 1, sizeof(int32_t)) < 0) goto done;
    for (;;) {
        kind = next_token(p, n, &i, mode, &w, &len);
        if (kind == 2) {
            uint64_t h = hash_bytes(w, (size_t)len);
            const Table *t = &self->main;
            Slot *s = table_find(t, w, (size_t)len, h);
            if (!s) {
                t = &self->extra;
                s = table_find(t, w, (size_t)len, h);
            }
            if (!s) {
                PyObject *word = PyUnicode_DecodeUTF8(w, len, "replace");
                PyErr_Format(PyExc_KeyError, "word not cached (missing() and add() first): %R", word);
                Py_XDECREF(word);
                goto done;
            }
            if (grow((void **)&ids, &cap_ids, n_ids + s->ids_len, sizeof(int32_t)) < 0) goto done;
            memcpy(ids + n_ids, t->ids + s->ids_off, s->ids_len * sizeof(int32_t));
            n_ids += s->ids_len;
            current += s->ids_len;
            continue;
        }
        if (grow((void **)&lengths, &cap_len, n_len + 1, sizeof(int64_t)) < 0) goto done;
        lengths[n_len++] = current; /* a sentence ends: at a newline, or at the end of the text */
        current = 0;
        if (kind == 0) break;
    }
    o_ids = PyBytes_FromStringAndSize((const char *)ids, (Py_ssize_t)(n_ids * sizeof(int32_t)));
    o_len = o_ids ? PyBytes_FromStringAndSize((const char *)lengths, (Py_ssize_t)(n_len * sizeof(int64_t))) : NULL;
    if (o_ids && o_len) result = PyTuple_Pack(2, o_ids, o_len);
done:
    table_clear(&self->extra);
    Py_XDECREF(o_ids);
    Py_XDECREF(o_len);
    PyMem_Free(ids);
    PyMem_Free(lengths);
    return result;
}

static PyObject *wc_len(WordCache *self, void *closure) { return PyLong_FromSize_t(self->main.count); }

static PyMethodDef wc_methods[] = {
    {"missing", (PyCFunction)wc_missing, METH_VARARGS, "missing(text, mode) -> the distinct words not cached"},
    {"add", (PyCFunction)wc_add, METH_VARARGS, "add(words, ids): cache each word's ids (int32 bytes)"},
    {"encode", (PyCFunction)wc_encode, METH_VARARGS,
     "encode(text, mode) -> (ids as int32 bytes, each sentence's number of ids as int64 bytes)"},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef wc_getset[] = {{"words", (getter)wc_len, NULL, "words cached (at most max_words)", NULL},
                                  {NULL, NULL, NULL, NULL, NULL}};

static PyTypeObject WordCacheType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "bert_trainer.prep._native.WordCache",
    .tp_basicsize = sizeof(WordCache),
    .tp_dealloc = (destructor)wc_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "WordCache(max_words): word -> WordPiece ids, the word split in C (see _native.c).",
    .tp_methods = wc_methods,
    .tp_getset = wc_getset,
    .tp_new = wc_new,
};

static PyMethodDef methods[] = {
    {"encode_records", py_encode_records, METH_VARARGS,
     "encode_records(n, input_ids, lengths, a_lengths, positions, masked_ids, n_predictions, labels, S, P) -> bytes:\n"
     "the framed TFRecords of n instances (see prep/records.py encode_batch)."},
    {"pairs", py_pairs, METH_VARARGS,
     "pairs(offsets, doc_sentences, own, dupe_factor, max_tokens, short_seq_prob, state) -> (bytes, state):\n"
     "the packing decisions of prep/instances.py _pairs on a copy of random.Random's internal state."},
    {"block", py_block, METH_VARARGS,
     "block(m, width, q, corpus, a0, la, b0, lb, keys, r, random_ids, P, masked_lm_prob, cls, sep, mask)\n"
     "-> (input_ids, positions, masked_ids, n_predictions) as bytes: prep/instances.py _block's gather and mask."},
    {"crc32c", py_crc32c, METH_VARARGS, "crc32c(data) -> int: CRC32C (Castagnoli), unmasked."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_native",
                                    "The compiled core of prepare-data (see _native.c).", -1, methods};

PyMODINIT_FUNC PyInit__native(void) {
    crc_init();
    if (PyType_Ready(&WordCacheType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    Py_INCREF(&WordCacheType);
    if (PyModule_AddIntConstant(m, "ABI", NATIVE_ABI) < 0 ||
        PyModule_AddObject(m, "WordCache", (PyObject *)&WordCacheType) < 0) {
        Py_DECREF(&WordCacheType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
