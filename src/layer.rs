use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use crate::cache::{Config, TokenCache};
use crate::replay::{RecoverOn, Recovery};
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
    }
}

impl fmt::Debug for OAuthLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthLayer")
            .field("cache", &self.cache)
            .field("recovery", &self.recovery)
            .finish()
    }
}

/// Options of an [`OAuthLayer`]. Made by [`OAuthLayer::builder`].
pub struct OAuthLayerBuilder<T> {
    source: T,
    config: Config,
    recovery: Recovery,
}

impl<T: TokenSource> OAuthLayerBuilder<T> {
    /// How much of a token's lifetime is left when it is refreshed. Default 60 seconds.
    ///
    /// The margin used for a token is never more than half of its lifetime (`expires_in`),
    /// so a token that lives 30 seconds is refreshed with 15 seconds left, not on every
    /// request. Requests that find the token due wait for the single fetch of a new one.
    pub fn refresh_margin(mut self, margin: Duration) -> Self {
        self.config.refresh_margin = margin;
        self
    }

    /// How long one token fetch may take before it fails with a timeout
    /// ([`Error::is_timeout`](crate::Error::is_timeout)). Default 10 seconds. The timeout is
    /// the fetch's own, independent of any caller's deadline.
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

    /// Builds the layer.
    pub fn build(self) -> OAuthLayer {
        OAuthLayer {
            cache: TokenCache::new(self.source, self.config),
            recovery: Arc::new(self.recovery),
        }
    }
}

impl<T> fmt::Debug for OAuthLayerBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthLayerBuilder")
            .field("source", &std::any::type_name::<T>())
            .field("config", &self.config)
            .field("recovery", &self.recovery)
            .finish()
    }
}
