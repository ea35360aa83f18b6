//! Instruction counts of the hot path, a measure that does not depend on the machine's load.
//!
//! Not a criterion bench: a program to run under `valgrind --tool=callgrind`:
//!
//! ```text
//! instructions <stack> <body> <requests>
//! ```
//!
//! `<stack>` is one of `floor`, `static_header`, `copy_floor` (a header set directly and a
//! copy of the request kept for a second attempt, no token: see `common/copy_floor.rs`;
//! bodies `empty`, `full`, `post`, `uri`), `oauth`, `oauth_off`, `oauth_attach`,
//! `oauth_no_replay`, `per_origin` (a `PerOriginLayer` with 3 routes), `keyed` (a
//! `KeyedLayer` with one key per origin of the same 3), `mutex_slot`, `rwlock_slot`;
//! `<body>` one of `empty`, `full`, `streaming` (a bare `GET` with that body) or `post` (the
//! realistic `POST` with three headers and a `Full<Bytes>` body; see `hot_path.rs`) or `uri` (a bare
//! `GET` to the third origin of the `per_origin` stack). It
//! warms the stack, then sends `<requests>` requests through it exactly as `hot_path` does,
//! on a current-thread runtime. Run twice with different request counts, the difference of the
//! two totals divided by the difference of the counts is the cost of one request, with the
//! start-up cancelled out. `scripts/bench.sh` does that for every stack and body.
//!
//! ```text
//! instructions stampede <stack> <callers>
//! ```
//!
//! runs one cold stampede instead: `<callers>` tasks call at once through a cold `<stack>`
//! (`oauth`, `mutex_slot`, `rwlock_slot`), whose source answers after 50 ms. The runtime is
//! a current-thread one with a paused clock, so the run is the same every time: every
//! caller is polled once and waits, the clock jumps 50 ms, the token arrives, and every
//! caller finishes. Two runs with different caller counts give the cost of one caller.
//!
//! Run without arguments (as `cargo bench` does), it prints this usage and exits.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::copy_floor::CopyFloorLayer;
use common::{
    MutexSlotLayer, Noop, RwLockSlotLayer, TOKEN, bare, bearer_value, delayed_fetch, drive,
    empty_body, full_body, instant_fetch, keyed_layer, oauth_layer, oauth_layer_delayed,
    oauth_layer_no_replay, oauth_layer_off, per_origin_layer, post, static_header_layer,
    streaming_body, to_third_origin, warm,
};
use http::{Request, Response};
use tokio::runtime::Runtime;
use tower::{BoxError, Layer, Service, ServiceExt};

const USAGE: &str = "usage: instructions <floor|static_header|copy_floor|oauth|oauth_off|oauth_attach|oauth_no_replay|per_origin|keyed|mutex_slot|rwlock_slot> \
                     <empty|full|streaming|post|uri> <requests>\n       \
                     instructions stampede <oauth|mutex_slot|rwlock_slot> <callers>\n\
                     (run under valgrind --tool=callgrind)";

/// How long the stampede's token source takes (on the paused clock).
const TOKEN_DELAY: Duration = Duration::from_millis(50);

