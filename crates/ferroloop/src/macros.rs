//! `select!`, `join!` and `try_join!`: wait on up to eight futures of any output types.
//!
//! Decision: declarative macros, no proc-macro crate. Each expands to the futures pinned on
//! the caller's stack and one `poll_fn` that polls them in the order written; the branch
//! bodies of `select!` run after it, in the caller's own scope (so `return`, `?`, `break` and
//! borrows work as in any `match`). The hidden identifiers `_0`..`_7` are the macro's own
//! (macro hygiene keeps them apart from the caller's names).
//!
//! Threading: the futures run where the macro's future is polled.

/// Wait for the first of several futures; run the branch of the one that finished, dropping
/// (cancelling) the others. Futures are polled in the order written, so when several are
/// ready in the same poll the first one written wins (asyncio's `wait(FIRST_COMPLETED)` makes
/// no promise; this one is deterministic). Up to eight branches; each pattern must be
/// irrefutable (bind the output, then `match` it in the body).
///
/// ```
/// use std::time::Duration;
/// let r = ferroloop::run(async {
///     ferroloop::select! {
///         _ = ferroloop::sleep(Duration::from_secs(5)) => "slow",
///         v = async { 42 } => if v == 42 { "value" } else { "other" },
///         _ = ferroloop::sleep(Duration::from_millis(1)) => "fast",
///     }
/// });
/// assert_eq!(r, "value");
/// ```
#[macro_export]
macro_rules! select {
    ( $( $pat:pat = $fut:expr => $body:expr ),+ $(,)? ) => {
        $crate::__select_impl!(
            [_0 _1 _2 _3 _4 _5 _6 _7] [] $( ($pat, $fut, $body) )+
        )
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __select_impl {
    // pair the next branch with the next hidden name
    ( [$id:ident $($ids:ident)*] [$($done:tt)*] ($pat:pat, $fut:expr, $body:expr) $($rest:tt)* ) => {
        $crate::__select_impl!([$($ids)*] [$($done)* ($id, $pat, $fut, $body)] $($rest)*)
    };
    ( [] [$($done:tt)*] ($pat:pat, $fut:expr, $body:expr) $($rest:tt)* ) => {
        ::core::compile_error!("select!: at most 8 branches")
    };
    // every branch named: poll them in order, then run the winner's body
    ( [$($ids:ident)*] [$( ($id:ident, $pat:pat, $fut:expr, $body:expr) )+] ) => {{
        #[allow(non_camel_case_types)]
        enum __SelectOut<$($id),+> { $( $id($id) ),+ }
        $( let mut $id = ::core::pin::pin!($fut); )+
        let __out = ::core::future::poll_fn(|__cx| {
            $(
                if let ::core::task::Poll::Ready(v) =
                    ::core::future::Future::poll($id.as_mut(), __cx)
                {
                    return ::core::task::Poll::Ready(__SelectOut::$id(v));
                }
            )+
            ::core::task::Poll::Pending
        })
        .await;
        match __out {
            $( __SelectOut::$id($pat) => $body, )+
        }
    }};
}

/// Wait for every future and give their outputs as a tuple, in the order written (each
/// future is polled only until it finishes). Up to eight futures, of any output types.
///
/// ```
/// let (a, b) = ferroloop::run(async {
///     ferroloop::join!(async { 1 }, async { "two" })
/// });
/// assert_eq!((a, b), (1, "two"));
/// ```
#[macro_export]
macro_rules! join {
    ( $( $fut:expr ),+ $(,)? ) => {
        $crate::__join_impl!(join [_0 _1 _2 _3 _4 _5 _6 _7] [] $( ($fut) )+)
    };
}

/// Wait for every future of `Result`s; the first `Err` cancels (drops) the others and is
/// returned, else `Ok` of the outputs as a tuple, in the order written. The futures must
/// share the error type. Up to eight.
///
/// ```
/// let r: Result<(i32, &str), String> = ferroloop::run(async {
///     ferroloop::try_join!(async { Ok(1) }, async { Ok("two") })
/// });
/// assert_eq!(r, Ok((1, "two")));
/// ```
#[macro_export]
macro_rules! try_join {
    ( $( $fut:expr ),+ $(,)? ) => {
        $crate::__join_impl!(try [_0 _1 _2 _3 _4 _5 _6 _7] [] $( ($fut) )+)
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __join_impl {
    ( $kind:ident [$id:ident $($ids:ident)*] [$($done:tt)*] ($fut:expr) $($rest:tt)* ) => {
        $crate::__join_impl!($kind [$($ids)*] [$($done)* ($id, $fut)] $($rest)*)
    };
    ( $kind:ident [] [$($done:tt)*] ($fut:expr) $($rest:tt)* ) => {
        ::core::compile_error!("join!/try_join!: at most 8 futures")
    };
    ( join [$($ids:ident)*] [$( ($id:ident, $fut:expr) )+] ) => {{
        $( let mut $id = ::core::pin::pin!($crate::__private::MaybeDone::new($fut)); )+
        ::core::future::poll_fn(|__cx| {
            let mut __all = true;
            $( __all &= $id.as_mut().poll_done(__cx); )+
            if __all {
                ::core::task::Poll::Ready(( $( $id.as_mut().take(), )+ ))
            } else {
                ::core::task::Poll::Pending
            }
        })
        .await
    }};
    ( try [$($ids:ident)*] [$( ($id:ident, $fut:expr) )+] ) => {{
        $( let mut $id = ::core::pin::pin!($crate::__private::MaybeDone::new($fut)); )+
        ::core::future::poll_fn(|__cx| {
            let mut __all = true;
            $(
                if $id.as_mut().poll_done(__cx) {
                    if let ::core::result::Result::Err(_) = $id.as_mut().output() {
                        let e = match $id.as_mut().take() {
                            ::core::result::Result::Err(e) => e,
                            ::core::result::Result::Ok(_) => ::core::unreachable!(),
                        };
                        return ::core::task::Poll::Ready(::core::result::Result::Err(e));
                    }
                } else {
                    __all = false;
                }
            )+
            if __all {
                ::core::task::Poll::Ready(::core::result::Result::Ok((
                    $(
                        match $id.as_mut().take() {
                            ::core::result::Result::Ok(v) => v,
                            ::core::result::Result::Err(_) => ::core::unreachable!(),
                        },
                    )+
                )))
            } else {
                ::core::task::Poll::Pending
            }
        })
        .await
    }};
}

/// `#[ferroloop::main]` refuses what it cannot run (these must not compile):
///
/// ```compile_fail
/// #[ferroloop::main]
/// fn main() {} // not async
/// ```
///
/// ```compile_fail
/// #[ferroloop::main]
/// async fn main(n: u32) {} // arguments
/// ```
///
/// ```compile_fail
/// #[ferroloop::test(flavor)]
/// async fn t() {} // attribute arguments
/// ```
#[allow(dead_code)]
fn attribute_errors() {}
