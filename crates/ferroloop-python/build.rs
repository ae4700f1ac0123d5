//! Build script: PyO3's `Py_3_X` cfgs (`#[cfg(Py_3_12)]` for version-specific C API) for
//! the interpreter being built against.
fn main() {
    pyo3_build_config::use_pyo3_cfgs();
}