/// `callers` tasks call through `svc` at once; returns when all have their response.
async fn stampede<S>(svc: S, callers: u64)
where
    S: Service<Request<http_body_util::Empty<bytes::Bytes>>, Response = Response<()>>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
{
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let svc = svc.clone();
            tokio::spawn(async move {
                svc.oneshot(Request::new(empty_body()))
                    .await
                    .map_err(Into::into)
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task").expect("response");
    }
}

fn run_stampede(stack: &str, callers: u64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime");
    let fetches = Arc::new(AtomicUsize::new(0));
    match stack {
        "oauth" => {
            let layer = oauth_layer_delayed(fetches.clone(), TOKEN_DELAY);
            rt.block_on(stampede(layer.layer(Noop), callers));
        }
        "mutex_slot" => {
            let layer = MutexSlotLayer::new(delayed_fetch(fetches.clone(), TOKEN_DELAY));
            rt.block_on(stampede(layer.layer(Noop), callers));
        }
        "rwlock_slot" => {
            let layer = RwLockSlotLayer::new(delayed_fetch(fetches.clone(), TOKEN_DELAY));
            rt.block_on(stampede(layer.layer(Noop), callers));
        }
        other => {
            eprintln!("unknown stack {other:?}\n{USAGE}");
            std::process::exit(2);
        }
    }
    assert_eq!(fetches.load(Ordering::SeqCst), 1, "token requests");
}

fn run<B: Send + 'static>(rt: &Runtime, stack: &str, request: impl Fn() -> Request<B>, n: u64) {
    match stack {
        "floor" => {
            rt.block_on(drive(Noop, request, n));
        }
        "static_header" => {
            rt.block_on(drive(static_header_layer().layer(Noop), request, n));
        }
        "oauth" => {
            let layer = oauth_layer(Arc::new(AtomicUsize::new(0)));
            rt.block_on(async {
                warm(&layer).await;
                drive(layer.layer(Noop), request, n).await
            });
        }
        "oauth_off" => {
            let layer = oauth_layer_off(Arc::new(AtomicUsize::new(0)));
            rt.block_on(async {
                warm(&layer).await;
                drive(layer.layer(Noop), request, n).await
            });
        }
        "oauth_attach" => {
            let layer = oauth_layer(Arc::new(AtomicUsize::new(0)));
            rt.block_on(async {
                warm(&layer).await;
                drive(layer.without_recovery().layer(Noop), request, n).await
            });
        }
        "oauth_no_replay" => {
            let layer = oauth_layer_no_replay(Arc::new(AtomicUsize::new(0)));
            rt.block_on(async {
                warm(&layer).await;
                drive(layer.layer(Noop), request, n).await
            });
        }
        "per_origin" => {
            rt.block_on(async {
                let layer = per_origin_layer().await;
                drive(layer.layer(Noop), request, n).await
            });
        }
        "keyed" => {
            rt.block_on(async {
                let layer = keyed_layer().await;
                drive(layer.layer(Noop), request, n).await
            });
        }
        "mutex_slot" => {
            let layer = MutexSlotLayer::new(instant_fetch(Arc::new(AtomicUsize::new(0))));
            rt.block_on(async {
                layer.warm().await;
                drive(layer.layer(Noop), request, n).await
            });
        }
        "rwlock_slot" => {
            let layer = RwLockSlotLayer::new(instant_fetch(Arc::new(AtomicUsize::new(0))));
            rt.block_on(async {
                layer.warm().await;
                drive(layer.layer(Noop), request, n).await
            });
        }
        other => {
            eprintln!("unknown stack {other:?}\n{USAGE}");
            std::process::exit(2);
        }
    }
}

/// The `copy_floor` stack: needs a body that can be cloned.
fn run_copy_floor<B: Clone + Unpin + Send + 'static>(
    rt: &Runtime,
    request: impl Fn() -> Request<B>,
    n: u64,
) {
    let layer = CopyFloorLayer::new(bearer_value(TOKEN));
    rt.block_on(drive(layer.layer(Noop), request, n));
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [mode, stack, n] = args.as_slice()
        && mode == "stampede"
    {
        match n.parse::<u64>() {
            Ok(n) => run_stampede(stack, n),
            Err(_) => {
                eprintln!("{USAGE}");
                std::process::exit(2);
            }
        }
        return;
    }
    let (stack, body, n) = match args.as_slice() {
        [stack, body, n] if !stack.starts_with('-') => match n.parse::<u64>() {
            Ok(n) => (stack.as_str(), body.as_str(), n),
            Err(_) => {
                eprintln!("{USAGE}");
                std::process::exit(2);
            }
        },
        _ => {
            // `cargo bench` runs every bench target with `--bench`: nothing to do here.
            println!("{USAGE}");
            return;
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if stack == "copy_floor" {
        match body {
            "empty" => run_copy_floor(&rt, bare(empty_body), n),
            "full" => run_copy_floor(&rt, bare(full_body), n),
            "post" => run_copy_floor(&rt, post(), n),
            "uri" => run_copy_floor(&rt, to_third_origin(), n),
            other => {
                eprintln!("the copy_floor stack needs a body that can be cloned, not {other:?}");
                std::process::exit(2);
            }
        }
        return;
    }
    match body {
        "empty" => run(&rt, stack, bare(empty_body), n),
        "full" => run(&rt, stack, bare(full_body), n),
        "streaming" => run(&rt, stack, bare(streaming_body), n),
        "post" => run(&rt, stack, post(), n),
        "uri" => run(&rt, stack, to_third_origin(), n),
        other => {
            eprintln!("unknown body {other:?}\n{USAGE}");
            std::process::exit(2);
        }
    }
}
