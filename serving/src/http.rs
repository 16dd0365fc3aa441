//! `serving serve`: a read-only HTTP server over the serving store. A JSON API (one
//! endpoint per dashboard query, the same parameters, defaults and rows as `serving
//! query --format json`, as one JSON array), the orgs with their date ranges,
//! `/healthz`, and the dashboard page.
//!
//! Every parameter is checked before any read ([`QueryArgs::validate`], shared with
//! the CLI); a bad one is a 400 with a one-line reason. Values reach the store only
//! as key bounds of a partition scan, never as query text.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use chrono::NaiveDate;

use crate::dashboard;
use crate::query::{self, QueryArgs};
use crate::{META_BATCH_HIGH_WATER, ServingStore};

/// What a request gets back.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

const JSON: &str = "application/json";
const HTML: &str = "text/html; charset=utf-8";
/// The longest request target accepted (a longer one is a 414).
const MAX_TARGET: usize = 4096;

impl Reply {
    fn ok(content_type: &'static str, body: String) -> Reply {
        Reply {
            status: 200,
            content_type,
            body,
        }
    }

    /// An error as JSON for the API, as text elsewhere: one line.
    fn error(status: u16, api: bool, message: &str) -> Reply {
        let line = message.replace(['\n', '\r'], " ");
        if api {
            let body = serde_json::json!({ "error": line }).to_string();
            Reply {
                status,
                content_type: JSON,
                body,
            }
        } else {
            Reply {
                status,
                content_type: "text/plain; charset=utf-8",
                body: format!("{line}\n"),
            }
        }
    }
}

/// A value from a request as an error message shows it: at most 40 characters.
fn shown(v: &str) -> String {
    v.chars().take(40).collect()
}

/// `%XX` and `+` decoded; `None` for a bad escape or bytes that are not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The query string as parameters: each known at most once, none unknown.
fn parameters(query: &str, known: &[&str]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = percent_decode(k).ok_or_else(|| anyhow!("bad percent-encoding in the query"))?;
        let v = percent_decode(v).ok_or_else(|| anyhow!("bad percent-encoding in {k}"))?;
        if !known.contains(&k.as_str()) {
            return Err(anyhow!(
                "unknown parameter {:?}: expected {}",
                shown(&k),
                known.join(", ")
            ));
        }
        if out.insert(k.clone(), v).is_some() {
            return Err(anyhow!("parameter {k} given twice"));
        }
    }
    Ok(out)
}

/// A whole-number parameter, if given.
fn whole<T: std::str::FromStr>(p: &BTreeMap<String, String>, k: &str) -> Result<Option<T>> {
    p.get(k)
        .map(|v| {
            v.parse::<T>()
                .map_err(|_| anyhow!("bad {k} {:?}: expected a whole number", shown(v)))
        })
        .transpose()
}

/// Parameters as the CLI's flags: the same names, parsed the same way, then checked.
fn query_args(p: &BTreeMap<String, String>) -> Result<QueryArgs> {
    let date = |k: &str| -> Result<Option<NaiveDate>> {
        p.get(k)
            .filter(|v| !v.is_empty())
            .map(|v| {
                NaiveDate::parse_from_str(v, "%Y-%m-%d")
                    .map_err(|_| anyhow!("bad {k} {:?}: expected YYYY-MM-DD", shown(v)))
            })
            .transpose()
    };
    let args = QueryArgs {
        org: p.get("org").filter(|v| !v.is_empty()).cloned(),
        from: date("from")?,
        to: date("to")?,
        days: whole(p, "days")?,
        top: whole(p, "top")?,
    };
    args.validate()?;
    Ok(args)
}

const QUERY_PARAMS: &[&str] = &["org", "from", "to", "days", "top"];
const PAGE_PARAMS: &[&str] = &["org", "from", "to"];

