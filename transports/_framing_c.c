/* Compiled fast path of transports/framing.py: the envelope wire format in C.

Why: in pure Python, encoding one envelope costs ~0.6 us and decoding one ~1.3 us on the 2-core
test machine, as much as libzmq's own send/recv, so the transport interface cost ZeroMQ 40-50 %
of its throughput (benchmarks/test_bench_zmq.py). Here one call does the work of a frame.

Contract: every function returns exactly what its pure-Python twin in framing.py returns. It
handles the common valid case only; for anything else (a defect, an unusual argument type, a
number out of range) it calls the Python function it was set up with, so every error (FrameError
kinds and messages, ValueError, struct.error) comes from one place. tests/test_framing.py runs the
same checks on both implementations and compares them on valid, mutated and random frames.

Envelopes are built the way the dataclass __init__ would leave them, without running it (it is
Python code and costs more than the decode): the slots are filled at the offsets of the class's
member descriptors, which setup() reads and checks (plain object slots, nothing else on the
instance). */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>

#define VERSION 1
#define NO_KEY 0xFFFFu
/* magic(2) version flags | seq event_ns publish_ns | pid_len key_len n_headers | value_len */
#define HEAD_SIZE 38
/* entry_len u32, then the single-frame header */
#define ENTRY_SIZE 42
/* magic(2) version flags | count u32 */
#define BATCH_HEAD_SIZE 8

#define N_FIELDS 11
static const char *const FIELD_NAMES[N_FIELDS] = {
    "topic", "value", "key", "headers", "producer_id", "seq", "event_time_ns",
    "publish_time_ns", "partition", "offset", "receive_time_ns"};

static PyTypeObject *envelope_type = NULL;
static Py_ssize_t field_offset[N_FIELDS];
static PyObject *py_encode_frame = NULL;
static PyObject *py_decode_frame = NULL;
static PyObject *py_decode_into = NULL;
static PyObject *py_encode_entry = NULL;
static PyObject *minus_one = NULL;
static PyObject *zero = NULL;
static PyObject *empty_tuple = NULL;

/* -- little-endian fields ----------------------------------------------------------------- */

static inline uint32_t rd_u16(const unsigned char *p) { return (uint32_t)p[0] | ((uint32_t)p[1] << 8); }

static inline uint32_t rd_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static inline int64_t rd_i64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return (int64_t)v;
}

static inline unsigned char *wr_u16(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    return p + 2;
}

static inline unsigned char *wr_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
    return p + 4;
}

static inline unsigned char *wr_i64(unsigned char *p, int64_t value)
{
    uint64_t v = (uint64_t)value;
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
    return p + 8;
}

/* -- names: topics and producer ids repeat on every frame --------------------------------- */

/* Direct-mapped, fixed size: bounded whatever a peer sends; a miss only costs a decode. */
#define NAME_SLOTS 256
#define NAME_MAX_BYTES 64
typedef struct {
    Py_ssize_t len;
    PyObject *text;
    char raw[NAME_MAX_BYTES];
} name_slot;
static name_slot names[NAME_SLOTS];

/* New reference to the str of UTF-8 ``raw``, or NULL with an exception set. */
static PyObject *name_text(const unsigned char *raw, Py_ssize_t len)
{
    if (len > NAME_MAX_BYTES)
        return PyUnicode_DecodeUTF8((const char *)raw, len, NULL);
    uint32_t h = 2166136261u; /* FNV-1a */
    for (Py_ssize_t i = 0; i < len; i++)
        h = (h ^ raw[i]) * 16777619u;
    name_slot *slot = &names[h & (NAME_SLOTS - 1)];
    if (slot->text != NULL && slot->len == len && memcmp(slot->raw, raw, (size_t)len) == 0) {
        Py_INCREF(slot->text);
        return slot->text;
    }
    PyObject *text = PyUnicode_DecodeUTF8((const char *)raw, len, NULL);
    if (text == NULL)
        return NULL;
    Py_INCREF(text);
    Py_XSETREF(slot->text, text);
    slot->len = len;
    memcpy(slot->raw, raw, (size_t)len);
    return text;
}

