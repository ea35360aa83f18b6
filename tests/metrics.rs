//! The metrics of a scripted run, read with metrics-util's debugging recorder: exact
//! counter values and histogram counts, and no label that holds a token or a secret.
//!
//! One test in this binary: the recorder is global (the fetches run on tasks of their own),
//! and a snapshot drains the histograms.

#![cfg(feature = "metrics")]

mod support;

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use support::{auth_of, settle};
use tower::{BoxError, Layer, ServiceExt, service_fn};
use tower_oauth::metrics::{
    REJECTIONS, STORE_CALLS, TOKEN_REMAINING, TOKEN_REQUEST_DURATION, TOKEN_REQUESTS,
    WAIT_DURATION, WAITED_REQUESTS,
};
use tower_oauth::store::{StoreOptions, TokenStore};
use tower_oauth::{Error, OAuthLayer, Token, source_fn};

/// A store whose every call hangs: each ends at the store's timeout.
struct Silent;

impl TokenStore for Silent {
    fn get(&self, _: &str) -> impl Future<Output = Result<Option<Vec<u8>>, BoxError>> + Send {
        std::future::pending()
    }
    fn set(
        &self,
        _: &str,
        _: &[u8],
        _: Duration,
    ) -> impl Future<Output = Result<(), BoxError>> + Send {
        std::future::pending()
    }
    fn set_if_absent(
        &self,
        _: &str,
        _: &[u8],
        _: Duration,
    ) -> impl Future<Output = Result<bool, BoxError>> + Send {
        std::future::pending()
    }
    fn delete_if(&self, _: &str, _: &[u8]) -> impl Future<Output = Result<bool, BoxError>> + Send {
        std::future::pending()
    }
}

type Row = (String, Vec<(String, String)>, DebugValue);

/// The rows of `name` for the token `identity`, with their other labels.
fn rows<'a>(
    all: &'a [Row],
    name: &str,
    identity: &str,
) -> Vec<(Vec<(String, String)>, &'a DebugValue)> {
    all.iter()
        .filter(|(n, labels, _)| {
            n == name && labels.iter().any(|(k, v)| k == "identity" && v == identity)
        })
        .map(|(_, labels, value)| {
            let others = labels
                .iter()
                .filter(|(k, _)| k != "identity")
                .cloned()
                .collect();
            (others, value)
        })
        .collect()
}

fn counter(all: &[Row], name: &str, identity: &str, outcome: Option<&str>) -> u64 {
    rows(all, name, identity)
        .into_iter()
        .filter(|(labels, _)| {
            outcome.is_none_or(|o| labels.iter().any(|(k, v)| k == "outcome" && v == o))
        })
        .map(|(_, value)| match value {
            DebugValue::Counter(n) => *n,
            other => panic!("{name} is not a counter: {other:?}"),
        })
        .sum()
}