/// Answers one request. Only GET and HEAD; the store is only read.
pub fn handle(store: &impl ServingStore, method: &str, target: &str) -> Reply {
    let api = target.starts_with("/api/");
    if target.len() > MAX_TARGET {
        return Reply::error(414, api, "request target too long");
    }
    if method != "GET" && method != "HEAD" {
        return Reply::error(405, api, &format!("method {method} not allowed: GET only"));
    }
    let (path, query_text) = target.split_once('?').unwrap_or((target, ""));
    let bad = |e: anyhow::Error| Reply::error(400, api, &format!("{e:#}"));
    let failed = |e: anyhow::Error| {
        tracing::error!(error = format!("{e:#}"), target, "request failed");
        Reply::error(500, api, &format!("{e:#}"))
    };
    match path {
        "/api/q1" | "/api/q2" | "/api/q3" | "/api/q4" | "/api/q5" | "/api/q6" | "/api/tickets" => {
            let q = &path["/api/".len()..];
            let args = match parameters(query_text, QUERY_PARAMS)
                .and_then(|p| query_args(&p))
                .and_then(|a| a.check(q).map(|()| a))
            {
                Ok(a) => a,
                Err(e) => return bad(e),
            };
            match query::run(store, q, &args).and_then(|a| a.json_array()) {
                Ok(body) => Reply::ok(JSON, body),
                Err(e) => failed(e),
            }
        }
        "/api/orgs" => {
            if let Err(e) = parameters(query_text, &[]) {
                return bad(e);
            }
            match dashboard::orgs(store).and_then(|o| Ok(serde_json::to_string(&o)?)) {
                Ok(body) => Reply::ok(JSON, body),
                Err(e) => failed(e),
            }
        }
        "/healthz" => match store.meta(META_BATCH_HIGH_WATER) {
            Ok(hw) => Reply::ok(
                JSON,
                serde_json::json!({ "status": "ok", "batch_high_water": hw }).to_string(),
            ),
            Err(e) => Reply::error(503, true, &format!("serving store unreadable: {e:#}")),
        },
        "/" | "/panels" => {
            let args = match parameters(query_text, PAGE_PARAMS).and_then(|p| query_args(&p)) {
                Ok(a) => a,
                Err(e) => return bad(e),
            };
            let body = if path == "/" {
                dashboard::page(store, &args)
            } else {
                dashboard::orgs(store)
                    .and_then(|o| dashboard::panels(store, &dashboard::selection(&o, &args)))
            };
            match body {
                Ok(body) => Reply::ok(HTML, body),
                Err(e) => failed(e),
            }
        }
        "/dashboard.js" => Reply::ok("text/javascript; charset=utf-8", dashboard::SCRIPT.into()),
        "/dashboard.css" => Reply::ok("text/css; charset=utf-8", dashboard::STYLE.into()),
        _ => Reply::error(404, api, "not found"),
    }
}

/// The page may load only its own script and style sheet, and talk only to this
/// server.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

fn respond(request: tiny_http::Request, reply: &Reply) {
    let mut response = tiny_http::Response::from_data(reply.body.as_bytes())
        .with_status_code(tiny_http::StatusCode(reply.status));
    for (k, v) in [
        ("Content-Type", reply.content_type),
        ("Cache-Control", "no-store"),
        ("X-Content-Type-Options", "nosniff"),
        ("Content-Security-Policy", CSP),
    ] {
        if let Ok(h) = tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()) {
            response.add_header(h);
        }
    }
    if let Err(e) = request.respond(response) {
        tracing::debug!(error = %e, "client went away");
    }
}