/* Results of the parsing helpers: OK, DEFER (let the Python twin decide), or FAIL (an exception
   such as MemoryError is set and must propagate). A UnicodeDecodeError is a DEFER: Python turns
   it into FrameError("invalid_utf8"). */
enum { FAIL = -1, DEFER = 0, OK = 1 };

static int defer_or_fail(void)
{
    if (PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
        PyErr_Clear();
        return DEFER;
    }
    return FAIL;
}

/* -- envelopes ---------------------------------------------------------------------------- */

/* An Envelope holding ``values`` (references stolen, also on failure). */
static PyObject *new_envelope(PyObject *values[N_FIELDS])
{
    PyObject *env = envelope_type->tp_alloc(envelope_type, 0);
    if (env == NULL) {
        for (int i = 0; i < N_FIELDS; i++)
            Py_DECREF(values[i]);
        return NULL;
    }
    for (int i = 0; i < N_FIELDS; i++)
        *(PyObject **)((char *)env + field_offset[i]) = values[i];
    return env;
}

/* Headers between ``*pos`` and ``limit``: n x (name_len u16 | name | len u32 | value). */
static int parse_headers(const unsigned char *buf, Py_ssize_t *pos, Py_ssize_t limit, uint32_t n,
                         PyObject **out)
{
    PyObject *tuple = PyTuple_New(n);
    if (tuple == NULL)
        return FAIL;
    Py_ssize_t p = *pos;
    for (uint32_t i = 0; i < n; i++) {
        if (limit - p < 2)
            goto defer;
        Py_ssize_t name_len = rd_u16(buf + p);
        p += 2;
        if (limit - p < name_len + 4)
            goto defer;
        PyObject *name = PyUnicode_DecodeUTF8((const char *)buf + p, name_len, NULL);
        if (name == NULL) {
            Py_DECREF(tuple);
            return defer_or_fail();
        }
        p += name_len;
        Py_ssize_t value_len = rd_u32(buf + p);
        p += 4;
        if (limit - p < value_len) {
            Py_DECREF(name);
            goto defer;
        }
        PyObject *value = PyBytes_FromStringAndSize((const char *)buf + p, value_len);
        p += value_len;
        PyObject *pair = value == NULL ? NULL : PyTuple_Pack(2, name, value);
        Py_DECREF(name);
        Py_XDECREF(value);
        if (pair == NULL) {
            Py_DECREF(tuple);
            return FAIL;
        }
        PyTuple_SET_ITEM(tuple, i, pair);
    }
    *pos = p;
    *out = tuple;
    return OK;
defer:
    Py_DECREF(tuple);
    return DEFER;
}

/* One envelope whose fixed header is at ``head`` (HEAD_SIZE bytes, magic already checked) and
   whose variable part starts at ``pos`` and must end exactly at ``stop``. */
static int parse_envelope(const unsigned char *buf, const unsigned char *head, Py_ssize_t pos,
                          Py_ssize_t stop, PyObject *topic, PyObject *receive_time, PyObject **out)
{
    Py_ssize_t pid_len = rd_u16(head + 28);
    uint32_t key_len = rd_u16(head + 30);
    uint32_t n_headers = rd_u16(head + 32);
    Py_ssize_t value_len = rd_u32(head + 34);
    if (stop - pos < pid_len)
        return DEFER;
    Py_ssize_t end = pos + pid_len;
    if (key_len != NO_KEY && stop - end < (Py_ssize_t)key_len)
        return DEFER;
    if (n_headers == 0 && end + (key_len == NO_KEY ? 0 : key_len) + value_len != stop)
        return DEFER; /* cheap length check before anything is allocated */

    PyObject *values[N_FIELDS] = {NULL};
    int status = FAIL;
    values[4] = name_text(buf + pos, pid_len);
    if (values[4] == NULL) {
        status = defer_or_fail();
        goto cleanup;
    }
    if (key_len == NO_KEY) {
        values[2] = Py_NewRef(Py_None);
    } else {
        values[2] = PyBytes_FromStringAndSize((const char *)buf + end, key_len);
        if (values[2] == NULL)
            goto cleanup;
        end += key_len;
    }
    if (n_headers == 0) {
        values[3] = Py_NewRef(empty_tuple);
    } else {
        status = parse_headers(buf, &end, stop, n_headers, &values[3]);
        if (status != OK)
            goto cleanup;
        status = FAIL;
        if (end + value_len != stop) {
            status = DEFER;
            goto cleanup;
        }
    }
    values[1] = PyBytes_FromStringAndSize((const char *)buf + end, value_len);
    values[5] = PyLong_FromLongLong(rd_i64(head + 4));
    values[6] = PyLong_FromLongLong(rd_i64(head + 12));
    values[7] = PyLong_FromLongLong(rd_i64(head + 20));
    if (values[1] == NULL || values[5] == NULL || values[6] == NULL || values[7] == NULL)
        goto cleanup;
    values[0] = Py_NewRef(topic);
    values[8] = Py_NewRef(minus_one);
    values[9] = Py_NewRef(minus_one);
    values[10] = Py_NewRef(receive_time);
    *out = new_envelope(values);
    return *out == NULL ? FAIL : OK;
cleanup:
    for (int i = 0; i < N_FIELDS; i++)
        Py_XDECREF(values[i]);
    return status;
}

