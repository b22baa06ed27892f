/* The worker's side of a pool channel (gopool/shm/channel.go), for processes
 * that never load the Go runtime: pool workers, which may fork freely.
 *
 * A worker reads tasks from the channel's Down stream and writes results to
 * its Up stream, ringing the pool's doorbell after each piece it publishes.
 * The layout and the protocol are the Go core's; the constants come from
 * _wire.h, which the Go tests generate and check (pybind/wire_test.go).
 *
 * Memory order: every shared word is accessed with sequentially consistent
 * atomics, as Go's sync/atomic does, so the two implementations agree on
 * what each side may see. Blocking waits release the GIL and sleep on
 * futexes in slices, checking for Python signals between slices.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "_wire.h"

#define SLICE_NS 1000000000LL /* a blocking wait checks for signals this often */

/* ---- shared words ------------------------------------------------------ */

static inline uint32_t load32(const void *p) { return __atomic_load_n((const uint32_t *)p, __ATOMIC_SEQ_CST); }
static inline void store32(void *p, uint32_t v) { __atomic_store_n((uint32_t *)p, v, __ATOMIC_SEQ_CST); }
static inline uint64_t load64(const void *p) { return __atomic_load_n((const uint64_t *)p, __ATOMIC_SEQ_CST); }
static inline void store64(void *p, uint64_t v) { __atomic_store_n((uint64_t *)p, v, __ATOMIC_SEQ_CST); }

static long futex(void *addr, int op, uint32_t val, const struct timespec *ts) {
    /* Not FUTEX_PRIVATE_FLAG: the word is shared between processes. */
    return syscall(SYS_futex, addr, op, val, ts, NULL, 0);
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* wake_all wakes the sleepers on addr if its flag says there may be any. */
static void wake_all(void *addr, void *flag) {
    if (load32(flag) != 0 && __atomic_exchange_n((uint32_t *)flag, 0, __ATOMIC_SEQ_CST) != 0)
        futex(addr, FUTEX_WAKE, INT_MAX, NULL);
}

/* wait_change waits until *addr != seen, spinning for spin_ns first, for at
 * most timeout_ns. It returns whether the word changed. Call without the GIL. */
static int wait_change(void *addr, uint32_t seen, void *flag, int64_t timeout_ns, int64_t spin_ns) {
    if (load32(addr) != seen)
        return 1;
    int64_t start = now_ns();
    if (spin_ns > 0) {
        int64_t spin_end = start + (spin_ns < timeout_ns ? spin_ns : timeout_ns);
        do {
            for (int i = 0; i < 64; i++)
                if (load32(addr) != seen)
                    return 1;
        } while (now_ns() < spin_end);
    }
    for (;;) {
        int64_t left = start + timeout_ns - now_ns();
        if (left <= 0)
            return load32(addr) != seen;
        store32(flag, 1);
        if (load32(addr) != seen)
            return 1;
        struct timespec ts = {left / 1000000000LL, left % 1000000000LL};
        futex(addr, FUTEX_WAIT, seen, &ts);
        if (load32(addr) != seen)
            return 1;
    }
}

/* ---- streams ----------------------------------------------------------- */

typedef struct {
    uint8_t *ring;
    uint32_t size;
    uint8_t *tail, *head, *data_waiters, *space_waiters;
} stream;

static uint32_t readable(const stream *s) { return load32(s->tail) - load32(s->head); }
static uint32_t writable(const stream *s) { return s->size - (load32(s->tail) - load32(s->head)); }

static void copy_in(stream *s, uint32_t pos, const uint8_t *src, uint32_t n) {
    if (n == 0)
        return;
    uint32_t off = pos & (s->size - 1), first = s->size - off;
    if (first > n)
        first = n;
    memcpy(s->ring + off, src, first);
    memcpy(s->ring, src + first, n - first);
}

static void copy_out(const stream *s, uint32_t pos, uint8_t *dst, uint32_t n) {
    uint32_t off = pos & (s->size - 1), first = s->size - off;
    if (first > n)
        first = n;
    memcpy(dst, s->ring + off, first);
    memcpy(dst + first, s->ring, n - first);
}

/* ---- the Channel object ------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    uint8_t *mem;
    size_t mem_len;
    uint8_t *bell;
    stream down, up;
    int in_call; /* a read or write is under way: no reentry (threads, signal handlers) */
} Channel;

static void *map_fd(int fd, size_t len) {
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    return p == MAP_FAILED ? NULL : p;
}

