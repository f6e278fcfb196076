//! The one DPoP HTTP client of the project (demo, tests, benchmark, CLI): every
//! request gets a fresh proof bound to the access token, and a `use_dpop_nonce`
//! challenge is answered by retrying once with the server's nonce.

use std::sync::Mutex;

use reqwest::{Method, RequestBuilder, Response};

use crate::client::{authorization_header, DpopKey};

pub struct DpopClient {
    http: reqwest::Client,
    access_token: String,
    key: DpopKey,
    nonce: Mutex<Option<String>>,
}

impl DpopClient {
    pub fn new(http: reqwest::Client, access_token: impl Into<String>, key: DpopKey) -> Self {
        Self {
            http,
            access_token: access_token.into(),
            key,
            nonce: Mutex::new(None),
        }
    }

    /// The `Authorization` and `DPoP` header values for one request to `url`.
    pub fn headers(&self, method: &Method, url: &str) -> [(&'static str, String); 2] {
        let htu = url.split(['?', '#']).next().unwrap_or(url);
        let nonce = self.nonce.lock().map(|n| n.clone()).unwrap_or_default();
        let proof = self
            .key
            .proof(method.as_str(), htu, Some(&self.access_token), nonce.as_deref());
        [
            ("authorization", authorization_header(&self.access_token)),
            ("dpop", proof),
        ]
    }

    /// Sends `method url`, letting `build` add headers and a body; `build` runs again
    /// for the one retry after a nonce challenge.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> reqwest::Result<Response> {
        let mut retried = false;
        loop {
            let mut request = self.http.request(method.clone(), url);
            for (name, value) in self.headers(&method, url) {
                request = request.header(name, value);
            }
            let response = build(request).send().await?;
            if let Some(nonce) = response.headers().get("dpop-nonce").and_then(|v| v.to_str().ok()) {
                if let Ok(mut slot) = self.nonce.lock() {
                    *slot = Some(nonce.to_owned());
                }
            }
            let challenged = response.status() == reqwest::StatusCode::UNAUTHORIZED
                && response
                    .headers()
                    .get("www-authenticate")
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.contains("use_dpop_nonce"));
            if challenged && !retried {
                retried = true;
                continue;
            }
            return Ok(response);
        }
    }

    pub async fn get(&self, url: &str) -> reqwest::Result<Response> {
        self.send(Method::GET, url, |request| request).await
    }
}