/* Where the frame's topic ends (the first NUL), or -1. */
static Py_ssize_t topic_end(const unsigned char *buf, Py_ssize_t len)
{
    const unsigned char *nul = memchr(buf, 0, (size_t)len);
    return nul == NULL ? -1 : nul - buf;
}

static int is_single(const unsigned char *magic) { return magic[0] == 'D' && magic[1] == 'H' && magic[2] == VERSION; }

static int is_batch(const unsigned char *magic) { return magic[0] == 'D' && magic[1] == 'B' && magic[2] == VERSION; }

/* A single-envelope frame. */
static int parse_single(PyObject *frame, PyObject *receive_time, PyObject **out)
{
    const unsigned char *buf = (const unsigned char *)PyBytes_AS_STRING(frame);
    Py_ssize_t len = PyBytes_GET_SIZE(frame);
    Py_ssize_t sep = topic_end(buf, len);
    if (sep < 0 || len - (sep + 1) < HEAD_SIZE || !is_single(buf + sep + 1))
        return DEFER;
    PyObject *topic = name_text(buf, sep);
    if (topic == NULL)
        return defer_or_fail();
    int status = parse_envelope(buf, buf + sep + 1, sep + 1 + HEAD_SIZE, len, topic, receive_time, out);
    Py_DECREF(topic);
    return status;
}

/* A batch frame: every envelope appended to ``out``, or none of them. */
static int parse_batch(PyObject *frame, PyObject *out, Py_ssize_t *count_out)
{
    const unsigned char *buf = (const unsigned char *)PyBytes_AS_STRING(frame);
    Py_ssize_t len = PyBytes_GET_SIZE(frame);
    Py_ssize_t sep = topic_end(buf, len);
    Py_ssize_t pos = sep + 1;
    if (sep < 0 || len - pos < BATCH_HEAD_SIZE || !is_batch(buf + pos))
        return DEFER;
    uint32_t count = rd_u32(buf + pos + 4);
    if (count == 0)
        return DEFER;
    pos += BATCH_HEAD_SIZE;
    PyObject *topic = name_text(buf, sep);
    if (topic == NULL)
        return defer_or_fail();
    Py_ssize_t first = PyList_GET_SIZE(out);
    int status = OK;
    for (uint32_t i = 0; i < count && status == OK; i++) {
        if (len - pos < ENTRY_SIZE || !is_single(buf + pos + 4)) {
            status = DEFER;
            break;
        }
        Py_ssize_t entry_len = rd_u32(buf + pos);
        if (len - pos - 4 < entry_len) {
            status = DEFER;
            break;
        }
        Py_ssize_t stop = pos + 4 + entry_len;
        PyObject *env = NULL;
        status = parse_envelope(buf, buf + pos + 4, pos + ENTRY_SIZE, stop, topic, zero, &env);
        if (status == OK) {
            status = PyList_Append(out, env) < 0 ? FAIL : OK;
            Py_DECREF(env);
        }
        pos = stop;
    }
    Py_DECREF(topic);
    if (status == OK && pos != len)
        status = DEFER;
    if (status != OK) {
#if PY_VERSION_HEX >= 0x030C0000
        PyObject *error = PyErr_GetRaisedException();
        int undone = PyList_SetSlice(out, first, PyList_GET_SIZE(out), NULL);
        PyErr_SetRaisedException(error);
#else
        PyObject *error_type, *error_value, *error_tb;
        PyErr_Fetch(&error_type, &error_value, &error_tb);
        int undone = PyList_SetSlice(out, first, PyList_GET_SIZE(out), NULL);
        PyErr_Restore(error_type, error_value, error_tb);
#endif
        return undone < 0 ? FAIL : status;
    }
    *count_out = count;
    return OK;
}

