//! Where tokens come from.
//!
//! A [`TokenSource`] fetches a fresh token when the layer asks for one; the layer caches
//! it and decides when to ask again. [`ClientCredentials`](crate::ClientCredentials) is the
//! source for the client-credentials grant (RFC 6749 section 4.4); [`source_fn`] turns an
//! async closure into a source for anything else.
//!
//! ```
//! use std::time::Duration;
//! use tower_oauth::{source_fn, OAuthLayer, Token};
//!
//! let layer = OAuthLayer::new(source_fn(|| async {
//!     // Ask a vault, a sidecar, a metadata endpoint...
//!     Ok(Token::new("token-from-elsewhere", Duration::from_secs(600)))
//! }));
//! # let _ = layer;
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use crate::error::Error;
use crate::identity::Identity;
use crate::key::CacheKey;
use crate::token::Token;

/// Fetches a new access token.
///
/// The layer calls [`fetch`](TokenSource::fetch) at most once at a time for a cache,
/// however many requests are waiting, and runs it on a task of its own, so a fetch runs to
/// completion even if the request that started it is dropped.
///
/// Errors are [`Error`]s; for failures of your own, use [`Error::other`].
pub trait TokenSource: Send + Sync + 'static {
    /// Fetches a token.
    fn fetch(&self) -> impl Future<Output = Result<Token, Error>> + Send;

    /// The identity of the tokens this source fetches: the name of their entry in a shared
    /// [`TokenStore`](crate::store::TokenStore). Sources with equal keys share one token, so
    /// the key must cover everything that makes the token what it is (endpoint, client,
    /// secret, scopes, audience...). `None` (the default): a layer with a store needs a key
    /// from [`StoreOptions::key`](crate::store::StoreOptions::key).
    fn cache_key(&self) -> Option<CacheKey> {
        None
    }

    /// What the tokens of this source are called in errors, log lines and metric labels:
    /// a short, non-secret name and the token endpoint's origin (see
    /// [`identity`](crate::identity)). `None` (the default): the layer's
    /// [`name`](crate::OAuthLayerBuilder::name), or [`DEFAULT_NAME`](crate::identity::DEFAULT_NAME).
    fn identity(&self) -> Option<Identity> {
        None
    }
}

/// A [`TokenSource`] made from an async closure; see [`source_fn`].
#[derive(Clone)]
pub struct SourceFn<F> {
    f: F,
}

/// Makes a [`TokenSource`] from a closure that returns a future of `Result<Token, Error>`.
pub fn source_fn<F, Fut>(f: F) -> SourceFn<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Token, Error>> + Send + 'static,
{
    SourceFn { f }
}

impl<F, Fut> TokenSource for SourceFn<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Token, Error>> + Send + 'static,
{
    fn fetch(&self) -> impl Future<Output = Result<Token, Error>> + Send {
        (self.f)()
    }
}

impl<F> fmt::Debug for SourceFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceFn").finish_non_exhaustive()
    }
}

pub(crate) type BoxFetch = Pin<Box<dyn Future<Output = Result<Token, Error>> + Send>>;

/// The object-safe face of a [`TokenSource`], so the cache does not carry its type.
pub(crate) trait DynSource: Send + Sync + 'static {
    fn fetch_boxed(&self) -> BoxFetch;
    fn type_name(&self) -> &'static str;
}

pub(crate) struct Erased<T>(pub(crate) std::sync::Arc<T>);

impl<T: TokenSource> DynSource for Erased<T> {
    fn fetch_boxed(&self) -> BoxFetch {
        let source = self.0.clone();
        Box::pin(async move { source.fetch().await })
    }

    fn type_name(&self) -> &'static str {
        std::any::type_name::<T>()
    }
}
