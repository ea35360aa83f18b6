use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use crate::cache::{Config, TokenCache};
use crate::origin::{AttachPolicy, Origin};
use crate::replay::{RecoverOn, Recovery};
use crate::store::{StoreOptions, TokenStore};
use crate::{OAuth, TokenSource};

/// Applies [`OAuth`] to a service: every request gets `Authorization: <type> <token>` from
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
pub struct OAuthLayer {
    cache: TokenCache,
    recovery: Arc<Recovery>,
    attach: AttachPolicy,
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
            recovery: Recovery::default(),
            attach: AttachPolicy::default(),
        }
    }

    /// The token cache this layer and its services share.
    pub fn cache(&self) -> &TokenCache {
        &self.cache
    }
}

impl<S> Layer<S> for OAuthLayer {
    type Service = OAuth<S>;

    fn layer(&self, inner: S) -> OAuth<S> {
        OAuth::from_parts(inner, self.cache.clone(), self.recovery.clone())
            .with_attach(self.attach.clone())
    }
}

impl fmt::Debug for OAuthLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthLayer")
            .field("cache", &self.cache)
            .field("recovery", &self.recovery)
            .field("attach", &self.attach)
            .finish()
    }
}

/// Options of an [`OAuthLayer`]. Made by [`OAuthLayer::builder`].
pub struct OAuthLayerBuilder<T> {
    source: T,
    config: Config,
    recovery: Recovery,
    attach: AttachPolicy,
}

impl<T: TokenSource> OAuthLayerBuilder<T> {
    /// How much of a token's lifetime is left when it is refreshed. Default 60 seconds.
    ///
    /// The margin used for a token is never more than half of its lifetime (`expires_in`),
    /// so a token that lives 30 seconds is refreshed with 15 seconds left, not on every
    /// request. Requests that find the token due wait for the single fetch of a new one;
    /// with [`refresh_ahead`](Self::refresh_ahead) (the default) that fetch has usually
    /// happened in the background well before.
    pub fn refresh_margin(mut self, margin: Duration) -> Self {
        self.config.refresh_margin = margin;
        self
    }

    /// How long one request to the token source may take before it fails with a timeout
    /// ([`Error::is_timeout`](crate::Error::is_timeout)). Default 10 seconds. The timeout is
    /// the fetch's own, independent of any caller's deadline. With a shared
    /// [`store`](Self::store), waiting for another instance's token comes on top, bounded
    /// by the store's `lock_wait` and its per-call timeout.
    pub fn fetch_timeout(mut self, timeout: Duration) -> Self {
        self.config.fetch_timeout = timeout;
        self
    }

    /// Which responses mean that the token a request carried was rejected, so that the
    /// token is invalidated and the request sent again with a new one. Default
    /// [`RecoverOn::Unauthorized`]: any `401`. See [`replay`](crate::replay).
    pub fn recover_on(mut self, on: RecoverOn) -> Self {
        self.recovery.on = on;
        self
    }

    /// Whether a request whose token was rejected is sent again, once, with a new token.
    /// Default `true`. With `false`, the rejected token is still invalidated and the caller
    /// gets the `401`; its next request goes out with a new token.
    pub fn replay(mut self, replay: bool) -> Self {
        self.recovery.replay = replay;
        self
    }

    /// Whether requests with a method that is not idempotent (`POST`, `PATCH`, `CONNECT`;
    /// RFC 9110 section 9.2.2) are sent again after a 401. Default `true`: a 401 for a
    /// rejected token means the server refused the request before processing it. Turn it
    /// off if your server may act on a request and still answer 401.
    pub fn replay_non_idempotent(mut self, replay: bool) -> Self {
        self.recovery.replay_non_idempotent = replay;
        self
    }

