//! Allocations on the hot path, counted by the counting global allocator of
//! `support::alloc`. This is the one test binary that installs it, so the allocator sees
//! only these tests; counting is per thread, so tests running in parallel and the
//! runtime's other threads do not disturb it.
//!
//! Each request is built before counting starts; counting covers `call`, polling the
//! response future to completion with a no-op waker (the inner service answers at once)
//! and dropping the response and the future. Every request of a run must allocate the
//! same.
//!
//! Two kinds of checks:
//!
//! - `OAuth<S>` against tower-http's `SetRequestHeader` with a fixed `Authorization` value,
//!   both in front of the same no-op inner service with the same requests
//!   (`support::hot_path`, which the benches use too): a request with a valid token
//!   allocates what it allocates with the static header, plus the documented copy that
//!   recovery keeps of a replayable request with headers.
//! - `OAuth<S>` with its defaults against itself with `recover_on(RecoverOn::Never)` or
//!   `replay(false)`: what the copy kept for a 401 replay costs, per kind of request. The
//!   figures in the `replay` module docs come from here.
//!
//! `cargo test --test alloc -- --nocapture` prints the counts of the first kind.

mod support;

use std::fmt::Debug;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use support::alloc::{Allocations, CountingAlloc, counted};
use support::hot_path::{
    Noop, bare, empty_body, full_body, oauth_layer, oauth_layer_no_replay, post,
    static_header_layer, streaming_body, token_source, warm,
};
use tower::{Layer, Service};
use tower_oauth::OAuthLayer;
use tower_oauth::recover::RecoverOn;

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Requests counted per run.
const REQUESTS: u64 = 1000;

/// What a request is sent through.
#[derive(Clone, Copy, Debug)]
enum Stack {
    /// The no-op inner service alone.
    Floor,
    /// tower-http's `SetRequestHeader` with a fixed value.
    StaticHeader,
    /// `OAuthLayer` with a warm cache, with these options.
    OAuth(Mode),
    /// `OAuthLayer::without_recovery()` with a warm cache.
    Attach,
}

/// `OAuthLayer`'s options under test.
#[derive(Clone, Copy, Debug)]
enum Mode {
    /// The defaults: recovery on any 401, replay on.
    Default,
    /// `recover_on(RecoverOn::Never)`: the request path without recovery.
    Never,
    /// `replay(false)`: invalidate on a 401, never send again.
    ReplayOff,
}

fn oauth(mode: Mode) -> OAuthLayer {
    match mode {
        Mode::Default => oauth_layer(Arc::default()),
        Mode::Never => OAuthLayer::builder(token_source(Arc::default()))
            .recover_on(RecoverOn::Never)
            .build(),
        Mode::ReplayOff => oauth_layer_no_replay(Arc::default()),
    }
}

/// Sends `req` through `svc`, which must answer at once, and drops the response.
fn one_request<S, B>(svc: &mut S, req: Request<B>)
where
    S: Service<Request<B>>,
    S::Error: Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    match svc.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => {}
        other => panic!("service not ready: {:?}", other.map(|r| r.err())),
    }
    let mut future = pin!(svc.call(req));
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(Ok(response)) => drop(response),
        Poll::Ready(Err(error)) => panic!("request failed: {error:?}"),
        Poll::Pending => panic!("a request with a valid token did not complete at once"),
    }
}

/// The allocations of one request made by `make` through `svc`: [`REQUESTS`] are
/// counted after 10 uncounted ones. Panics unless every counted request allocates the same.
fn per_request<S, B>(mut svc: S, make: impl Fn() -> Request<B>) -> Allocations
where
    S: Service<Request<B>>,
    S::Error: Debug,
{
    for _ in 0..10 {
        one_request(&mut svc, make());
    }
    let mut one = || {
        let req = make();
        counted(|| one_request(&mut svc, req)).1
    };
    let first = one();
    for _ in 1..REQUESTS {
        assert_eq!(one(), first, "the same request allocates the same");
    }
    first
}

/// The allocations of one request made by `make` through `stack`, on a current-thread
/// runtime (the cache's timer task lives there).
fn measure<B: Send + 'static>(stack: Stack, make: impl Fn() -> Request<B>) -> Allocations {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    match stack {
        Stack::Floor => per_request(Noop, make),
        Stack::StaticHeader => per_request(static_header_layer().layer(Noop), make),
        Stack::OAuth(mode) => {
            let layer = oauth(mode);
            rt.block_on(warm(&layer));
            let _context = rt.enter();
            per_request(layer.layer(Noop), make)
        }
        Stack::Attach => {
            let layer = oauth(Mode::Default);
            rt.block_on(warm(&layer));
            let _context = rt.enter();
            per_request(layer.without_recovery().layer(Noop), make)
        }
    }
}

