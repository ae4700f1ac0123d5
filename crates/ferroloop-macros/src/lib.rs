//! `#[ferroloop::main]` and `#[ferroloop::test]`: an `async fn` run to completion on a new
//! ferroloop loop (`ferroloop::run`), as `asyncio.run(main())` runs a coroutine.
//!
//! Decision: no `syn`/`quote`. The attribute only needs to find the `async` keyword, check
//! that the function takes no arguments, and wrap its body, so it walks the token stream
//! itself: the macro crate builds in a moment and adds no dependency to ferroloop's users.
//! Errors are `compile_error!`s pointing at the offending tokens.
//!
//! Expansion (`#[ferroloop::main] async fn main() -> R { BODY }`):
//!
//! ```text
//! fn main() -> R { ::ferroloop::run(async move BODY) }
//! ```
//!
//! The body's return type (with `?`) is inferred from `R` through `run`'s signature.
//! `#[ferroloop::test]` adds `#[test]`; other attributes (`#[should_panic]`, `#[ignore]`)
//! are kept.
//!
//! Threading: compile time only.

use proc_macro::{Delimiter, Group, Ident, Punct, Spacing, Span, TokenStream, TokenTree};

/// Run an `async fn main()` on a new ferroloop loop: `fn main() { ferroloop::run(...) }`.
#[proc_macro_attribute]
pub fn main(args: TokenStream, item: TokenStream) -> TokenStream {
    expand(args, item, false)
}

/// A `#[test]` whose `async fn` body runs on a new ferroloop loop.
#[proc_macro_attribute]
pub fn test(args: TokenStream, item: TokenStream) -> TokenStream {
    expand(args, item, true)
}

fn expand(args: TokenStream, item: TokenStream, test: bool) -> TokenStream {
    if let Some(first) = args.into_iter().next() {
        return error(first.span(), "this attribute takes no arguments");
    }
    let tokens: Vec<TokenTree> = item.into_iter().collect();
    // the `fn` keyword (after attributes, visibility, `async`, `unsafe`...)
    let Some(fn_at) = tokens
        .iter()
        .position(|t| matches!(t, TokenTree::Ident(i) if i.to_string() == "fn"))
    else {
        return error(Span::call_site(), "expected an `async fn`");
    };
    let Some(async_at) = tokens[..fn_at]
        .iter()
        .position(|t| matches!(t, TokenTree::Ident(i) if i.to_string() == "async"))
    else {
        return error(tokens[fn_at].span(), "the function must be `async`");
    };
    // the argument list: the first parenthesised group after the name
    let Some(params) = tokens[fn_at..].iter().find_map(|t| match t {
        TokenTree::Group(g) if g.delimiter() == Delimiter::Parenthesis => Some(g),
        _ => None,
    }) else {
        return error(
            tokens[fn_at].span(),
            "expected the function's argument list",
        );
    };
    if !params.stream().is_empty() {
        return error(params.span(), "the function must take no arguments");
    }
    let Some(TokenTree::Group(body)) = tokens.last() else {
        return error(tokens[fn_at].span(), "expected the function's body");
    };
    if body.delimiter() != Delimiter::Brace {
        return error(body.span(), "expected the function's body");
    }

    let mut out: Vec<TokenTree> = Vec::new();
    if test {
        out.extend(attribute("test"));
    }
    out.extend(
        tokens[..tokens.len() - 1]
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != async_at)
            .map(|(_, t)| t.clone()),
    );
    // { ::ferroloop::run(async move BODY) }
    let mut call: Vec<TokenTree> = Vec::new();
    call.extend(path(&["ferroloop", "run"]));
    let mut inner: Vec<TokenTree> = vec![
        Ident::new("async", Span::call_site()).into(),
        Ident::new("move", Span::call_site()).into(),
    ];
    inner.push(TokenTree::Group(body.clone()));
    call.push(Group::new(Delimiter::Parenthesis, inner.into_iter().collect()).into());
    out.push(Group::new(Delimiter::Brace, call.into_iter().collect()).into());
    out.into_iter().collect()
}

/// `#[name]`.
fn attribute(name: &str) -> Vec<TokenTree> {
    vec![
        Punct::new('#', Spacing::Alone).into(),
        Group::new(
            Delimiter::Bracket,
            TokenStream::from(TokenTree::from(Ident::new(name, Span::call_site()))),
        )
        .into(),
    ]
}

/// `::a::b`.
fn path(segments: &[&str]) -> Vec<TokenTree> {
    let mut out = Vec::new();
    for s in segments {
        out.push(Punct::new(':', Spacing::Joint).into());
        out.push(Punct::new(':', Spacing::Alone).into());
        out.push(Ident::new(s, Span::call_site()).into());
    }
    out
}

/// `compile_error!("message")` at `span`.
fn error(span: Span, message: &str) -> TokenStream {
    let mut lit = proc_macro::Literal::string(message);
    lit.set_span(span);
    let mut bang = Punct::new('!', Spacing::Alone);
    bang.set_span(span);
    let mut name = Ident::new("compile_error", span);
    name.set_span(span);
    let mut args = Group::new(
        Delimiter::Parenthesis,
        TokenStream::from(TokenTree::from(lit)),
    );
    args.set_span(span);
    let mut semi = Punct::new(';', Spacing::Alone);
    semi.set_span(span);
    [TokenTree::from(name), bang.into(), args.into(), semi.into()]
        .into_iter()
        .collect()
}
