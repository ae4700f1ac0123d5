//! Timer deadlines as asyncio's heap orders them: a NaN due at once, a number beyond a
//! float an infinity of its sign.
//!
//! Threading: any thread holding the GIL.

use super::*;

/// The timer heap's key for a deadline object: its float value, except that a NaN is due at
/// once (asyncio's `_run_once` pops a NaN from the top of its heap, `nan >= end_time` being
/// false; as a float key a NaN would sort after every timer and never fire, or, with its sign
/// bit set, sort first and hold every other timer back) and a number beyond a float (asyncio
/// keeps an int like `10**400`) is an infinity of its sign: never due, or due at once.
pub(super) fn deadline_key(when: &Bound<'_, PyAny>) -> PyResult<f64> {
    let value = match plain_number(when) {
        Ok(Some(w)) => Ok(w),
        Ok(None) => when.extract::<f64>(),
        Err(e) => Err(e),
    };
    match value {
        Ok(w) => Ok(float_deadline_key(w)),
        Err(e) if e.is_instance_of::<PyOverflowError>(when.py()) => Ok(if when.gt(0)? {
            f64::INFINITY
        } else {
            f64::NEG_INFINITY
        }),
        Err(e) => Err(e),
    }
}

/// `deadline_key` of a float deadline.
#[inline]
pub(super) fn float_deadline_key(when: f64) -> f64 {
    if when.is_nan() {
        f64::NEG_INFINITY
    } else {
        when
    }
}

/// The value of an exact `float` or `int`, as `float.__add__` reads it (an int beyond a float
/// is its `OverflowError`); `None` for any other type. An int is read directly: through
/// `PyFloat_AsDouble` it became a float object first (about 170 instructions).
pub(super) fn plain_number(obj: &Bound<'_, PyAny>) -> PyResult<Option<f64>> {
    let p = obj.as_ptr();
    // SAFETY: p is a live object; the checks read its type, the reads are the type's own.
    unsafe {
        if ffi::PyFloat_CheckExact(p) != 0 {
            return Ok(Some(ffi::PyFloat_AS_DOUBLE(p)));
        }
        if ffi::PyLong_CheckExact(p) != 0 {
            let v = ffi::PyLong_AsDouble(p);
            if v == -1.0 && !ffi::PyErr_Occurred().is_null() {
                return Err(PyErr::fetch(obj.py()));
            }
            return Ok(Some(v));
        }
    }
    Ok(None)
}