// ---------------------------------------------------------------------------------------
// OAuth<S> against the static header
// ---------------------------------------------------------------------------------------

/// The allocations per request of the floor, the static header and `OAuth<S>` with `mode`,
/// for requests made by `make`.
fn compare<B: Send + 'static>(
    label: &str,
    mode: Mode,
    make: impl Fn() -> Request<B>,
) -> [Allocations; 3] {
    let floor = measure(Stack::Floor, &make);
    let static_header = measure(Stack::StaticHeader, &make);
    let oauth = measure(Stack::OAuth(mode), &make);
    println!(
        "{label}, per request: floor {floor:?}, static_header {static_header:?}, \
         oauth ({mode:?}) {oauth:?}"
    );
    [floor, static_header, oauth]
}

/// [`compare`] for a bare request (no headers) with `body`, `OAuth<S>` with its defaults.
fn compare_bare<B: Send + 'static>(label: &str, body: fn() -> B) -> [Allocations; 3] {
    let [floor, static_header, oauth] = compare(label, Mode::Default, bare(body));
    // The counter does see the request path: inserting the header into the request's
    // empty header map allocates, with either layer.
    assert!(
        static_header.count > floor.count,
        "the counting allocator saw no allocation of the header map"
    );
    [floor, static_header, oauth]
}

#[test]
fn non_replayable_body_oauth_adds_no_allocation() {
    let [_, static_header, oauth] = compare_bare("streaming body", streaming_body);
    assert_eq!(oauth, static_header);
}

#[test]
fn empty_body_oauth_adds_no_allocation() {
    let [_, static_header, oauth] = compare_bare("empty body", empty_body);
    assert_eq!(oauth, static_header);
}

/// Allocations `OAuth<S>` adds per request with a replayable body (`Full<Bytes>` of static
/// bytes) and no headers, in the default configuration: the copy kept for a replay has no
/// headers to list and shares the body's bytes.
const REPLAYABLE_EXTRA_ALLOCS_PER_REQUEST: i64 = 0;
const REPLAYABLE_EXTRA_BYTES_PER_REQUEST: i64 = 0;

#[test]
fn replayable_body_oauth_adds_the_documented_allocations() {
    let [_, static_header, oauth] = compare_bare("full body", full_body);
    assert_eq!(
        oauth.count as i64 - static_header.count as i64,
        REPLAYABLE_EXTRA_ALLOCS_PER_REQUEST
    );
    assert_eq!(
        oauth.bytes as i64 - static_header.bytes as i64,
        REPLAYABLE_EXTRA_BYTES_PER_REQUEST
    );
}

/// Allocations `OAuth<S>` adds per request to the realistic request of the benches
/// (`support::hot_path::post`: `POST` with `content-type`, `accept` and `user-agent` values
/// made once and cloned, a `Full<Bytes>` body of static bytes), in the default
/// configuration: the list of headers the copy for a replay keeps. (The issue's bound:
/// at most 1.)
const POST_EXTRA_ALLOCS_PER_REQUEST: i64 = 1;

#[test]
fn post_with_three_headers_oauth_adds_the_documented_allocations() {
    let [_, static_header, oauth] = compare("POST, 3 headers", Mode::Default, post());
    assert_eq!(
        oauth.count as i64 - static_header.count as i64,
        POST_EXTRA_ALLOCS_PER_REQUEST
    );
}

#[test]
fn post_with_three_headers_and_recovery_off_oauth_adds_no_allocation() {
    for mode in [Mode::Never, Mode::ReplayOff] {
        let [_, static_header, oauth] = compare("POST, 3 headers", mode, post());
        assert_eq!(oauth, static_header, "{mode:?}");
    }
}

// ---------------------------------------------------------------------------------------
// What recovery costs: OAuth<S> against itself without recovery
// ---------------------------------------------------------------------------------------

/// Allocations per request of `OAuth<S>` with `mode`, for requests made by `make`.
fn oauth_allocs<B: Send + 'static>(mode: Mode, make: impl Fn() -> Request<B>) -> u64 {
    measure(Stack::OAuth(mode), make).count
}

/// A request as an application builds it each time: a URI parsed at run time, a static
/// header and one made from a run-time string, a JSON body in a `Vec` turned into `Bytes`.
/// (Unlike `support::hot_path::post`, whose values are made once and cloned.)
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
    assert_eq!(oauth_allocs(Mode::Never, bare(streaming_body)), 2);
}