static int Channel_init(Channel *self, PyObject *args, PyObject *kwds) {
    int chan_fd, bell_fd;
    static char *names[] = {"channel_fd", "doorbell_fd", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "ii", names, &chan_fd, &bell_fd))
        return -1;
    if (self->mem != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "channel already open");
        return -1;
    }
    uint8_t header[16];
    if (pread(chan_fd, header, sizeof header, 0) != (ssize_t)sizeof header) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    uint64_t magic;
    uint32_t version, ring_size;
    memcpy(&magic, header + GOPOOL_CHAN_OFF_MAGIC, 8);
    memcpy(&version, header + GOPOOL_CHAN_OFF_VERSION, 4);
    memcpy(&ring_size, header + GOPOOL_CHAN_OFF_RING_SIZE, 4);
    if (magic != GOPOOL_CHANNEL_MAGIC || version != GOPOOL_CHANNEL_VERSION || ring_size < 4096 ||
        (ring_size & (ring_size - 1)) != 0) {
        PyErr_Format(PyExc_ValueError, "descriptor %d is not a gopool channel", chan_fd);
        return -1;
    }
    size_t len = GOPOOL_CHANNEL_HEADER_SIZE + 2 * (size_t)ring_size;
    uint8_t *mem = map_fd(chan_fd, len);
    if (mem == NULL) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    uint8_t *bell = map_fd(bell_fd, GOPOOL_DOORBELL_SIZE);
    if (bell == NULL || load64(bell + GOPOOL_BELL_OFF_MAGIC) != GOPOOL_DOORBELL_MAGIC) {
        if (bell == NULL)
            PyErr_SetFromErrno(PyExc_OSError);
        else {
            munmap(bell, GOPOOL_DOORBELL_SIZE);
            PyErr_Format(PyExc_ValueError, "descriptor %d is not a gopool doorbell", bell_fd);
        }
        munmap(mem, len);
        return -1;
    }
    self->mem = mem;
    self->mem_len = len;
    self->bell = bell;
    self->down = (stream){mem + GOPOOL_CHANNEL_HEADER_SIZE, ring_size,
                          mem + GOPOOL_CHAN_OFF_DOWN_TAIL, mem + GOPOOL_CHAN_OFF_DOWN_HEAD,
                          mem + GOPOOL_CHAN_OFF_DOWN_DATA_WAITERS, mem + GOPOOL_CHAN_OFF_DOWN_SPACE_WAITERS};
    self->up = (stream){mem + GOPOOL_CHANNEL_HEADER_SIZE + ring_size, ring_size,
                        mem + GOPOOL_CHAN_OFF_UP_TAIL, mem + GOPOOL_CHAN_OFF_UP_HEAD,
                        mem + GOPOOL_CHAN_OFF_UP_DATA_WAITERS, mem + GOPOOL_CHAN_OFF_UP_SPACE_WAITERS};
    return 0;
}

static void Channel_unmap(Channel *self) {
    if (self->mem != NULL) {
        munmap(self->mem, self->mem_len);
        munmap(self->bell, GOPOOL_DOORBELL_SIZE);
        self->mem = NULL;
        self->bell = NULL;
    }
}

