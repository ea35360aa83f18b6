//! The copy of a request kept for a second attempt.

use http::{Extensions, HeaderName, HeaderValue, Method, Request, Uri, Version};

/// A copy of a request, taken before its first attempt. The headers are kept as a list,
/// which costs one allocation where a `HeaderMap` costs two, and none for a request
/// without headers; the map is rebuilt only if the request is sent again.
pub(crate) struct RequestCopy<B> {
    method: Method,
    uri: Uri,
    version: Version,
    /// A boxed slice: 16 bytes of the response future, where a `Vec` takes 24.
    headers: Box<[(HeaderName, HeaderValue)]>,
    extensions: Extensions,
    body: B,
}

impl<B> RequestCopy<B> {
    #[inline(always)]
    pub(crate) fn new(request: &Request<B>, body: B) -> RequestCopy<B> {
        let headers: Box<[_]> = if request.headers().is_empty() {
            Box::new([])
        } else {
            let mut headers = Vec::with_capacity(request.headers().len());
            headers.extend(
                request
                    .headers()
                    .iter()
                    .map(|(name, value)| (name.clone(), value.clone())),
            );
            // Exactly `len` elements: no reallocation.
            headers.into_boxed_slice()
        };
        RequestCopy {
            method: request.method().clone(),
            uri: request.uri().clone(),
            version: request.version(),
            headers,
            extensions: request.extensions().clone(),
            body,
        }
    }

    pub(crate) fn method(&self) -> &Method {
        &self.method
    }

    pub(crate) fn uri(&self) -> &Uri {
        &self.uri
    }

    pub(crate) fn into_request(self) -> Request<B> {
        let mut request = Request::new(self.body);
        *request.method_mut() = self.method;
        *request.uri_mut() = self.uri;
        *request.version_mut() = self.version;
        *request.extensions_mut() = self.extensions;
        let headers = request.headers_mut();
        headers.reserve(self.headers.len() + 1);
        for (name, value) in self.headers {
            headers.append(name, value);
        }
        request
    }
}
