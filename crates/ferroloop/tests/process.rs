//! `ferroloop::process`: output and status, piped stdin/stdout without deadlock, kill,
//! kill on drop and reaping of dropped children, cancellation of `wait`, errors, and no
//! descriptor left behind by hundreds of children. The same cases run with exits watched
//! by a thread in `process_thread_watch.rs`.

#[path = "process_cases.rs"]
mod cases;

#[test]
fn output_and_status() {
    cases::output_and_status();
}

#[test]
fn piped_stdin_and_stdout_do_not_deadlock() {
    cases::piped_stdin_and_stdout_do_not_deadlock();
}

#[test]
fn kill_and_try_wait() {
    cases::kill_and_try_wait();
}

#[test]
fn dropped_children_are_reaped() {
    cases::dropped_children_are_reaped();
}

#[test]
fn cancelled_wait_keeps_the_child() {
    cases::cancelled_wait_keeps_the_child();
}

#[test]
fn errors() {
    cases::errors();
}

#[test]
fn many_children_leave_no_descriptor() {
    cases::many_children_leave_no_descriptor();
}
