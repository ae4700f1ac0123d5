//! Child processes for Rust futures (asyncio's `create_subprocess_exec`): [`Command`] builds
//! and spawns one, [`Child`] awaits its exit, its pipes are `AsyncRead`/`AsyncWrite`.
//!
//! ```
//! use ferroloop::process::{Command, Stdio};
//!
//! ferroloop::run(async {
//!     // a pipeline: `printf` into `tr`, as a shell's `printf 'hello\n' | tr a-z A-Z`
//!     let mut first = Command::new("printf").arg("hello\\n").stdout(Stdio::piped()).spawn()?;
//!     let into_tr = first.stdout.take().unwrap().into_stdio()?;
//!     let out = Command::new("tr").args(["a-z", "A-Z"]).stdin(into_tr).output().await?;
//!     assert!(first.wait().await?.success());
//!     assert_eq!(out.stdout, b"HELLO\n");
//!     Ok::<_, std::io::Error>(())
//! })
//! .unwrap();
//! ```
//!
//! Decision: `std::process::Command` does the spawning (its `fork`/`exec`, `posix_spawn`
//! where it applies, environment and `pre_exec` handling); this module adds the loop's side:
//! the parent's ends of the pipes registered with the reactor, and the exit awaited through
//! a pidfd (see `child.rs`). Every other option of `std`'s builder is reached through
//! [`Command::as_std_mut`].
//!
//! Threading: [`Command`] is `Send` (it is `std`'s builder); [`Child`] and its pipes belong
//! to the loop thread that called [`Command::spawn`], which must be inside a running loop.

mod child;
mod pipes;

use std::ffi::OsStr;
use std::io;
use std::path::Path;

#[doc(hidden)]
pub use child::__force_thread_watch;
pub use child::Child;
pub use pipes::{ChildStderr, ChildStdin, ChildStdout};
pub use std::process::{ExitStatus, Output, Stdio};

/// A process builder: `std::process::Command`'s methods, spawning onto the running loop.
#[derive(Debug)]
pub struct Command {
    std: std::process::Command,
    kill_on_drop: bool,
    // which streams the caller chose (`output` pipes the others)
    stdin_set: bool,
    stdout_set: bool,
    stderr_set: bool,
}

impl Command {
    /// A command to run `program` (looked up in `PATH` if it has no slash), inheriting this
    /// process's environment, working directory and standard streams.
    pub fn new<S: AsRef<OsStr>>(program: S) -> Command {
        Command::from(std::process::Command::new(program))
    }

    /// Add an argument.
    pub fn arg<S: AsRef<OsStr>>(&mut self, arg: S) -> &mut Command {
        self.std.arg(arg);
        self
    }

    /// Add arguments.
    pub fn args<I, S>(&mut self, args: I) -> &mut Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.std.args(args);
        self
    }

    /// Set an environment variable for the child.
    pub fn env<K: AsRef<OsStr>, V: AsRef<OsStr>>(&mut self, key: K, val: V) -> &mut Command {
        self.std.env(key, val);
        self
    }

    /// Set environment variables for the child.
    pub fn envs<I, K, V>(&mut self, vars: I) -> &mut Command
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        self.std.envs(vars);
        self
    }

    /// Remove an environment variable from the child's environment.
    pub fn env_remove<K: AsRef<OsStr>>(&mut self, key: K) -> &mut Command {
        self.std.env_remove(key);
        self
    }

    /// Start the child with an empty environment (plus what `env` adds).
    pub fn env_clear(&mut self) -> &mut Command {
        self.std.env_clear();
        self
    }

    /// The child's working directory.
    pub fn current_dir<P: AsRef<Path>>(&mut self, dir: P) -> &mut Command {
        self.std.current_dir(dir);
        self
    }

    /// The child's standard input (`Stdio::piped()` gives [`Child::stdin`]).
    pub fn stdin<T: Into<Stdio>>(&mut self, cfg: T) -> &mut Command {
        self.std.stdin(cfg);
        self.stdin_set = true;
        self
    }

    /// The child's standard output (`Stdio::piped()` gives [`Child::stdout`]).
    pub fn stdout<T: Into<Stdio>>(&mut self, cfg: T) -> &mut Command {
        self.std.stdout(cfg);
        self.stdout_set = true;
        self
    }

    /// The child's standard error (`Stdio::piped()` gives [`Child::stderr`]).
    pub fn stderr<T: Into<Stdio>>(&mut self, cfg: T) -> &mut Command {
        self.std.stderr(cfg);
        self.stderr_set = true;
        self
    }

    /// Kill the child (`SIGKILL`) when its [`Child`] is dropped before its exit was
    /// collected. Off by default: a dropped child runs on, and is reaped when it exits.
    pub fn kill_on_drop(&mut self, kill: bool) -> &mut Command {
        self.kill_on_drop = kill;
        self
    }

    /// `std`'s builder, for the options not repeated here (`uid`, `process_group`,
    /// `pre_exec`, `arg0`...).
    pub fn as_std_mut(&mut self) -> &mut std::process::Command {
        &mut self.std
    }

    /// `std`'s builder.
    pub fn as_std(&self) -> &std::process::Command {
        &self.std
    }

    /// Start the child on the running loop.
    ///
    /// Errors: `std`'s (`NotFound` for a missing program, `PermissionDenied`...), and
    /// outside a running loop (the child is then killed if `kill_on_drop`, and reaped).
    pub fn spawn(&mut self) -> io::Result<Child> {
        if !crate::runtime::core::with_current(|c| c.is_some()) {
            return Err(crate::runtime::io::no_loop_error());
        }
        Child::new(self.std.spawn()?, self.kill_on_drop)
    }

    /// Run the child to its end with the standard streams as configured (inherited by
    /// default): its exit status.
    pub async fn status(&mut self) -> io::Result<ExitStatus> {
        self.spawn()?.wait().await
    }

    /// Run the child to its end, collecting what it writes: standard output and error are
    /// piped, and standard input is empty, unless set otherwise on this builder.
    pub async fn output(&mut self) -> io::Result<Output> {
        let defaults = [!self.stdin_set, !self.stdout_set, !self.stderr_set];
        if defaults[0] {
            self.std.stdin(Stdio::null());
        }
        if defaults[1] {
            self.std.stdout(Stdio::piped());
        }
        if defaults[2] {
            self.std.stderr(Stdio::piped());
        }
        let child = self.spawn();
        // back to what `spawn` uses by default for the streams the caller did not choose
        if defaults[0] {
            self.std.stdin(Stdio::inherit());
        }
        if defaults[1] {
            self.std.stdout(Stdio::inherit());
        }
        if defaults[2] {
            self.std.stderr(Stdio::inherit());
        }
        child?.wait_with_output().await
    }
}

impl From<std::process::Command> for Command {
    /// Wrap a configured `std` builder. Its stdio choices cannot be read back, so
    /// [`output`](Command::output) pipes standard output and error and empties standard
    /// input unless they are set again on the returned builder.
    fn from(std: std::process::Command) -> Command {
        Command {
            std,
            kill_on_drop: false,
            stdin_set: false,
            stdout_set: false,
            stderr_set: false,
        }
    }
}