    /// Makes request bodies of type `B` replayable: after a 401, the request is sent again
    /// with the body `f` returns, copied before the first attempt. `f` returning `None`
    /// means that body cannot be sent again. May be called for several body types.
    ///
    /// Bodies of the types listed in [`replay`](crate::replay) need no function.
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
    pub fn clone_body_fn<B, F>(mut self, f: F) -> Self
    where
        B: 'static,
        F: Fn(&B) -> Option<B> + Send + Sync + 'static,
    {
        self.recovery.add_clone_fn(f);
        self
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
    /// Without it, the first request past the usable part waits for the fetch of a new
    /// token (so do the others that come meanwhile; they share the one fetch).
    pub fn refresh_ahead(mut self, enabled: bool) -> Self {
        self.config.refresh_ahead = enabled;
        self
    }

    /// The share of a token's usable part after which the background refresh starts,
    /// from 0.0 (at once) to 1.0 (at the end of the usable part). Default 0.75. Values out
    /// of range are clamped; NaN means the default.
    pub fn refresh_ahead_fraction(mut self, fraction: f64) -> Self {
        self.config.refresh_ahead_fraction =
            unit_fraction(fraction, crate::cache::DEFAULT_REFRESH_AHEAD_FRACTION);
        self
    }

    /// The largest share of a token's usable part by which the background refresh starts
    /// earlier, drawn at random for each token so that a fleet started together does not
    /// refresh together. Default 0.10; 0.0 turns the jitter off. Values out of range are
    /// clamped; NaN means the default.
    pub fn refresh_ahead_jitter(mut self, fraction: f64) -> Self {
        self.config.refresh_ahead_jitter =
            unit_fraction(fraction, crate::cache::DEFAULT_REFRESH_AHEAD_JITTER);
        self
    }

    /// The retry delays after failed token fetches: `base` after the first failure,
    /// doubling with each failure in a row, never more than `max`. Default 1 second and
    /// 60 seconds. `base` is at least 1 millisecond, `max` at least `base`.
    ///
    /// While a valid token is in hand, a failed background refresh is tried again after
    /// that delay, or after the token endpoint's `Retry-After` (on 429 and 503) if that is
    /// longer, up to `max`; the endpoint sees one request per step. The current token is
    /// used meanwhile, even past its usable part, as long as it has not expired.
    pub fn retry_backoff(mut self, base: Duration, max: Duration) -> Self {
        let base = base.max(Duration::from_millis(1));
        self.config.retry_base = base;
        self.config.retry_max = max.max(base);
        self
    }

    /// The largest share of each retry delay taken off at random, from 0.0 (exact delays:
    /// 1, 2, 4, 8... seconds by default) to 1.0. Default 0.5. Values out of range are
    /// clamped; NaN means the default.
    pub fn retry_jitter(mut self, fraction: f64) -> Self {
        self.config.retry_jitter = unit_fraction(fraction, crate::cache::DEFAULT_RETRY_JITTER);
        self
    }

    /// How long a failed fetch is remembered when there is no valid token (a cold cache,
    /// an expired token). Default 1 second. Requests in that window get the failure's
    /// [`Error`](crate::Error) at once instead of a new token request, so a burst of
    /// requests against a failing endpoint makes one token request. A `Retry-After` of the
    /// token endpoint (on 429 and 503) lengthens the window, up to the backoff maximum
    /// ([`retry_backoff`](Self::retry_backoff)). Zero: every request finding no token
    /// tries again.
    pub fn failure_window(mut self, window: Duration) -> Self {
        self.config.failure_window = window;
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
    pub fn build(self) -> OAuthLayer {
        OAuthLayer {
            cache: TokenCache::new(self.source, self.config),
            recovery: Arc::new(self.recovery),
            attach: self.attach,
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

impl<T> fmt::Debug for OAuthLayerBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthLayerBuilder")
            .field("source", &std::any::type_name::<T>())
            .field("config", &self.config)
            .field("recovery", &self.recovery)
            .field("attach", &self.attach)
            .finish()
    }
}