/* -- module functions --------------------------------------------------------------------- */

static int ready(void)
{
    if (envelope_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "transports._framing_c.setup() was not called");
        return 0;
    }
    return 1;
}

/* decode_frame(frame, receive_time_ns=0) -> Envelope */
static PyObject *decode_frame(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (!ready())
        return NULL;
    if (kwnames == NULL && (nargs == 1 || nargs == 2) && PyBytes_CheckExact(args[0])
        && (nargs == 1 || PyLong_CheckExact(args[1]))) {
        PyObject *env = NULL;
        int status = parse_single(args[0], nargs == 2 ? args[1] : zero, &env);
        if (status == OK)
            return env;
        if (status == FAIL)
            return NULL;
    }
    return PyObject_Vectorcall(py_decode_frame, args, nargs, kwnames);
}

/* decode_into(frame, out) -> number of envelopes appended to the list ``out`` */
static PyObject *decode_into(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (!ready())
        return NULL;
    if (kwnames == NULL && nargs == 2 && PyBytes_CheckExact(args[0]) && PyList_CheckExact(args[1])) {
        PyObject *env = NULL;
        int status = parse_single(args[0], zero, &env);
        if (status == OK) {
            int appended = PyList_Append(args[1], env);
            Py_DECREF(env);
            return appended < 0 ? NULL : PyLong_FromLong(1);
        }
        if (status == FAIL)
            return NULL;
        Py_ssize_t count = 0;
        status = parse_batch(args[0], args[1], &count);
        if (status == OK)
            return PyLong_FromSsize_t(count);
        if (status == FAIL)
            return NULL;
    }
    return PyObject_Vectorcall(py_decode_into, args, nargs, kwnames);
}

/* Whether ``frame`` starts with one of the bytes in the tuple ``prefixes`` (None: no filter). */
static int has_prefix(PyObject *frame, PyObject *prefixes)
{
    if (prefixes == Py_None)
        return 1;
    const char *buf = PyBytes_AS_STRING(frame);
    Py_ssize_t len = PyBytes_GET_SIZE(frame);
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(prefixes); i++) {
        PyObject *prefix = PyTuple_GET_ITEM(prefixes, i);
        Py_ssize_t n = PyBytes_GET_SIZE(prefix);
        if (n <= len && memcmp(buf, PyBytes_AS_STRING(prefix), (size_t)n) == 0)
            return 1;
    }
    return 0;
}

/* receive_into(recv, flags, again, out, max_messages, prefixes, max_frame_bytes)
       -> (envelopes appended to out, frame for the caller or None)

   The receive loop of a ZeroMQ subscriber: calls recv(flags) until it raises ``again`` (nothing
   queued) or ``max_messages`` envelopes were appended, decoding each frame into ``out``. A frame
   it does not take as it is (another topic than ``prefixes``, longer than ``max_frame_bytes``,
   anything the decoder defers) is handed back at once, before the next recv, so the caller can
   still ask the socket about it (a multipart message's next parts). */
