//! The Linux backend of the OS seam: one module per concern (see `sys/mod.rs` for what
//! each provides and who uses it).

pub(crate) mod addr;
pub(crate) mod clock;
pub mod datagram;
pub(crate) mod poller;
pub(crate) mod process;
pub(crate) mod signal;
pub(crate) mod socket;
pub mod waker;

pub(crate) use poller::Poller;
