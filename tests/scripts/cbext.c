/* A C extension that calls back into Python, for tests/native.rs: Python → C → Python →
 * C frames, in that order, must come out of `pyprof record --native` merged that way.
 * Built by the test with cc against each interpreter's own headers, with and without
 * frame pointers. */
#include <Python.h>

/* Pure C work: the leaf of the stack. Not inlined, so that it is a frame of its own. */
static __attribute__((noinline)) unsigned long cbext_spin_loop(long n) {
    volatile unsigned long x = 0;
    for (long i = 0; i < n; i++)
        x = x * 31 + (unsigned long)i;
    return x;
}

static PyObject *cbext_spin(PyObject *self, PyObject *args) {
    long n;
    (void)self;
    if (!PyArg_ParseTuple(args, "l", &n))
        return NULL;
    return PyLong_FromUnsignedLong(cbext_spin_loop(n));
}

/* Call f() n times: a C frame between two Python frames. */
static __attribute__((noinline)) PyObject *cbext_call_back_loop(PyObject *f, long n) {
    for (long i = 0; i < n; i++) {
        PyObject *r = PyObject_CallObject(f, NULL);
        if (!r)
            return NULL;
        Py_DECREF(r);
    }
    Py_RETURN_NONE;
}

static PyObject *cbext_call_back(PyObject *self, PyObject *args) {
    PyObject *f;
    long n;
    (void)self;
    if (!PyArg_ParseTuple(args, "Ol", &f, &n))
        return NULL;
    return cbext_call_back_loop(f, n);
}

static PyMethodDef methods[] = {
    {"spin", cbext_spin, METH_VARARGS, "spin(n): n steps of C work"},
    {"call_back", cbext_call_back, METH_VARARGS, "call_back(f, n): call f() n times"},
    {NULL, NULL, 0, NULL},
};

#if PY_MAJOR_VERSION >= 3
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "cbext", NULL, -1, methods};

PyMODINIT_FUNC PyInit_cbext(void) { return PyModule_Create(&module); }
#else
PyMODINIT_FUNC initcbext(void) { Py_InitModule("cbext", methods); }
#endif