fn samples(all: &[Row], name: &str, identity: &str, outcome: Option<&str>) -> Vec<f64> {
    rows(all, name, identity)
        .into_iter()
        .filter(|(labels, _)| {
            outcome.is_none_or(|o| labels.iter().any(|(k, v)| k == "outcome" && v == o))
        })
        .flat_map(|(_, value)| match value {
            DebugValue::Histogram(values) => values.iter().map(|v| v.into_inner()),
            other => panic!("{name} is not a histogram: {other:?}"),
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_scripted_run_gives_exact_counts() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::set_global_recorder(recorder).expect("the only recorder of this binary");

    // Tokens secret-1, secret-2, ... after 50 ms each; the 4th request fails.
    let fetches = Arc::new(AtomicUsize::new(0));
    let counter_ = fetches.clone();
    let source = source_fn(move || {
        let n = counter_.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            match n {
                4 => Err(Error::other("token endpoint down")),
                _ => Ok(Token::new(format!("secret-{n}"), Duration::from_secs(100))),
            }
        }
    });
    let layer = OAuthLayer::builder(source)
        .name("metrics-test")
        .refresh_ahead_jitter(0.0)
        .build();
    // An API that has revoked the second token.
    let revoked = Arc::new(Mutex::new(vec!["Bearer secret-2".to_owned()]));
    let api = service_fn(move |req: Request<Full<Bytes>>| {
        let revoked = revoked.clone();
        async move {
            let status = match revoked.lock().unwrap().contains(&auth_of(&req)) {
                true => StatusCode::UNAUTHORIZED,
                false => StatusCode::OK,
            };
            Ok::<_, BoxError>(Response::builder().status(status).body(()).unwrap())
        }
    });
    let svc = layer.layer(api);
    let request = || {
        Request::get("http://api.test/")
            .body(Full::new(Bytes::new()))
            .unwrap()
    };

    // 1. A cold start with 100 callers: 1 token request, 100 requests waited for it.
    let calls: Vec<_> = (0..100)
        .map(|_| tokio::spawn(svc.clone().oneshot(request())))
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap().status(), StatusCode::OK);
    }
    assert_eq!(fetches.load(Ordering::SeqCst), 1);

    // 2. The refresh ahead of expiry, in the background: nobody waits.
    tokio::time::sleep(Duration::from_secs(45)).await;
    settle().await;
    assert_eq!(fetches.load(Ordering::SeqCst), 2);

    // 3. A 401 with secret-2: one fetch, the request replayed (it waits for that fetch).
    let response = svc.clone().oneshot(request()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(fetches.load(Ordering::SeqCst), 3);

    // 4. A failing fetch.
    assert!(layer.cache().refresh().await.is_err());
    assert_eq!(fetches.load(Ordering::SeqCst), 4);

    // 5. A store that never answers: its one read times out, the token comes without it.
    let stored = OAuthLayer::builder(source_fn(|| async {
        Ok(Token::new("secret-s", Duration::from_secs(100)))
    }))
    .name("metrics-store")
    .store(Silent)
    .store_options(
        StoreOptions::new()
            .key(tower_oauth::key::CacheKey::builder("metrics").build())
            .timeout(Duration::from_millis(100)),
    )
    .build();
    stored.cache().token().await.unwrap();

    let all: Vec<Row> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let (_, key) = key.into_parts();
            let labels = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            (key.name().to_owned(), labels, value)
        })
        .collect();
    let id = "metrics-test";

    assert_eq!(counter(&all, TOKEN_REQUESTS, id, Some("ok")), 3);
    assert_eq!(counter(&all, TOKEN_REQUESTS, id, Some("other")), 1);
    assert_eq!(counter(&all, TOKEN_REQUESTS, id, None), 4);
    let ok = samples(&all, TOKEN_REQUEST_DURATION, id, Some("ok"));
    assert_eq!(ok, vec![0.05; 3], "each took 50 ms on the paused clock");
    assert_eq!(
        samples(&all, TOKEN_REQUEST_DURATION, id, Some("other")).len(),
        1
    );

    // 100 at the cold start and the replayed request.
    assert_eq!(counter(&all, WAITED_REQUESTS, id, None), 101);
    let waits = samples(&all, WAIT_DURATION, id, None);
    assert_eq!(waits.len(), 101);
    assert!(waits.iter().all(|w| (0.0..=0.05).contains(w)), "{waits:?}");

    assert_eq!(counter(&all, REJECTIONS, id, Some("replayed")), 1);
    assert_eq!(counter(&all, REJECTIONS, id, None), 1);

    let remaining = rows(&all, TOKEN_REMAINING, id);
    assert_eq!(remaining.len(), 1);
    match remaining[0].1 {
        DebugValue::Gauge(left) => assert!((0.0..=100.0).contains(&left.into_inner())),
        other => panic!("not a gauge: {other:?}"),
    }

    let store = "metrics-store";
    assert_eq!(counter(&all, STORE_CALLS, store, Some("timed_out")), 1);
    assert_eq!(counter(&all, STORE_CALLS, store, None), 1);
    assert_eq!(counter(&all, TOKEN_REQUESTS, store, Some("ok")), 1);
    assert_eq!(
        counter(&all, STORE_CALLS, id, None),
        0,
        "no store, no store calls"
    );

    // No label holds a token or a secret.
    for (name, labels, _) in &all {
        for (key, value) in labels {
            assert!(!value.contains("secret"), "{name}{{{key}={value}}}");
        }
    }
}
