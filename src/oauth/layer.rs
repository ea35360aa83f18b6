//! [`OAuthLayer`] and its builder.

use std::fmt;
use std::time::Duration;

use http::{HeaderMap, Method, StatusCode, Uri};
use tower_layer::Layer;

use super::{AttachLayer, OAuth};
use crate::cache::{self, Config, TokenCache};
use crate::origin::{AttachPolicy, Origin};
use crate::recover::{CloneBodyFn, RecoverOn, RejectIf, ReplayIf, Standard};
use crate::source::TokenSource;
use crate::store::{StoreOptions, TokenStore};

/// Applies [`OAuth`] to a service ([`without_recovery`](OAuthLayer::without_recovery):
/// [`Attach`](super::Attach)): every request gets `Authorization: <type> <token>` from
/// a cached token that is fetched from a [`TokenSource`] and refreshed before it expires.
///
/// Clones share one [`TokenCache`], and so do all the services a layer builds: build the
/// layer once per token (per client, scope and audience) and clone it where it is needed.
///
/// ```
/// use std::time::Duration;
/// use tower_oauth::{source_fn, OAuthLayer, Token};
///
/// let layer = OAuthLayer::builder(source_fn(|| async {
///     Ok(Token::new("t", Duration::from_secs(300)))
/// }))
/// .refresh_margin(Duration::from_secs(30))
/// .build();
/// # let _ = layer;
/// ```
#[derive(Clone)]
pub struct OAuthLayer<P = Standard> {
    pub(super) cache: TokenCache,
    pub(super) attach: AttachPolicy,
    pub(super) policy: P,
}

impl OAuthLayer {
    /// A layer with the default options (see [`OAuthLayerBuilder`]).
    pub fn new(source: impl TokenSource) -> OAuthLayer {
        OAuthLayer::builder(source).build()
    }

    /// A builder for a layer with options.
    pub fn builder<T: TokenSource>(source: T) -> OAuthLayerBuilder<T> {
        OAuthLayerBuilder {
            source,
            config: Config::default(),
            attach: AttachPolicy::default(),
            policy: Standard::default(),
        }
    }
}

impl<P> OAuthLayer<P> {
    /// The token cache this layer and its services share.
    pub fn cache(&self) -> &TokenCache {
        &self.cache
    }

    /// The recovery policy of the layer's services (see [`recover`](crate::recover)).
    pub fn recover_policy(&self) -> &P {
        &self.policy
    }

    /// The same layer without 401 recovery, at the type level: its [`Attach`](super::Attach) services
    /// share this layer's token cache and origin rules, pass every answer back as it came,
    /// and cost a request no more than the token's slot read and header (see
    /// [`attach`](super::attach)). A `401` invalidates nothing: call
    /// [`TokenCache::invalidate`] yourself if you handle it above.
    pub fn without_recovery(&self) -> AttachLayer {
        AttachLayer::new(self.cache.clone(), self.attach.clone())
    }

    /// Which requests get the token (the origin and `Authorization` options).
    #[cfg_attr(not(feature = "reqwest-middleware"), allow(dead_code))]
    pub(crate) fn attach_policy(&self) -> &AttachPolicy {
        &self.attach
    }
}

impl<S, P: Clone> Layer<S> for OAuthLayer<P> {
    type Service = OAuth<S, P>;

    fn layer(&self, inner: S) -> OAuth<S, P> {
        OAuth::new(inner, &self.cache, self.attach.clone(), self.policy.clone())
    }
}

impl<P: fmt::Debug> fmt::Debug for OAuthLayer<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthLayer")
            .field("cache", &self.cache)
            .field("recover", &self.policy)
            .field("attach", &self.attach)
            .finish()
    }
}