/// The redirect that moves a token from the URL into a cookie: HttpOnly (no script
/// reads it), SameSite=Strict (no other site's page sends it).
fn set_cookie(request: tiny_http::Request, location: &str, token: &str) {
    let mut response = tiny_http::Response::empty(tiny_http::StatusCode(303));
    for (k, v) in [
        ("Location", location.to_owned()),
        (
            "Set-Cookie",
            format!("{TOKEN_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict"),
        ),
        ("Cache-Control", "no-store".to_owned()),
    ] {
        if let Ok(h) = tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()) {
            response.add_header(h);
        }
    }
    if let Err(e) = request.respond(response) {
        tracing::debug!(error = %e, "client went away");
    }
}

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub addr: String,
    /// The bearer token every route but `/healthz` requires. Without one the server
    /// listens on loopback only (it refuses to start elsewhere).
    pub token: Option<eventlog::config::Secret>,
    pub workers: usize,
    /// How often the store catches up with the writer (the embedded reader).
    pub refresh_every: Duration,
    /// The most the answer cache holds, in bytes (0: no cache).
    pub cache_bytes: usize,
}

/// The cookie a browser keeps the token in, once it opened a page with `?token=`.
const TOKEN_COOKIE: &str = "pipeline_token";

/// Whether two byte strings are equal, in a time that depends on their lengths only.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// What the access check decides for a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Access {
    Allowed,
    /// A page opened with the right `?token=`: redirect to `location` (the same
    /// target without the token), setting the cookie, so the token leaves the URL.
    SetCookie {
        location: String,
    },
    Denied,
}

/// Decides whether a request may be answered, given the server's token: with none,
/// every request (the server is on loopback); with one, `/healthz` always, anything
/// else with `Authorization: Bearer <token>` or the token's cookie, and a page opened
/// with `?token=<token>` by way of a redirect that sets the cookie.
pub fn access(token: Option<&str>, target: &str, headers: &[(&str, &str)]) -> Access {
    let Some(token) = token else {
        return Access::Allowed;
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if path == "/healthz" {
        return Access::Allowed;
    }
    fn header<'h>(
        headers: &'h [(&str, &'h str)],
        name: &'static str,
    ) -> impl Iterator<Item = &'h str> {
        headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
    let bearer = header(headers, "authorization").any(|v| {
        v.strip_prefix("Bearer ")
            .is_some_and(|t| same_secret(t.trim().as_bytes(), token.as_bytes()))
    });
    let cookie = header(headers, "cookie").any(|v| {
        v.split(';').any(|c| {
            c.trim()
                .strip_prefix(TOKEN_COOKIE)
                .and_then(|c| c.strip_prefix('='))
                .is_some_and(|t| same_secret(t.as_bytes(), token.as_bytes()))
        })
    });
    if bearer || cookie {
        return Access::Allowed;
    }
    let (given, rest): (Vec<&str>, Vec<&str>) = query
        .split('&')
        .filter(|p| !p.is_empty())
        .partition(|p| p.starts_with("token="));
    if !path.starts_with("/api/")
        && given.len() == 1
        && same_secret(&given[0].as_bytes()["token=".len()..], token.as_bytes())
    {
        let location = if rest.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{}", rest.join("&"))
        };
        return Access::SetCookie { location };
    }
    Access::Denied
}

/// A request target fit for a log line: a `token=` parameter's value removed.
pub fn shown_target(target: &str) -> String {
    let Some((path, query)) = target.split_once('?') else {
        return target.to_owned();
    };
    let query: Vec<&str> = query
        .split('&')
        .map(|p| {
            if p.starts_with("token=") {
                "token=<redacted>"
            } else {
                p
            }
        })
        .collect();
    format!("{path}?{}", query.join("&"))
}

/// Answers by request target, good while the store's version stays the same: every
/// viewer of a dashboard asks the same few questions until the next publish.
#[derive(Default)]
pub struct AnswerCache {
    version: Option<String>,
    replies: HashMap<String, Arc<Reply>>,
    bytes: usize,
}

/// What may be cached: the answers that read the store, not the health check.
fn cacheable(target: &str) -> bool {
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    path.starts_with("/api/") || path == "/" || path == "/panels"
}

