use std::fmt;
use std::time::Duration;

use tower_layer::Layer;

use crate::cache::{Config, TokenCache};
use crate::origin::{Origin, Scope};
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
    scope: Scope,
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
            scope: Scope::default(),
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
        OAuth::from_parts(inner, self.cache.clone()).with_scope(self.scope.clone())
    }
}

impl fmt::Debug for OAuthLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthLayer")
            .field("cache", &self.cache)
            .field("scope", &self.scope)
            .finish()
    }
}

/// Options of an [`OAuthLayer`]. Made by [`OAuthLayer::builder`].
pub struct OAuthLayerBuilder<T> {
    source: T,
    config: Config,
    scope: Scope,
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
        self.scope.add_origins(origins);
        self
    }

    /// Fails requests for origins outside [`allowed_origins`](Self::allowed_origins)
    /// instead of sending them on without a token: the caller gets an
    /// [`Error`](crate::Error) with [`is_origin_refused`](crate::Error::is_origin_refused),
    /// and the inner service is not called. No effect without allowed origins.
    pub fn refuse_other_origins(mut self) -> Self {
        self.scope.refuse_others();
        self
    }

    /// Replaces an `Authorization` header a request already has with the layer's token.
    /// By default such a request is sent as it is, without the layer's token and without a
    /// token fetch. Requests for origins outside
    /// [`allowed_origins`](Self::allowed_origins) are never given the token either way.
    pub fn overwrite_authorization(mut self) -> Self {
        self.scope.overwrite();
        self
    }

    /// Builds the layer.
    pub fn build(self) -> OAuthLayer {
        OAuthLayer {
            cache: TokenCache::new(self.source, self.config),
            scope: self.scope,
        }
    }
}

impl<T> fmt::Debug for OAuthLayerBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthLayerBuilder")
            .field("source", &std::any::type_name::<T>())
            .field("config", &self.config)
            .field("scope", &self.scope)
            .finish()
    }
}
