//! The cases of `process.rs` with child exits watched by a thread per child (`waitid`),
//! as on kernels without pidfds. A separate test binary: the switch is process-wide.

#[path = "process_cases.rs"]
mod cases;

#[test]
fn all_cases_with_thread_watch() {
    ferroloop::process::__force_thread_watch(true);
    cases::output_and_status();
    cases::piped_stdin_and_stdout_do_not_deadlock();
    cases::kill_and_try_wait();
    cases::dropped_children_are_reaped();
    cases::cancelled_wait_keeps_the_child();
    cases::errors();
    cases::many_children_leave_no_descriptor();
}