/// Options of an [`OAuthLayer`]. Made by [`OAuthLayer::builder`].
///
/// The builder is not a layer: end it with [`build`](Self::build). A forgotten `.build()`
/// shows as ``the method `service` exists for struct `ServiceBuilder<Stack<OAuthLayerBuilder<..>, ..>>`,
/// but its trait bounds were not satisfied`` (`OAuthLayerBuilder` "doesn't satisfy
/// `_: Layer<_>`"):
///
/// ```compile_fail
/// use std::time::Duration;
/// use tower::{service_fn, BoxError, ServiceBuilder};
/// use tower_oauth::{source_fn, OAuthLayer, Token};
///
/// let source = source_fn(|| async { Ok(Token::new("t", Duration::from_secs(60))) });
/// let client = ServiceBuilder::new()
///     .layer(OAuthLayer::builder(source).refresh_margin(Duration::from_secs(5))) // no .build()
///     .service(service_fn(|_: http::Request<String>| async {
///         Ok::<_, BoxError>(http::Response::new(()))
///     }));
/// ```
///
/// `P` is the [recovery policy](crate::recover::Policy): [`Standard`] unless changed with
/// [`clone_body_fn`](Self::clone_body_fn), [`reject_if`](Self::reject_if),
/// [`replay_if`](Self::replay_if) or [`recover_policy`](Self::recover_policy).
pub struct OAuthLayerBuilder<T, P = Standard> {
    source: T,
    config: Config,
    attach: AttachPolicy,
    policy: P,
}