impl AnswerCache {
    /// Drops every answer if the store's version moved. Call after the store caught
    /// up: an answer read before is then either dropped here or refused by
    /// [`AnswerCache::insert`].
    pub fn set_version(&mut self, version: Option<String>) {
        if version != self.version {
            self.replies.clear();
            self.bytes = 0;
            self.version = version;
        }
    }

    pub fn version(&self) -> Option<String> {
        self.version.clone()
    }

    pub fn get(&self, target: &str) -> Option<Arc<Reply>> {
        self.replies.get(target).cloned()
    }

    /// Keeps a 200 answer read at `version`, unless the version moved meanwhile.
    /// When full, starts over (the set of questions a dashboard asks is small).
    pub fn insert(&mut self, version: Option<String>, target: &str, reply: Arc<Reply>, cap: usize) {
        if reply.status != 200 || version != self.version || reply.body.len() > cap {
            return;
        }
        if self.bytes + reply.body.len() > cap {
            self.replies.clear();
            self.bytes = 0;
        }
        self.bytes += reply.body.len();
        self.replies.insert(target.to_owned(), reply);
    }
}

/// A server that listens; [`Server::run`] answers until the process ends.
pub struct Server<S> {
    http: Arc<tiny_http::Server>,
    store: Arc<S>,
    cache: Arc<RwLock<AnswerCache>>,
    options: ServeOptions,
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

impl<S: ServingStore + Send + Sync + 'static> Server<S> {
    pub fn bind(store: S, options: ServeOptions) -> Result<Server<S>> {
        let listener = std::net::TcpListener::bind(&options.addr)
            .with_context(|| format!("cannot listen on {}", options.addr))?;
        let bound = listener.local_addr().context("the listening address")?;
        if !bound.ip().is_loopback() && options.token.is_none() {
            anyhow::bail!(
                "refusing to serve on {} without a token: off loopback the dashboard needs \
                 one (set PIPELINE_DASHBOARD_TOKEN or [serving] dashboard_token)",
                options.addr
            );
        }
        // No Nagle delay: the server writes a response's head and body separately,
        // and a client that delays its ACK would hold the body back 40 ms. (Linux
        // gives accepted connections the listener's TCP_NODELAY.)
        socket2::SockRef::from(&listener)
            .set_tcp_nodelay(true)
            .context("set TCP_NODELAY")?;
        let http = tiny_http::Server::from_listener(listener, None)
            .map_err(|e| anyhow!("{e}"))
            .with_context(|| format!("cannot serve on {}", options.addr))?;
        let cache = AnswerCache {
            version: store.version().ok().flatten(),
            ..AnswerCache::default()
        };
        Ok(Server {
            http: Arc::new(http),
            store: Arc::new(store),
            cache: Arc::new(RwLock::new(cache)),
            options,
        })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.http.server_addr().to_ip()
    }

