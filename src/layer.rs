use std::fmt;
use std::time::Duration;

use tower_layer::Layer;

use crate::cache::{Config, TokenCache};
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
        OAuth::from_parts(inner, self.cache.clone())
    }
}

impl fmt::Debug for OAuthLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthLayer")
            .field("cache", &self.cache)
            .finish()
    }
}

/// Options of an [`OAuthLayer`]. Made by [`OAuthLayer::builder`].
pub struct OAuthLayerBuilder<T> {
    source: T,
    config: Config,
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

    /// Builds the layer.
    pub fn build(self) -> OAuthLayer {
        OAuthLayer {
            cache: TokenCache::new(self.source, self.config),
        }
    }
}

impl<T> fmt::Debug for OAuthLayerBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthLayerBuilder")
            .field("source", &std::any::type_name::<T>())
            .field("config", &self.config)
            .finish()
    }
}