static PyObject *receive_into(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (!ready())
        return NULL;
    if (nargs != 7 || !PyList_CheckExact(args[3]) || !(args[5] == Py_None || PyTuple_CheckExact(args[5]))) {
        PyErr_SetString(PyExc_TypeError,
                        "receive_into(recv, flags, again, out: list, max_messages, prefixes: tuple | None, max_frame_bytes)");
        return NULL;
    }
    PyObject *recv = args[0], *again = args[2], *out = args[3], *prefixes = args[5];
    PyObject *flags[1] = {args[1]};
    Py_ssize_t max_messages = PyLong_AsSsize_t(args[4]);
    Py_ssize_t max_frame = PyLong_AsSsize_t(args[6]);
    if ((max_messages == -1 || max_frame == -1) && PyErr_Occurred())
        return NULL;
    if (prefixes != Py_None) {
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(prefixes); i++) {
            if (!PyBytes_CheckExact(PyTuple_GET_ITEM(prefixes, i))) {
                PyErr_SetString(PyExc_TypeError, "prefixes must be a tuple of bytes");
                return NULL;
            }
        }
    }
    Py_ssize_t count = 0;
    while (count < max_messages) {
        PyObject *frame = PyObject_Vectorcall(recv, flags, 1, NULL);
        if (frame == NULL) {
            if (!PyErr_ExceptionMatches(again))
                return NULL;
            PyErr_Clear();
            break;
        }
        if (!PyBytes_CheckExact(frame) || PyBytes_GET_SIZE(frame) > max_frame || !has_prefix(frame, prefixes))
            return Py_BuildValue("(nN)", count, frame);
        PyObject *env = NULL;
        Py_ssize_t got = 1;
        int status = parse_single(frame, zero, &env);
        if (status == OK) {
            status = PyList_Append(out, env) < 0 ? FAIL : OK;
            Py_DECREF(env);
        } else if (status == DEFER) {
            status = parse_batch(frame, out, &got);
        }
        if (status == DEFER)
            return Py_BuildValue("(nN)", count, frame);
        Py_DECREF(frame);
        if (status == FAIL)
            return NULL;
        count += got;
    }
    return Py_BuildValue("(nO)", count, Py_None);
}

/* UTF-8 of an exact str, or NULL (no exception left set) if it is not one or cannot be encoded. */
static const char *utf8_of(PyObject *text, Py_ssize_t *len)
{
    if (!PyUnicode_CheckExact(text))
        return NULL;
    const char *raw = PyUnicode_AsUTF8AndSize(text, len);
    if (raw == NULL)
        PyErr_Clear(); /* lone surrogates: the Python twin raises the UnicodeEncodeError */
    return raw;
}