static void Channel_dealloc(Channel *self) {
    Channel_unmap(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int check_open(Channel *self) {
    if (self->mem == NULL) {
        PyErr_SetString(PyExc_ValueError, "channel is closed");
        return -1;
    }
    if (self->in_call) {
        PyErr_SetString(PyExc_RuntimeError, "channel is in use by another call");
        return -1;
    }
    return 0;
}

static void ring_bell(Channel *self) {
    __atomic_add_fetch((uint32_t *)(self->bell + GOPOOL_BELL_OFF_COUNT), 1, __ATOMIC_SEQ_CST);
    wake_all(self->bell + GOPOOL_BELL_OFF_COUNT, self->bell + GOPOOL_BELL_OFF_SLEEPERS);
}

/* wait_readable waits until at least n bytes are readable on down, in
 * slices; it returns -1 with a Python exception set if a signal handler
 * raised. Called with the GIL; releases it while waiting. */
static int wait_readable(Channel *self, uint32_t n) {
    stream *s = &self->down;
    while (readable(s) < n) {
        uint32_t seen = load32(s->tail);
        if (readable(s) >= n)
            break;
        int64_t spin = (int64_t)load32(self->bell + GOPOOL_BELL_OFF_SPIN);
        Py_BEGIN_ALLOW_THREADS
        wait_change(s->tail, seen, s->data_waiters, SLICE_NS, spin);
        Py_END_ALLOW_THREADS
        if (PyErr_CheckSignals() < 0)
            return -1;
    }
    return 0;
}

/* consume frees n bytes of down and wakes the core's writer if it waits. */
static void consume(stream *s, uint32_t n) {
    store32(s->head, load32(s->head) + n);
    wake_all(s->head, s->space_waiters);
}

/* read_header reads the header of down's next message. */
static int read_header(Channel *self, uint32_t *kind, uint64_t *tag, uint64_t *length) {
    stream *s = &self->down;
    if (wait_readable(self, GOPOOL_MESSAGE_HEADER_SIZE) < 0)
        return -1;
    uint8_t hdr[GOPOOL_MESSAGE_HEADER_SIZE];
    copy_out(s, load32(s->head), hdr, sizeof hdr);
    uint32_t zero;
    memcpy(length, hdr, 8);
    memcpy(tag, hdr + 8, 8);
    memcpy(kind, hdr + 16, 4);
    memcpy(&zero, hdr + 20, 4);
    if (zero != 0 || *length > (uint64_t)PY_SSIZE_T_MAX) {
        PyErr_SetString(PyExc_ValueError, "corrupt message header in the channel");
        return -1;
    }
    consume(s, GOPOOL_MESSAGE_HEADER_SIZE);
    return 0;
}

/* read_exact copies the next n bytes of down into dst, waiting for them as
 * they arrive (a message larger than the ring comes in pieces). */
static int read_exact(Channel *self, uint8_t *dst, uint64_t n) {
    stream *s = &self->down;
    uint64_t done = 0;
    while (done < n) {
        uint32_t avail = readable(s);
        if (avail == 0) {
            if (wait_readable(self, 1) < 0)
                return -1;
            continue;
        }
        uint32_t k = n - done < avail ? (uint32_t)(n - done) : avail;
        if (k > 65536) {
            Py_BEGIN_ALLOW_THREADS
            copy_out(s, load32(s->head), dst + done, k);
            Py_END_ALLOW_THREADS
        } else {
            copy_out(s, load32(s->head), dst + done, k);
        }
        consume(s, k);
        done += k;
    }
    return 0;
}

/* read_bytes reads the next n bytes of down into a new bytes object. */
static PyObject *read_bytes(Channel *self, uint64_t n) {
    PyObject *data = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)n);
    if (data == NULL)
        return NULL;
    if (read_exact(self, (uint8_t *)PyBytes_AS_STRING(data), n) < 0) {
        Py_DECREF(data);
        return NULL;
    }
    return data;
}

/* read_message reads the next message of down: its header into kind/tag,
 * its payload into a new bytes object. */
static PyObject *read_message(Channel *self, uint32_t *kind, uint64_t *tag) {
    uint64_t length;
    if (read_header(self, kind, tag, &length) < 0)
        return NULL;
    return read_bytes(self, length);
}

/* read_records reads a payload of length bytes made of records ([u64
 * length][bytes], as gopool._serialize.pack writes them) into a tuple with
 * one bytes object per record: a task's function, its arguments' pickle and
 * each large argument apart, so that no large argument is copied again. */
static PyObject *read_records(Channel *self, uint64_t length) {
    PyObject *parts = PyList_New(0);
    if (parts == NULL)
        return NULL;
    uint64_t done = 0;
    while (done < length) {
        uint64_t n;
        if (length - done < 8 || read_exact(self, (uint8_t *)&n, 8) < 0)
            goto fail;
        done += 8;
        if (n > length - done)
            goto fail;
        PyObject *part = read_bytes(self, n);
        if (part == NULL)
            goto fail;
        done += n;
        int err = PyList_Append(parts, part);
        Py_DECREF(part);
        if (err < 0)
            goto fail;
    }
    PyObject *tuple = PyList_AsTuple(parts);
    Py_DECREF(parts);
    return tuple;
fail:
    Py_DECREF(parts);
    if (!PyErr_Occurred())
        PyErr_SetString(PyExc_ValueError, "corrupt task records in the channel");
    return NULL;
}