#[test]
fn a_body_that_cannot_be_replayed_costs_what_it_costs_without_recovery() {
    let baseline = oauth_allocs(Mode::Never, bare(streaming_body));
    assert_eq!(oauth_allocs(Mode::Default, bare(streaming_body)), baseline);
    let baseline = oauth_allocs(Mode::Never, realistic(streaming_body));
    assert_eq!(
        oauth_allocs(Mode::Default, realistic(streaming_body)),
        baseline
    );
}

#[test]
fn replay_off_costs_what_it_costs_without_recovery() {
    let baseline = oauth_allocs(Mode::Never, realistic(vec_body));
    assert_eq!(oauth_allocs(Mode::ReplayOff, realistic(vec_body)), baseline);
}

#[test]
fn a_replayable_request_without_headers_and_static_bytes_adds_no_allocation() {
    let make = || Request::new(Full::new(Bytes::from_static(b"{\"n\":42}")));
    assert_eq!(
        oauth_allocs(Mode::Default, make),
        oauth_allocs(Mode::Never, make)
    );
}

#[test]
fn a_realistic_replayable_post_adds_exactly_five_allocations() {
    let baseline = oauth_allocs(Mode::Never, realistic(vec_body));
    let with_copy = oauth_allocs(Mode::Default, realistic(vec_body));
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
        oauth_allocs(Mode::Default, make) - oauth_allocs(Mode::Never, make),
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
    let ((), seen) = counted(|| drop(client.clone()));
    assert_eq!(seen.count, 0);
}

#[test]
fn the_layer_without_recovery_adds_no_allocation() {
    // `OAuthLayer::without_recovery`: the same allocations as the static header, for the
    // bare request with each body and for the POST with three headers.
    let bodies: [(&str, Allocations, Allocations); 4] = [
        (
            "empty",
            measure(Stack::StaticHeader, bare(empty_body)),
            measure(Stack::Attach, bare(empty_body)),
        ),
        (
            "full",
            measure(Stack::StaticHeader, bare(full_body)),
            measure(Stack::Attach, bare(full_body)),
        ),
        (
            "streaming",
            measure(Stack::StaticHeader, bare(streaming_body)),
            measure(Stack::Attach, bare(streaming_body)),
        ),
        (
            "post",
            measure(Stack::StaticHeader, post()),
            measure(Stack::Attach, post()),
        ),
    ];
    for (label, static_header, attach) in bodies {
        assert_eq!(attach, static_header, "{label}");
    }
}

// ---------------------------------------------------------------------------------------
// OAuthMiddleware (reqwest-middleware)
// ---------------------------------------------------------------------------------------

/// `OAuthMiddleware` takes its copy for a replay (`reqwest::Request::try_clone`) only when
/// the policy may send a request again: with `replay(false)` a request allocates what it
/// allocates with recovery off.
#[cfg(feature = "reqwest-middleware")]
mod middleware {
    use reqwest_middleware::ClientBuilder;
    use support::hot_path::Answer;

    use super::*;

    /// The allocations of one `POST` with a body through `layer`'s middleware, with a warm
    /// cache; every counted request must allocate the same.
    fn per_request(mode: Mode) -> u64 {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let layer = oauth(mode);
        rt.block_on(warm(&layer));
        let _context = rt.enter();
        let client = ClientBuilder::new(reqwest::Client::new())
            .with(layer.middleware())
            .with(Answer)
            .build();
        let make = || {
            client
                .post("https://api.example.test/v1/orders")
                .body(r#"{"n":42}"#)
                .build()
                .expect("request")
        };
        let mut cx = Context::from_waker(Waker::noop());
        let mut one = || {
            let request = make();
            let ((), seen) = counted(|| {
                let mut future = pin!(client.execute(request));
                match future.as_mut().poll(&mut cx) {
                    Poll::Ready(Ok(response)) => drop(response),
                    Poll::Ready(Err(error)) => panic!("request failed: {error:?}"),
                    Poll::Pending => panic!("a request with a valid token did not complete"),
                }
            });
            seen.count
        };
        for _ in 0..10 {
            one();
        }
        let first = one();
        for _ in 1..100 {
            assert_eq!(one(), first, "the same request allocates the same");
        }
        first
    }

    #[test]
    fn replay_off_takes_no_copy_of_the_request() {
        let never = per_request(Mode::Never);
        let replay_off = per_request(Mode::ReplayOff);
        let defaults = per_request(Mode::Default);
        println!(
            "OAuthMiddleware POST: {never} recovery off, {replay_off} replay(false), {defaults} defaults"
        );
        assert_eq!(replay_off, never);
        // The copy is seen when it is taken: the check above can fail.
        assert!(defaults > never, "{defaults} against {never}");
    }
}