    /// Answers requests until `stop` is set: then the workers finish the requests
    /// they hold and return.
    pub fn run_until(self, stop: &'static AtomicBool) -> Result<()> {
        let (http, workers) = (self.http.clone(), self.options.workers.max(1));
        std::thread::Builder::new()
            .name("serving-stop".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                // Each call wakes one worker waiting in `recv`.
                for _ in 0..workers {
                    http.unblock();
                }
            })
            .context("start the stop thread")?;
        self.run()
    }

    pub fn run(self) -> Result<()> {
        let (store, cache) = (self.store.clone(), self.cache.clone());
        let every = self.options.refresh_every;
        std::thread::Builder::new()
            .name("serving-refresh".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(every);
                    match store.refresh().and_then(|()| store.version()) {
                        Ok(v) => write(&cache).set_version(v),
                        Err(e) => {
                            tracing::warn!(error = format!("{e:#}"), "serving store refresh failed")
                        }
                    }
                }
            })
            .context("start the refresh thread")?;
        let cap = self.options.cache_bytes;
        let token: Option<Arc<str>> = self.options.token.as_ref().map(|t| t.expose().into());
        let mut workers = Vec::new();
        for i in 0..self.options.workers.max(1) {
            let (http, store, cache) = (self.http.clone(), self.store.clone(), self.cache.clone());
            let token = token.clone();
            workers.push(
                std::thread::Builder::new()
                    .name(format!("serving-http-{i}"))
                    .spawn(move || {
                        while let Ok(request) = http.recv() {
                            let started = Instant::now();
                            let method = request.method().as_str().to_owned();
                            let target = request.url().to_owned();
                            let headers: Vec<(String, String)> = request
                                .headers()
                                .iter()
                                .map(|h| (h.field.to_string(), h.value.to_string()))
                                .collect();
                            let headers: Vec<(&str, &str)> = headers
                                .iter()
                                .map(|(n, v)| (n.as_str(), v.as_str()))
                                .collect();
                            match access(token.as_deref(), &target, &headers) {
                                Access::Allowed => {}
                                Access::SetCookie { location } => {
                                    set_cookie(request, &location, token.as_deref().unwrap_or(""));
                                    continue;
                                }
                                Access::Denied => {
                                    let api = target.starts_with("/api/");
                                    respond(
                                        request,
                                        &Reply::error(
                                            401,
                                            api,
                                            "a token is required: send Authorization: Bearer \
                                             <token>, or open /?token=<token> once in a browser",
                                        ),
                                    );
                                    tracing::debug!(
                                        method,
                                        target = shown_target(&target),
                                        status = 401,
                                        "request"
                                    );
                                    continue;
                                }
                            }
                            let use_cache = cap > 0 && method == "GET" && cacheable(&target);
                            let (version, hit) = if use_cache {
                                let c = read(&cache);
                                (c.version(), c.get(&target))
                            } else {
                                (None, None)
                            };
                            let reply = match hit {
                                Some(r) => r,
                                None => {
                                    let r = Arc::new(handle(store.as_ref(), &method, &target));
                                    if use_cache {
                                        write(&cache).insert(version, &target, r.clone(), cap);
                                    }
                                    r
                                }
                            };
                            let status = reply.status;
                            respond(request, &reply);
                            tracing::debug!(
                                method,
                                target = shown_target(&target),
                                status,
                                micros = started.elapsed().as_micros() as u64,
                                "request"
                            );
                        }
                    })
                    .context("start an HTTP worker")?,
            );
        }
        for w in workers {
            w.join().map_err(|_| anyhow!("an HTTP worker panicked"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn without_a_token_everything_is_allowed_and_with_one_only_what_shows_it() {
        assert_eq!(access(None, "/api/q4", &[]), Access::Allowed);
        let t = Some("s3cret-token");
        assert_eq!(access(t, "/healthz", &[]), Access::Allowed);
        for target in [
            "/",
            "/api/q4",
            "/api/orgs",
            "/dashboard.js",
            "/panels?org=a",
        ] {
            assert_eq!(access(t, target, &[]), Access::Denied, "{target}");
            assert_eq!(
                access(t, target, &[("Authorization", "Bearer s3cret-token")]),
                Access::Allowed
            );
            assert_eq!(
                access(t, target, &[("cookie", "a=b; pipeline_token=s3cret-token")]),
                Access::Allowed
            );
            for wrong in [
                "Bearer s3cret-tokem",
                "Bearer s3cret-token2",
                "Basic s3cret-token",
                "Bearer ",
            ] {
                assert_eq!(
                    access(t, target, &[("authorization", wrong)]),
                    Access::Denied,
                    "{wrong}"
                );
            }
            assert_eq!(
                access(t, target, &[("Cookie", "pipeline_token=nope")]),
                Access::Denied
            );
        }
        // A page opened with the token moves it into a cookie; the API never takes
        // it from the URL.
        assert_eq!(
            access(t, "/?token=s3cret-token", &[]),
            Access::SetCookie {
                location: "/".into()
            }
        );
        assert_eq!(
            access(t, "/?org=a&token=s3cret-token&from=2025-07-01", &[]),
            Access::SetCookie {
                location: "/?org=a&from=2025-07-01".into()
            }
        );
        assert_eq!(access(t, "/?token=wrong", &[]), Access::Denied);
        assert_eq!(access(t, "/api/q4?token=s3cret-token", &[]), Access::Denied);
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd") && !same_secret(b"abc", b"abcd"));
    }

    #[test]
    fn tokens_never_reach_a_log_line() {
        assert_eq!(
            shown_target("/?org=a&token=s3cret&x=1"),
            "/?org=a&token=<redacted>&x=1"
        );
        assert_eq!(shown_target("/api/q1?org=a"), "/api/q1?org=a");
        assert_eq!(shown_target("/healthz"), "/healthz");
    }

    fn reply(status: u16, body: &str) -> Arc<Reply> {
        Arc::new(Reply {
            status,
            content_type: JSON,
            body: body.into(),
        })
    }

    #[test]
    fn the_cache_holds_answers_of_one_version_only() {
        let mut c = AnswerCache::default();
        c.set_version(Some("1".into()));
        c.insert(Some("1".into()), "/api/q3", reply(200, "[1]"), 100);
        assert_eq!(c.get("/api/q3").unwrap().body, "[1]");
        // Errors are not kept; nor an answer read at a version that has moved on.
        c.insert(Some("1".into()), "/api/q9", reply(404, "x"), 100);
        assert!(c.get("/api/q9").is_none());
        c.set_version(Some("2".into()));
        assert!(
            c.get("/api/q3").is_none(),
            "a new version drops every answer"
        );
        c.insert(Some("1".into()), "/api/q3", reply(200, "[old]"), 100);
        assert!(c.get("/api/q3").is_none(), "read before the move: refused");
        // Full: starts over.
        c.insert(Some("2".into()), "/a", reply(200, &"x".repeat(60)), 100);
        c.insert(Some("2".into()), "/b", reply(200, &"y".repeat(60)), 100);
        assert!(c.get("/a").is_none() && c.get("/b").is_some());
        assert!(cacheable("/api/q1?org=a") && cacheable("/") && cacheable("/panels?org=a"));
        assert!(!cacheable("/healthz") && !cacheable("/dashboard.js"));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b+c").as_deref(), Some("a b c"));
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%4"), None);
        assert_eq!(percent_decode("%ff"), None); // not UTF-8
    }

    #[test]
    fn parameters_are_known_and_single() {
        let p = parameters("org=a&days=3", QUERY_PARAMS).unwrap();
        assert_eq!(p["org"], "a");
        assert!(
            parameters("org=a&org=b", QUERY_PARAMS)
                .unwrap_err()
                .to_string()
                .contains("twice")
        );
        assert!(
            parameters("limit=1", QUERY_PARAMS)
                .unwrap_err()
                .to_string()
                .contains("unknown parameter")
        );
        assert!(parameters("", QUERY_PARAMS).unwrap().is_empty());
    }

    #[test]
    fn bad_values_are_rejected_before_any_read() {
        let args = |q: &str| query_args(&parameters(q, QUERY_PARAMS).unwrap());
        for q in [
            "org=a'b",
            "org=%3Cscript%3E",
            "from=2025-13-01",
            "from=yesterday",
            "to=2025-02-30",
            "from=2025-07-02&to=2025-07-01",
            "days=0",
            "days=-1",
            "days=99999",
            "days=1.5",
            "top=0",
            "top=-3",
            "top=x",
            "top=100000",
        ] {
            let e = args(q).unwrap_err().to_string();
            assert!(!e.contains('\n'), "{q}: {e}");
        }
        let ok = args("org=org_1&from=2025-07-01&to=2025-07-01&days=7&top=5").unwrap();
        assert_eq!(ok.org.as_deref(), Some("org_1"));
        assert_eq!((ok.days, ok.top), (Some(7), Some(5)));
    }
}