static int int64_of(PyObject *number, int64_t *out)
{
    if (!PyLong_CheckExact(number))
        return 0;
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(number, &overflow);
    if (overflow || (v == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return 0;
    }
    *out = v;
    return 1;
}

/* One envelope: a single frame ``topic | 0 | head ...`` when ``topic_obj`` is given, else a batch
   entry ``entry_len u32 | head ...``. ``env`` holds value, key, headers, producer_id, seq,
   event_time_ns, publish_time_ns. Returns NULL with no exception set for anything the Python
   twin must handle (it raises the errors). */
static PyObject *encode_envelope(PyObject *topic_obj, PyObject *const *env)
{
    PyObject *value = env[0], *key = env[1], *headers = env[2];
    Py_ssize_t topic_len = 0, pid_len;
    const char *topic = topic_obj == NULL ? "" : utf8_of(topic_obj, &topic_len);
    const char *pid = utf8_of(env[3], &pid_len);
    int64_t seq, event_ns, publish_ns;
    if (topic == NULL || pid == NULL || !PyBytes_CheckExact(value) || !PyTuple_CheckExact(headers)
        || !int64_of(env[4], &seq) || !int64_of(env[5], &event_ns) || !int64_of(env[6], &publish_ns))
        goto defer;
    Py_ssize_t key_len = 0;
    if (key != Py_None) {
        if (!PyBytes_CheckExact(key) || PyBytes_GET_SIZE(key) >= (Py_ssize_t)NO_KEY)
            goto defer;
        key_len = PyBytes_GET_SIZE(key);
    }
    Py_ssize_t value_len = PyBytes_GET_SIZE(value);
    Py_ssize_t n_headers = PyTuple_GET_SIZE(headers);
    if (pid_len > 0xFFFF || n_headers > 0xFFFF || value_len > 0xFFFFFFFFLL)
        goto defer;
    Py_ssize_t size = (topic_obj == NULL ? 4 : topic_len + 1) + HEAD_SIZE + pid_len + key_len + value_len;
    for (Py_ssize_t i = 0; i < n_headers; i++) {
        PyObject *pair = PyTuple_GET_ITEM(headers, i);
        if (!PyTuple_CheckExact(pair) || PyTuple_GET_SIZE(pair) != 2 || !PyBytes_CheckExact(PyTuple_GET_ITEM(pair, 1)))
            goto defer;
        Py_ssize_t name_len;
        if (utf8_of(PyTuple_GET_ITEM(pair, 0), &name_len) == NULL || name_len > 0xFFFF
            || PyBytes_GET_SIZE(PyTuple_GET_ITEM(pair, 1)) > 0xFFFFFFFFLL)
            goto defer;
        size += 2 + name_len + 4 + PyBytes_GET_SIZE(PyTuple_GET_ITEM(pair, 1));
    }
    PyObject *frame = PyBytes_FromStringAndSize(NULL, size);
    if (frame == NULL)
        return NULL;
    if (topic_obj == NULL && size - 4 > 0xFFFFFFFFLL) {
        Py_DECREF(frame);
        goto defer;
    }
    unsigned char *p = (unsigned char *)PyBytes_AS_STRING(frame);
    if (topic_obj == NULL) {
        p = wr_u32(p, (uint32_t)(size - 4));
    } else {
        memcpy(p, topic, (size_t)topic_len);
        p += topic_len;
        *p++ = 0;
    }
    *p++ = 'D';
    *p++ = 'H';
    *p++ = VERSION;
    *p++ = 0; /* flags */
    p = wr_i64(p, seq);
    p = wr_i64(p, event_ns);
    p = wr_i64(p, publish_ns);
    p = wr_u16(p, (uint32_t)pid_len);
    p = wr_u16(p, key == Py_None ? NO_KEY : (uint32_t)key_len);
    p = wr_u16(p, (uint32_t)n_headers);
    p = wr_u32(p, (uint32_t)value_len);
    memcpy(p, pid, (size_t)pid_len);
    p += pid_len;
    if (key_len) {
        memcpy(p, PyBytes_AS_STRING(key), (size_t)key_len);
        p += key_len;
    }
    for (Py_ssize_t i = 0; i < n_headers; i++) {
        PyObject *pair = PyTuple_GET_ITEM(headers, i);
        Py_ssize_t name_len;
        const char *name = utf8_of(PyTuple_GET_ITEM(pair, 0), &name_len);
        PyObject *hvalue = PyTuple_GET_ITEM(pair, 1);
        p = wr_u16(p, (uint32_t)name_len);
        memcpy(p, name, (size_t)name_len);
        p += name_len;
        p = wr_u32(p, (uint32_t)PyBytes_GET_SIZE(hvalue));
        memcpy(p, PyBytes_AS_STRING(hvalue), (size_t)PyBytes_GET_SIZE(hvalue));
        p += PyBytes_GET_SIZE(hvalue);
    }
    memcpy(p, PyBytes_AS_STRING(value), (size_t)value_len);
    return frame;
defer:
    return NULL;
}

/* encode_frame(topic, value, key, headers, producer_id, seq, event_time_ns, publish_time_ns) */
static PyObject *encode_frame(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (!ready())
        return NULL;
    if (kwnames == NULL && nargs == 8) {
        PyObject *frame = encode_envelope(args[0], args + 1);
        if (frame != NULL || PyErr_Occurred())
            return frame;
    }
    return PyObject_Vectorcall(py_encode_frame, args, nargs, kwnames);
}

/* encode_entry(value, key, headers, producer_id, seq, event_time_ns, publish_time_ns): one
   envelope of a batch frame, packed here whole (key and headers too). */
static PyObject *encode_entry(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (!ready())
        return NULL;
    if (py_encode_entry == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "transports._framing_c.setup() got no encode_entry");
        return NULL;
    }
    if (kwnames == NULL && nargs == 7) {
        PyObject *entry = encode_envelope(NULL, args);
        if (entry != NULL || PyErr_Occurred())
            return entry;
    }
    return PyObject_Vectorcall(py_encode_entry, args, nargs, kwnames);
}