impl<T: TokenSource, P> OAuthLayerBuilder<T, P> {
    /// The token's name in errors, log lines and (feature `metrics`) metric labels: short,
    /// stable and not secret, such as `billing-api`; at most
    /// [`NAME_LIMIT`](crate::identity::NAME_LIMIT) characters are kept. Default: the
    /// source's [`identity`](crate::TokenSource::identity) (`client_id@host` of the token
    /// URL for [`ClientCredentials`](crate::ClientCredentials)), else
    /// [`DEFAULT_NAME`](crate::identity::DEFAULT_NAME). The token endpoint's origin is
    /// kept either way. See [`identity`](crate::identity).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = Some(name.into());
        self
    }

    /// How much of a token's lifetime is left when it is refreshed. Default 60 seconds.
    ///
    /// The margin used for a token is never more than half of its lifetime (`expires_in`),
    /// so a token that lives 30 seconds is refreshed with 15 seconds left, not on every
    /// request. A request that finds the token due but not expired goes on with it and
    /// starts the single fetch of a new one; only requests without a valid token wait for
    /// that fetch. With [`refresh_ahead`](Self::refresh_ahead) (the default) the fetch has
    /// usually happened in the background well before.
    ///
    /// Every value works: zero uses a token until it expires (requests then wait for the
    /// next), `Duration::MAX` refreshes each token halfway through its lifetime.
    pub fn refresh_margin(mut self, margin: Duration) -> Self {
        self.config.refresh_margin = margin;
        self
    }

    /// How long one request to the token source may take before it fails with a timeout
    /// ([`Error::is_timeout`](crate::Error::is_timeout)). Default 10 seconds. The timeout is
    /// the fetch's own, independent of any caller's deadline. With a shared
    /// [`store`](Self::store), waiting for another instance's token comes on top, bounded
    /// by the store's `lock_wait` and its per-call timeout.
    ///
    /// Clamped to 1 millisecond ([`MIN_FETCH_TIMEOUT`](crate::cache::MIN_FETCH_TIMEOUT))
    /// at least and one day at most (so `Duration::MAX` means one day).
    pub fn fetch_timeout(mut self, timeout: Duration) -> Self {
        self.config.fetch_timeout = timeout.clamp(cache::MIN_FETCH_TIMEOUT, cache::MAX_HOLD);
        self
    }

    /// Which responses mean that the token a request carried was rejected, so that the
    /// token is invalidated and the request sent again with a new one. Default
    /// [`RecoverOn::Unauthorized`]: any `401`. See [`recover`](crate::recover).
    pub fn recover_on(mut self, on: RecoverOn) -> Self
    where
        P: AsMut<Standard>,
    {
        let standard = self.policy.as_mut();
        *standard = standard.on(on);
        self
    }

    /// Whether a request whose token was rejected is sent again, once, with a new token.
    /// Default `true`. With `false`, the rejected token is still invalidated and the caller
    /// gets the `401`; its next request goes out with a new token.
    pub fn replay(mut self, replay: bool) -> Self
    where
        P: AsMut<Standard>,
    {
        let standard = self.policy.as_mut();
        *standard = standard.replay(replay);
        self
    }

    /// Whether requests with a method that is not idempotent (`POST`, `PATCH`, `CONNECT`;
    /// RFC 9110 section 9.2.2) are sent again after a 401. Default `true`: a 401 for a
    /// rejected token means the server refused the request before processing it. Turn it
    /// off if your server may act on a request and still answer 401.
    pub fn replay_non_idempotent(mut self, replay: bool) -> Self
    where
        P: AsMut<Standard>,
    {
        let standard = self.policy.as_mut();
        *standard = standard.replay_non_idempotent(replay);
        self
    }

    /// Makes request bodies of type `B` replayable: after a 401, the request is sent again
    /// with the body `f` returns, copied before the first attempt. `f` returning `None`
    /// means that body cannot be sent again. `f` replaces the copying of the known body
    /// types (see [`recover`](crate::recover)) for the layer's body type `B`.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_oauth::{source_fn, OAuthLayer, Token};
    /// # let source = source_fn(|| async { Ok(Token::new("t", Duration::from_secs(60))) });
    /// #[derive(Clone)]
    /// struct MyBody(std::sync::Arc<[u8]>);
    ///
    /// let layer = OAuthLayer::builder(source)
    ///     .clone_body_fn(|body: &MyBody| Some(body.clone()))
    ///     .build();
    /// # let _ = layer;
    /// ```
    pub fn clone_body_fn<B, F>(self, f: F) -> OAuthLayerBuilder<T, CloneBodyFn<P, F>>
    where
        F: Fn(&B) -> Option<B> + Clone,
    {
        self.map_policy(|p| CloneBodyFn::new(p, f))
    }

    /// Which answers reject the token, by a rule of yours instead of
    /// [`recover_on`](Self::recover_on): `f` gets the status and the headers of each answer
    /// to a request that carried the layer's token.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_oauth::{source_fn, OAuthLayer, Token};
    /// # let source = source_fn(|| async { Ok(Token::new("t", Duration::from_secs(60))) });
    /// // An API that says 419 for an expired session token.
    /// let layer = OAuthLayer::builder(source)
    ///     .reject_if(|status, _headers| matches!(status.as_u16(), 401 | 419))
    ///     .build();
    /// # let _ = layer;
    /// ```
    pub fn reject_if<F>(self, f: F) -> OAuthLayerBuilder<T, RejectIf<P, F>>
    where
        F: Fn(StatusCode, &HeaderMap) -> bool + Clone,
    {
        self.map_policy(|p| RejectIf::new(p, f))
    }

    /// Which requests may be sent again after a 401, by a rule of yours on top of the
    /// others: `f` gets the method and the URI before the first attempt.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_oauth::{source_fn, OAuthLayer, Token};
    /// # let source = source_fn(|| async { Ok(Token::new("t", Duration::from_secs(60))) });
    /// let layer = OAuthLayer::builder(source)
    ///     .replay_if(|_method, uri| !uri.path().starts_with("/payments"))
    ///     .build();
    /// # let _ = layer;
    /// ```
    pub fn replay_if<F>(self, f: F) -> OAuthLayerBuilder<T, ReplayIf<P, F>>
    where
        F: Fn(&Method, &Uri) -> bool + Clone,
    {
        self.map_policy(|p| ReplayIf::new(p, f))
    }

    /// Replaces the recovery policy with one of your own (see
    /// [`recover::Policy`](crate::recover::Policy)).
    pub fn recover_policy<Q>(self, policy: Q) -> OAuthLayerBuilder<T, Q> {
        self.map_policy(|_| policy)
    }

    fn map_policy<Q>(self, f: impl FnOnce(P) -> Q) -> OAuthLayerBuilder<T, Q> {
        OAuthLayerBuilder {
            source: self.source,
            config: self.config,
            attach: self.attach,
            policy: f(self.policy),
        }
    }

    /// Whether the token is refreshed in the background before its usable part ends.
    /// Default `true`.
    ///
    /// A token of lifetime `L` is usable until its refresh margin `M = min(margin, L / 2)`
    /// is left; `L - M` is its usable part. With refresh ahead, one background refresh
    /// starts once [`refresh_ahead_fraction`](Self::refresh_ahead_fraction) (75%) of the
    /// usable part has passed, moved earlier by a random
    /// [`refresh_ahead_jitter`](Self::refresh_ahead_jitter) (up to 10% of it), while
    /// requests go on with the current token: in steady state no request waits for the
    /// token endpoint. A 100 second token with the default 60 second margin (so `M` = 50
    /// seconds) is refreshed between 32.5 and 37.5 seconds after it was stored.
    ///
    /// Without it, the first request past the usable part starts the fetch of a new token
    /// and goes on with the current one while it is valid; requests that come meanwhile
    /// share that one fetch.
    pub fn refresh_ahead(mut self, enabled: bool) -> Self {
        self.config.refresh_ahead = enabled;
        self
    }

    /// The share of a token's usable part after which the background refresh starts,
    /// from 0.0 (as soon as allowed) to 1.0 (at the end of the usable part). Default 0.75.
    /// Values out of range are clamped; NaN means the default.
    ///
    /// Whatever the fraction and the [jitter](Self::refresh_ahead_jitter), the refresh never
    /// starts sooner than 1 second ([`MIN_REFRESH_AHEAD`](crate::cache::MIN_REFRESH_AHEAD))
    /// and 1% of the usable part after the token was stored (or at the end of the usable
    /// part, if that is sooner): each token causes at most one refresh.
    pub fn refresh_ahead_fraction(mut self, fraction: f64) -> Self {
        self.config.refresh_ahead_fraction =
            unit_fraction(fraction, cache::DEFAULT_REFRESH_AHEAD_FRACTION);
        self
    }

    /// The largest share of a token's usable part by which the background refresh starts
    /// earlier, drawn at random for each token so that a fleet started together does not
    /// refresh together. Default 0.10; 0.0 turns the jitter off. Values out of range are
    /// clamped; NaN means the default. The refresh still starts no sooner than the floor
    /// of [`refresh_ahead_fraction`](Self::refresh_ahead_fraction).
    pub fn refresh_ahead_jitter(mut self, fraction: f64) -> Self {
        self.config.refresh_ahead_jitter =
            unit_fraction(fraction, cache::DEFAULT_REFRESH_AHEAD_JITTER);
        self
    }

    /// The retry delays after failed token fetches: `base` after the first failure,
    /// doubling with each failure in a row, never more than `max`. Default 1 second and
    /// 60 seconds. `base` is at least 1 millisecond, `max` at least `base`, and both at
    /// most one day.
    ///
    /// While a valid token is in hand, a failed background refresh is tried again after
    /// that delay, or after the token endpoint's `Retry-After` (on 429 and 503) if that is
    /// longer, up to `max`; the endpoint sees one request per step. The current token is
    /// used meanwhile, even past its usable part, as long as it has not expired.
    pub fn retry_backoff(mut self, base: Duration, max: Duration) -> Self {
        let base = base.clamp(Duration::from_millis(1), cache::MAX_HOLD);
        self.config.retry_base = base;
        self.config.retry_max = max.clamp(base, cache::MAX_HOLD);
        self
    }

    /// The largest share of each retry delay taken off at random, from 0.0 (exact delays:
    /// 1, 2, 4, 8... seconds by default) to 1.0. Default 0.5. Values out of range are
    /// clamped; NaN means the default.
    pub fn retry_jitter(mut self, fraction: f64) -> Self {
        self.config.retry_jitter = unit_fraction(fraction, cache::DEFAULT_RETRY_JITTER);
        self
    }

    /// How long a failed fetch is remembered when there is no valid token (a cold cache,
    /// an expired token). Default 1 second. Requests in that window get the failure's
    /// [`Error`](crate::Error) at once instead of a new token request, so a burst of
    /// requests against a failing endpoint makes one token request. A `Retry-After` of the
    /// token endpoint (on 429 and 503) lengthens the window, up to the backoff maximum
    /// ([`retry_backoff`](Self::retry_backoff)). Zero: every request finding no token
    /// tries again. At most one day (`Duration::MAX` means one day).
    pub fn failure_window(mut self, window: Duration) -> Self {
        self.config.failure_window = window.min(cache::MAX_HOLD);
        self
    }

    /// Shares tokens with other instances through `store` (see [`crate::store`]): the
    /// cache takes a token from the store before it asks the source, and refreshes under
    /// a lock held in the store, so the whole fleet makes one token request per lifetime.
    /// Default: no store, every instance fetches its own tokens.
    ///
    /// The store entry is named after the source's
    /// [`cache_key`](TokenSource::cache_key), or the key set in
    /// [`store_options`](Self::store_options); with neither, the store is not used (an
    /// `error` event says so).
    pub fn store(mut self, store: impl TokenStore) -> Self {
        self.config.store.store = Some(std::sync::Arc::new(store));
        self
    }

    /// How the [`store`](Self::store) is used: key prefix, timeouts, lock, encryption. See
    /// [`StoreOptions`] for the defaults.
    pub fn store_options(mut self, options: StoreOptions) -> Self {
        self.config.store.options = options;
        self
    }

    /// Puts the token only on requests for these origins (scheme, host, port); requests
    /// for any other origin, or with a relative URI, are sent on untouched, without a token
    /// and without a token fetch (or refused, with
    /// [`refuse_other_origins`](Self::refuse_other_origins)). Calls add up. Default: every
    /// request gets the token. An empty list allows no origin at all.
    ///
    /// Set this whenever the inner client can reach more than the API the token is for,
    /// and always with a redirect follower; see the [`origin`](crate::origin) module.
    ///
    /// ```
    /// # fn main() -> Result<(), tower_oauth::Error> {
    /// use std::time::Duration;
    /// use tower_oauth::{source_fn, OAuthLayer, Origin, Token};
    ///
    /// let layer = OAuthLayer::builder(source_fn(|| async {
    ///     Ok(Token::new("t", Duration::from_secs(300)))
    /// }))
    /// .allowed_origins([
    ///     Origin::parse("https://api.example.com")?,
    ///     "https://upload.example.com:8443".parse()?,
    /// ])
    /// .build();
    /// # let _ = layer;
    /// # Ok(())
    /// # }
    /// ```
    pub fn allowed_origins(mut self, origins: impl IntoIterator<Item = Origin>) -> Self {
        self.attach.add_origins(origins);
        self
    }

    /// Fails requests for origins outside [`allowed_origins`](Self::allowed_origins)
    /// instead of sending them on without a token: the caller gets an
    /// [`Error`](crate::Error) with [`is_origin_refused`](crate::Error::is_origin_refused),
    /// and the inner service is not called. No effect without allowed origins.
    pub fn refuse_other_origins(mut self) -> Self {
        self.attach.refuse_others();
        self
    }

    /// Replaces an `Authorization` header a request already has with the layer's token.
    /// By default such a request is sent as it is, without the layer's token and without a
    /// token fetch. Requests for origins outside
    /// [`allowed_origins`](Self::allowed_origins) are never given the token either way.
    pub fn overwrite_authorization(mut self) -> Self {
        self.attach.overwrite();
        self
    }

    /// Builds the layer.
    pub fn build(self) -> OAuthLayer<P> {
        OAuthLayer {
            cache: TokenCache::new(self.source, self.config),
            attach: self.attach,
            policy: self.policy,
        }
    }
}

fn unit_fraction(fraction: f64, default: f64) -> f64 {
    if fraction.is_nan() {
        default
    } else {
        fraction.clamp(0.0, 1.0)
    }
}

impl<T, P: fmt::Debug> fmt::Debug for OAuthLayerBuilder<T, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthLayerBuilder")
            .field("source", &std::any::type_name::<T>())
            .field("config", &self.config)
            .field("recover", &self.policy)
            .field("attach", &self.attach)
            .finish()
    }
}
