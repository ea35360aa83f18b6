//! What 401 recovery costs a request with a valid token, in allocations, counted by a global
//! allocator (this file is a test binary of its own, so the allocator sees only these
//! tests). The figures in the `replay` module docs come from here.
//!
//! Each request is built before counting starts; counting covers `call`, polling the
//! response future to completion with a no-op waker (the inner service answers at once) and
//! dropping the response and the future. Counting is per thread.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::convert::Infallible;
use std::future::{Ready, ready};
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use tower::{Layer, Service};
use tower_oauth::recover::RecoverOn;
use tower_oauth::{OAuthLayer, Token, source_fn};

struct Counting;

thread_local! {
    static ENABLED: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn record() {
    let _ = ENABLED.try_with(|enabled| {
        if enabled.get() {
            ALLOCS.with(|a| a.set(a.get() + 1));
        }
    });
}

// SAFETY: every call is passed on unchanged to the system allocator; the counting touches
// only `Cell`s in const-initialised thread locals, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record();
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record();
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record();
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// An inner service that answers 200 at once and allocates nothing.
#[derive(Clone, Copy)]
struct Noop;

impl<B> Service<Request<B>> for Noop {
    type Response = Response<()>;
    type Error = Infallible;
    type Future = Ready<Result<Response<()>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<B>) -> Self::Future {
        ready(Ok(Response::new(())))
    }
}

/// A body type the layer cannot copy, as a stream would be.
struct Streaming;

const REQUESTS: u64 = 200;

/// The layer's options under test.
#[derive(Clone, Copy)]
enum Mode {
    /// The defaults: recovery on any 401, replay on.
    Default,
    /// `recover_on(RecoverOn::Never)`: the request path without recovery.
    Never,
    /// `replay(false)`: invalidate on a 401, never send again.
    ReplayOff,
}

/// Allocations per request of `REQUESTS` requests made by `make` through a layer with
/// `mode`, with a warm cache. Panics unless the count is the same for every request.
fn per_request<B: Send + 'static>(mode: Mode, make: impl Fn() -> Request<B>) -> u64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let builder = OAuthLayer::builder(source_fn(|| async {
        Ok(Token::new(
            "a-token-of-some-length",
            Duration::from_secs(3600),
        ))
    }));
    let layer = match mode {
        Mode::Default => builder,
        Mode::Never => builder.recover_on(RecoverOn::Never),
        Mode::ReplayOff => builder.replay(false),
    }
    .build();
    rt.block_on(layer.cache().token()).unwrap();
    let _context = rt.enter();
    let mut svc = layer.layer(Noop);
    let mut cx = Context::from_waker(Waker::noop());

    let mut one = |count: bool| {
        let req = make();
        assert!(Service::<Request<B>>::poll_ready(&mut svc, &mut cx).is_ready());
        ALLOCS.with(|a| a.set(0));
        ENABLED.with(|e| e.set(count));
        {
            let mut future = pin!(svc.call(req));
            match future.as_mut().poll(&mut cx) {
                Poll::Ready(Ok(response)) => drop(response),
                _ => panic!("a request with a valid token did not complete at once"),
            }
        }
        ENABLED.with(|e| e.set(false));
        ALLOCS.with(Cell::get)
    };
    for _ in 0..10 {
        one(false);
    }
    let first = one(true);
    for _ in 1..REQUESTS {
        assert_eq!(one(true), first, "the same request allocates the same");
    }
    first
}

/// A request as an application builds it: a URI parsed at run time, a static header and one
/// made from a run-time string, a JSON body in a `Vec` turned into `Bytes`.
fn realistic<B>(body: impl Fn() -> B) -> impl Fn() -> Request<B> {
    move || {
        let id = format!("req-{}", 42);
        Request::post(format!("https://api.example.test/v1/orders/{}", 7))
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("x-request-id", id)
            .body(body())
            .unwrap()
    }
}

fn vec_body() -> Full<Bytes> {
    Full::new(Bytes::from(br#"{"name":"value","n":42}"#.to_vec()))
}

#[test]
fn without_recovery_the_layer_allocates_nothing_of_its_own() {
    // Inserting `Authorization` into an empty header map allocates the map's storage: that
    // is the request's, not the layer's, and the same without the layer's recovery.
    assert_eq!(per_request(Mode::Never, || Request::new(Streaming)), 2);
}

#[test]
fn a_body_that_cannot_be_replayed_costs_what_it_costs_without_recovery() {
    let baseline = per_request(Mode::Never, || Request::new(Streaming));
    assert_eq!(
        per_request(Mode::Default, || Request::new(Streaming)),
        baseline
    );
    let baseline = per_request(Mode::Never, realistic(|| Streaming));
    assert_eq!(
        per_request(Mode::Default, realistic(|| Streaming)),
        baseline
    );
}

#[test]
fn replay_off_costs_what_it_costs_without_recovery() {
    let baseline = per_request(Mode::Never, realistic(vec_body));
    assert_eq!(per_request(Mode::ReplayOff, realistic(vec_body)), baseline);
}

#[test]
fn a_replayable_request_without_headers_and_static_bytes_adds_no_allocation() {
    let make = || Request::new(Full::new(Bytes::from_static(b"{\"n\":42}")));
    assert_eq!(
        per_request(Mode::Default, make),
        per_request(Mode::Never, make)
    );
}

#[test]
fn a_realistic_replayable_post_adds_exactly_five_allocations() {
    let baseline = per_request(Mode::Never, realistic(vec_body));
    let with_copy = per_request(Mode::Default, realistic(vec_body));
    println!("realistic POST with Full<Bytes>: {baseline} without recovery, {with_copy} with");
    // The list of headers (1). Bytes made at run time are shared from their first copy on,
    // and that first copy allocates their shared state: the `content-type` value made from
    // a `&str` (1), the custom name `x-request-id` (1) and its value (1), the body's `Bytes`
    // made from a `Vec` (1). The method, the parsed URI and the version cost nothing.
    assert_eq!(with_copy - baseline, 5);
}

#[test]
fn a_replayable_post_with_static_parts_adds_one_allocation() {
    let make = || {
        Request::post("https://api.example.test/v1/orders/7")
            .header(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            )
            .header(
                http::HeaderName::from_static("x-request-id"),
                http::HeaderValue::from_static("req-42"),
            )
            .body(Full::new(Bytes::from_static(br#"{"name":"value","n":42}"#)))
            .unwrap()
    };
    // Only the list of headers.
    assert_eq!(
        per_request(Mode::Default, make) - per_request(Mode::Never, make),
        1
    );
}

#[test]
fn the_copy_of_a_hyper_client_kept_for_the_replay_does_not_allocate() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _context = rt.enter();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    ALLOCS.with(|a| a.set(0));
    ENABLED.with(|e| e.set(true));
    let copy = client.clone();
    drop(copy);
    ENABLED.with(|e| e.set(false));
    assert_eq!(ALLOCS.with(Cell::get), 0);
}
