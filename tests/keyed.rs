//! `KeyedLayer`: one token per key the request selects, in a bounded map of slots.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use support::{auth_of, status};
use tower::{BoxError, Layer, ServiceExt, service_fn};
use tower_oauth::oauth::keyed::{KeyedLayer, RequestHead};
use tower_oauth::{Error, OAuthLayer, Token, source_fn};

/// The caller a request is made for, put in its extensions by the application.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Subject(u32);

/// Fetches per subject; tokens are `sub-<subject>-<n>`.
#[derive(Clone, Default)]
struct Fetches(Arc<Mutex<HashMap<u32, usize>>>);

impl Fetches {
    fn of(&self, subject: u32) -> usize {
        self.0.lock().unwrap().get(&subject).copied().unwrap_or(0)
    }
    fn total(&self) -> usize {
        self.0.lock().unwrap().values().sum()
    }
}

fn make(fetches: Fetches) -> impl Fn(&Subject, &RequestHead<'_>) -> Result<OAuthLayer, Error> {
    move |subject: &Subject, _: &RequestHead<'_>| {
        if subject.0 == u32::MAX {
            return Err(Error::other("no source for this subject"));
        }
        let (fetches, id) = (fetches.clone(), subject.0);
        Ok(OAuthLayer::new(source_fn(move || {
            let n = {
                let mut all = fetches.0.lock().unwrap();
                let n = all.entry(id).or_default();
                *n += 1;
                *n
            };
            async move {
                Ok(Token::new(
                    format!("sub-{id}-{n}"),
                    Duration::from_secs(3600),
                ))
            }
        })))
    }
}

fn select(head: &RequestHead<'_>) -> Option<Subject> {
    head.extensions().get::<Subject>().copied()
}

/// The API: answers 200 if the token is the subject's own (the subject is in the path),
/// 401 for a token in `revoked`; counts crossings (another subject's token).
#[derive(Clone, Default)]
struct Api {
    crossings: Arc<AtomicUsize>,
    revoked: Arc<Mutex<Vec<String>>>,
}

async fn api(api: Api, req: Request<String>) -> Result<Response<String>, BoxError> {
    let subject = req.uri().path().trim_start_matches('/').to_owned();
    let auth = auth_of(&req);
    if !auth.starts_with(&format!("Bearer sub-{subject}-")) {
        api.crossings.fetch_add(1, Ordering::SeqCst);
        return Ok(status(StatusCode::FORBIDDEN));
    }
    if api.revoked.lock().unwrap().contains(&auth) {
        return Ok(status(StatusCode::UNAUTHORIZED));
    }
    Ok(status(StatusCode::OK))
}

fn request(subject: u32) -> Request<String> {
    let mut request = Request::get(format!("http://api.test/{subject}"))
        .body(String::new())
        .unwrap();
    request.extensions_mut().insert(Subject(subject));
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_subjects_in_a_thousand_slots_never_cross() {
    let fetches = Fetches::default();
    let backend = Api::default();
    let layer = KeyedLayer::new(select, make(fetches.clone())).max_slots(1_000);
    let svc = layer.layer(service_fn({
        let backend = backend.clone();
        move |req| api(backend.clone(), req)
    }));
    let mut most = 0;
    for batch in 0..1_000u32 {
        let calls: Vec<_> = (0..10)
            .map(|i| {
                let svc = svc.clone();
                let subject = batch * 10 + i;
                tokio::spawn(async move {
                    // Each subject calls twice: the second finds its token.
                    for _ in 0..2 {
                        let response = svc.clone().oneshot(request(subject)).await.unwrap();
                        assert_eq!(response.status(), StatusCode::OK);
                    }
                })
            })
            .collect();
        for call in calls {
            call.await.unwrap();
        }
        most = most.max(layer.slots());
    }
    assert!(most <= 1_000, "at most 1,000 live slots, saw {most}");
    assert_eq!(backend.crossings.load(Ordering::SeqCst), 0);
    assert_eq!(fetches.total(), 10_000, "1 token per subject");
    assert!((0..10_000).all(|s| fetches.of(s) == 1));
}

#[tokio::test]
async fn a_401_refreshes_only_that_keys_token() {
    let fetches = Fetches::default();
    let backend = Api::default();
    let svc = KeyedLayer::new(select, make(fetches.clone())).layer(service_fn({
        let backend = backend.clone();
        move |req| api(backend.clone(), req)
    }));
    for subject in [1, 2] {
        let response = svc.clone().oneshot(request(subject)).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    backend
        .revoked
        .lock()
        .unwrap()
        .push("Bearer sub-1-1".into());
    let response = svc.clone().oneshot(request(1)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "sent again with sub-1-2");
    let response = svc.clone().oneshot(request(2)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!((fetches.of(1), fetches.of(2)), (2, 1));
}

#[tokio::test]
async fn no_key_no_token_and_a_key_without_a_source_is_an_error() {
    let fetches = Fetches::default();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let svc = KeyedLayer::new(select, make(fetches.clone())).layer(service_fn({
        let seen = seen.clone();
        move |req: Request<String>| {
            seen.lock()
                .unwrap()
                .push(req.headers().contains_key("authorization"));
            async move { Ok::<_, BoxError>(status(StatusCode::OK)) }
        }
    }));
    let plain = Request::get("http://api.test/")
        .body(String::new())
        .unwrap();
    assert_eq!(
        svc.clone().oneshot(plain).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(*seen.lock().unwrap(), [false]);

    let error = svc.oneshot(request(u32::MAX)).await.unwrap_err();
    let error = error.downcast_ref::<Error>().unwrap();
    assert!(error.is_other(), "{error}");
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "nothing sent without the token"
    );
    assert_eq!(fetches.total(), 0);
}