/* begin: the Revoke/Begin protocol of shm.Channel. */
static int begin_task(Channel *self, uint64_t seq) {
    store64(self->mem + GOPOOL_CHAN_OFF_STARTED, seq);
    uint64_t bit = (uint64_t)1 << (seq % 64);
    uint64_t old = __atomic_fetch_and((uint64_t *)(self->mem + GOPOOL_CHAN_OFF_REVOKED), ~bit, __ATOMIC_SEQ_CST);
    if (old & bit)
        return 0;
    store64(self->mem + GOPOOL_CHAN_OFF_RUNNING, seq);
    return 1;
}

/* write_message writes a whole message to up, waiting for room as it must.
 * Called with the GIL; releases it while copying and waiting. */
static void write_message(Channel *self, uint32_t kind, uint64_t tag, const uint8_t *data, uint64_t length) {
    stream *s = &self->up;
    uint8_t hdr[GOPOOL_MESSAGE_HEADER_SIZE] = {0};
    memcpy(hdr, &length, 8);
    memcpy(hdr + 8, &tag, 8);
    memcpy(hdr + 16, &kind, 4);
    int header_sent = 0;
    uint64_t done = 0;
    Py_BEGIN_ALLOW_THREADS
    for (;;) {
        uint32_t tail = load32(s->tail), pos = tail;
        uint32_t free = s->size - (tail - load32(s->head));
        if (!header_sent && free >= GOPOOL_MESSAGE_HEADER_SIZE) {
            copy_in(s, pos, hdr, sizeof hdr);
            pos += GOPOOL_MESSAGE_HEADER_SIZE;
            free -= GOPOOL_MESSAGE_HEADER_SIZE;
            header_sent = 1;
        }
        if (header_sent) {
            uint32_t n = length - done < free ? (uint32_t)(length - done) : free;
            copy_in(s, pos, data + done, n);
            pos += n;
            done += n;
        }
        if (pos != tail) {
            store32(s->tail, pos);
            ring_bell(self);
        }
        if (header_sent && done == length)
            break;
        /* Wait for the core to read and free room. Signals are not checked
         * here: a half-written message cannot be taken back, and the
         * parent's death kills this process anyway. */
        uint32_t needed = header_sent ? 1 : GOPOOL_MESSAGE_HEADER_SIZE;
        uint32_t head = load32(s->head);
        if (s->size - (load32(s->tail) - head) < needed)
            wait_change(s->head, head, s->space_waiters, SLICE_NS, 0);
    }
    Py_END_ALLOW_THREADS
}

static PyObject *Channel_next_task(Channel *self, PyObject *unused) {
    if (check_open(self) < 0)
        return NULL;
    self->in_call = 1;
    PyObject *result = NULL;
    for (;;) {
        uint32_t kind;
        uint64_t tag, length;
        if (read_header(self, &kind, &tag, &length) < 0)
            break;
        PyObject *payload = kind == GOPOOL_MSG_TASK ? read_records(self, length) : read_bytes(self, length);
        if (payload == NULL)
            break;
        if (kind == GOPOOL_MSG_TASK) {
            if (!begin_task(self, tag)) {
                Py_DECREF(payload);
                write_message(self, GOPOOL_MSG_SKIPPED, tag, NULL, 0);
                continue;
            }
            result = Py_BuildValue("(KN)", (unsigned long long)tag, payload);
        } else if (kind == GOPOOL_MSG_STOP) {
            Py_DECREF(payload);
            Py_INCREF(Py_None);
            result = Py_None;
        } else {
            Py_DECREF(payload);
            PyErr_Format(PyExc_ValueError, "unexpected message kind %u in the channel", kind);
        }
        break;
    }
    self->in_call = 0;
    return result;
}

static PyObject *Channel_read_init(Channel *self, PyObject *unused) {
    if (check_open(self) < 0)
        return NULL;
    self->in_call = 1;
    uint32_t kind;
    uint64_t tag;
    PyObject *payload = read_message(self, &kind, &tag);
    self->in_call = 0;
    if (payload != NULL && kind != GOPOOL_MSG_INIT) {
        Py_DECREF(payload);
        PyErr_Format(PyExc_ValueError, "expected the init message, got kind %u", kind);
        return NULL;
    }
    return payload;
}

static PyObject *send(Channel *self, PyObject *args, int ends_task) {
    unsigned int kind;
    unsigned long long tag;
    Py_buffer data;
    if (!PyArg_ParseTuple(args, "IKy*", &kind, &tag, &data))
        return NULL;
    if (check_open(self) < 0) {
        PyBuffer_Release(&data);
        return NULL;
    }
    if (ends_task)
        store64(self->mem + GOPOOL_CHAN_OFF_RUNNING, 0);
    self->in_call = 1;
    write_message(self, kind, tag, data.buf, (uint64_t)data.len);
    self->in_call = 0;
    PyBuffer_Release(&data);
    Py_RETURN_NONE;
}