/* setup(envelope_type, encode_frame, decode_frame, decode_into): the Envelope class to build and
   the Python twins to defer to. Checks that Envelope is what new_envelope assumes. */
static PyObject *setup(PyObject *self, PyObject *args)
{
    PyObject *type, *encode, *decode, *into, *entry = NULL;
    if (!PyArg_ParseTuple(args, "O!OOO|O:setup", &PyType_Type, &type, &encode, &decode, &into, &entry))
        return NULL;
    PyTypeObject *tp = (PyTypeObject *)type;
    if (tp->tp_base != &PyBaseObject_Type || tp->tp_dictoffset != 0
        || tp->tp_basicsize != PyBaseObject_Type.tp_basicsize + N_FIELDS * (Py_ssize_t)sizeof(PyObject *)) {
        PyErr_Format(PyExc_TypeError, "%s must be a slots class of exactly %d fields with no base", tp->tp_name, N_FIELDS);
        return NULL;
    }
    Py_ssize_t offsets[N_FIELDS];
    for (int i = 0; i < N_FIELDS; i++) {
        PyObject *descr = PyObject_GetAttrString(type, FIELD_NAMES[i]);
        if (descr == NULL)
            return NULL;
        int ok = Py_IS_TYPE(descr, &PyMemberDescr_Type);
        if (ok) {
            PyMemberDef *member = ((PyMemberDescrObject *)descr)->d_member;
            ok = member->type == T_OBJECT_EX && !(member->flags & READONLY);
            offsets[i] = member->offset;
        }
        Py_DECREF(descr);
        if (!ok) {
            PyErr_Format(PyExc_TypeError, "%s.%s is not a plain object slot", tp->tp_name, FIELD_NAMES[i]);
            return NULL;
        }
    }
    memcpy(field_offset, offsets, sizeof(offsets));
    Py_INCREF(type);
    Py_XSETREF(envelope_type, tp);
    Py_XSETREF(py_encode_frame, Py_NewRef(encode));
    Py_XSETREF(py_decode_frame, Py_NewRef(decode));
    Py_XSETREF(py_decode_into, Py_NewRef(into));
    if (entry != NULL)
        Py_XSETREF(py_encode_entry, Py_NewRef(entry));
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"setup", setup, METH_VARARGS, "setup(envelope_type, encode_frame, decode_frame, decode_into[, encode_entry])"},
    {"encode_frame", (PyCFunction)(void (*)(void))encode_frame, METH_FASTCALL | METH_KEYWORDS,
     "encode_frame(topic, value, key, headers, producer_id, seq, event_time_ns, publish_time_ns)"},
    {"encode_entry", (PyCFunction)(void (*)(void))encode_entry, METH_FASTCALL | METH_KEYWORDS,
     "encode_entry(value, key, headers, producer_id, seq, event_time_ns, publish_time_ns)"},
    {"decode_frame", (PyCFunction)(void (*)(void))decode_frame, METH_FASTCALL | METH_KEYWORDS,
     "decode_frame(frame, receive_time_ns=0) -> Envelope"},
    {"decode_into", (PyCFunction)(void (*)(void))decode_into, METH_FASTCALL | METH_KEYWORDS,
     "decode_into(frame, out) -> number of envelopes appended to out"},
    {"receive_into", (PyCFunction)(void (*)(void))receive_into, METH_FASTCALL,
     "receive_into(recv, flags, again, out, max_messages, prefixes, max_frame_bytes) -> (count, frame | None)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    .m_base = PyModuleDef_HEAD_INIT,
    .m_name = "transports._framing_c",
    .m_doc = "Compiled fast path of transports.framing (see framing.py for the wire format).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__framing_c(void)
{
    minus_one = PyLong_FromLong(-1);
    zero = PyLong_FromLong(0);
    empty_tuple = PyTuple_New(0);
    if (minus_one == NULL || zero == NULL || empty_tuple == NULL)
        return NULL;
    return PyModule_Create(&module);
}