static PyObject *Channel_answer(Channel *self, PyObject *args) { return send(self, args, 1); }
static PyObject *Channel_send(Channel *self, PyObject *args) { return send(self, args, 0); }

static PyObject *Channel_set_phase(Channel *self, PyObject *arg) {
    unsigned long phase = PyLong_AsUnsignedLong(arg);
    if (phase == (unsigned long)-1 && PyErr_Occurred())
        return NULL;
    if (self->mem == NULL) {
        PyErr_SetString(PyExc_ValueError, "channel is closed");
        return NULL;
    }
    store32(self->mem + GOPOOL_CHAN_OFF_PHASE, (uint32_t)phase);
    Py_RETURN_NONE;
}

static PyObject *Channel_word64(Channel *self, size_t offset) {
    if (self->mem == NULL) {
        PyErr_SetString(PyExc_ValueError, "channel is closed");
        return NULL;
    }
    return PyLong_FromUnsignedLongLong(load64(self->mem + offset));
}

static PyObject *Channel_running(Channel *self, PyObject *unused) {
    return Channel_word64(self, GOPOOL_CHAN_OFF_RUNNING);
}

static PyObject *Channel_soft_limit(Channel *self, PyObject *unused) {
    return Channel_word64(self, GOPOOL_CHAN_OFF_SOFT_LIMIT);
}

static PyObject *Channel_close(Channel *self, PyObject *unused) {
    if (self->in_call) {
        PyErr_SetString(PyExc_RuntimeError, "channel is in use by another call");
        return NULL;
    }
    Channel_unmap(self);
    Py_RETURN_NONE;
}

static PyMethodDef Channel_methods[] = {
    {"read_init", (PyCFunction)Channel_read_init, METH_NOARGS,
     "read_init() -> bytes\n\nWait for the init message and return its payload."},
    {"next_task", (PyCFunction)Channel_next_task, METH_NOARGS,
     "next_task() -> (seq, parts) or None\n\n"
     "Wait for the next task and begin it; None when the core says stop. Tasks the core\n"
     "revoked are skipped (and answered as such) on the way."},
    {"answer", (PyCFunction)Channel_answer, METH_VARARGS,
     "answer(kind, seq, data)\n\nEnd the running task and send its result."},
    {"send", (PyCFunction)Channel_send, METH_VARARGS,
     "send(kind, tag, data)\n\nSend a message up (init failure, retiring)."},
    {"set_phase", (PyCFunction)Channel_set_phase, METH_O,
     "set_phase(phase)\n\nRecord the worker's phase (PHASE_* in _wire) for the core."},
    {"running", (PyCFunction)Channel_running, METH_NOARGS,
     "running() -> int\n\nThe sequence number of the task being run, 0 between tasks."},
    {"soft_limit", (PyCFunction)Channel_soft_limit, METH_NOARGS,
     "soft_limit() -> int\n\nThe last task the core said passed its soft time limit."},
    {"close", (PyCFunction)Channel_close, METH_NOARGS, "close()\n\nUnmap the channel."},
    {NULL}};

static PyTypeObject ChannelType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "gopool._channel.Channel",
    .tp_basicsize = sizeof(Channel),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Channel(channel_fd, doorbell_fd)\n\nA pool worker's side of its channel to the core.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Channel_init,
    .tp_dealloc = (destructor)Channel_dealloc,
    .tp_methods = Channel_methods,
};

static PyObject *set_parent_death_signal(PyObject *module, PyObject *arg) {
    long sig = PyLong_AsLong(arg);
    if (sig == -1 && PyErr_Occurred())
        return NULL;
    if (prctl(PR_SET_PDEATHSIG, sig) != 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"set_parent_death_signal", set_parent_death_signal, METH_O,
     "set_parent_death_signal(sig)\n\nprctl(PR_SET_PDEATHSIG, sig): get sig when the parent dies."},
    {NULL}};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "gopool._channel",
    "A pool worker's side of its shared-memory channel to gopool's Go core.", -1, module_methods};

PyMODINIT_FUNC PyInit__channel(void) {
    if (PyType_Ready(&ChannelType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&ChannelType);
    if (PyModule_AddObject(m, "Channel", (PyObject *)&ChannelType) < 0) {
        Py_DECREF(&ChannelType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
