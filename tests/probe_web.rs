//! What an outside probe of the dashboard, the portal and the API found ("Hostile tenants"),
//! each proved over HTTP the way the probe met it: where a login may send a browser, a portal
//! link opened beside an operator's session, links built from the request's `Host`, what a
//! failed login logs, controls shown to a read-only portal, keep-alive connections after an
//! answer given before the body was read, a tenant changing its application's uid, and dates
//! out of every range.

mod common;

use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PASSWORD: &str = "correct horse battery";

/// What a page answered: status, body, `Location` and every `Set-Cookie`.
struct Page {
    status: StatusCode,
    body: String,
    location: Option<String>,
    cookies: Vec<String>,
}

/// A browser without JavaScript: cookies kept, redirects not followed.
struct Browser {
    client: reqwest::Client,
    base: String,
}

impl Browser {
    fn new(s: &TestServer) -> Browser {
        Browser {
            client: reqwest::Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: s.base.trim_end_matches("/api/v1").to_string(),
        }
    }

    async fn page(response: reqwest::Response) -> Page {
        let header = |name| {
            response
                .headers()
                .get_all(name)
                .iter()
                .map(|v| v.to_str().unwrap().to_string())
                .collect::<Vec<_>>()
        };
        let location = header("location").pop();
        let cookies = header("set-cookie");
        Page {
            status: response.status(),
            location,
            cookies,
            body: response.text().await.unwrap(),
        }
    }

    async fn get(&self, path: &str) -> Page {
        let r = self.client.get(format!("{}{path}", self.base));
        Browser::page(r.send().await.unwrap()).await
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> Page {
        let r = self.client.post(format!("{}{path}", self.base)).form(form);
        Browser::page(r.send().await.unwrap()).await
    }

    /// Logs in; answers the session's CSRF token.
    async fn login(&self, user: &str) -> String {
        let form = self.get("/login").await;
        let csrf = csrf_of(&form.body);
        let done = self
            .post(
                "/login",
                &[("csrf", &csrf), ("username", user), ("password", PASSWORD)],
            )
            .await;
        assert_eq!(done.status, StatusCode::SEE_OTHER, "logged in");
        csrf_of(&self.get("/overview").await.body)
    }

    /// Opens a portal link as a browser does: the entrance page, then where it forwards.
    async fn enter_portal(&self, url: &str) -> Page {
        let entrance = self.get(&url[url.find("/portal/").unwrap()..]).await;
        assert_eq!(entrance.status, StatusCode::OK, "{}", entrance.body);
        let marker = "url=";
        let at = entrance.body.find(marker).expect("the entrance forwards") + marker.len();
        let to = entrance.body[at..]
            .split('"')
            .next()
            .unwrap()
            .replace("&amp;", "&");
        let next = self.get(&to).await;
        match next.location {
            Some(location) if next.status == StatusCode::SEE_OTHER => self.get(&location).await,
            _ => next,
        }
    }
}

/// The value of the first hidden `csrf` field of a page.
fn csrf_of(html: &str) -> String {
    let marker = r#"name="csrf" value=""#;
    let start = html.find(marker).expect("a form with a CSRF token") + marker.len();
    html[start..].split('"').next().unwrap().to_string()
}

fn encoded(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

async fn portal_link(s: &TestServer, app: &str, read_only: bool) -> String {
    let (status, access) = s
        .post(
            &format!("/auth/app-portal-access/{app}"),
            json!({"readOnly": read_only}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{access}");
    access["url"].as_str().unwrap().to_string()
}

// ---- 1. where a login returns to ----------------------------------------------------------

#[tokio::test]
async fn a_login_returns_only_to_a_plain_local_path() {
    let s = start_server_with(|c| c.login_attempts_per_minute = 100).await;
    s.service.add_user("ops", PASSWORD).await.unwrap();
    let b = Browser::new(&s);
    let hostile = [
        "/\t/evil.example/",
        "/%09/evil.example/",
        "/\r\n/evil.example/",
        "/%0d%0aSet-Cookie:%20a=b",
        "/\0",
        "//evil.example",
        "/\\evil.example",
        "/%2F/evil.example",
        "/%2f%2fevil.example",
        "/%5Cevil.example",
        "/x\\y",
        "https://evil.example/",
        "evil.example",
        "",
    ];

    // The login form itself: each target is refused when the form is posted.
    for next in hostile {
        let form = b.get(&format!("/login?next={}", encoded(next))).await;
        assert_eq!(form.status, StatusCode::OK, "{next:?}");
        assert!(
            !form.body.contains("evil.example"),
            "{next:?} is not carried in the form"
        );
        let csrf = csrf_of(&form.body);
        let done = b
            .post(
                "/login",
                &[
                    ("csrf", &csrf),
                    ("username", "ops"),
                    ("password", PASSWORD),
                    ("next", next),
                ],
            )
            .await;
        assert_eq!(done.status, StatusCode::SEE_OTHER, "{next:?}");
        assert_eq!(done.location.as_deref(), Some("/"), "{next:?}");
        // Logged in now: the login page forwards at once, by the same rule.
        let again = b.get(&format!("/login?next={}", encoded(next))).await;
        assert_eq!(again.status, StatusCode::SEE_OTHER, "{next:?}");
        assert_eq!(again.location.as_deref(), Some("/"), "{next:?}");
        let csrf = csrf_of(&b.get("/overview").await.body);
        assert_eq!(
            b.post("/logout", &[("csrf", &csrf)]).await.status,
            StatusCode::SEE_OTHER
        );
    }

    // A plain path of the dashboard is where it returns to.
    let form = b.get("/login?next=%2Fqueue%3Fstate%3Dfailed").await;
    let csrf = csrf_of(&form.body);
    let done = b
        .post(
            "/login",
            &[
                ("csrf", &csrf),
                ("username", "ops"),
                ("password", PASSWORD),
                ("next", "/queue?state=failed"),
            ],
        )
        .await;
    assert_eq!(done.location.as_deref(), Some("/queue?state=failed"));
    s.stop().await;
}

// ---- 2. a portal link beside an operator's session ------------------------------------------

#[tokio::test]
async fn a_portal_link_never_replaces_an_operators_session() {
    let s = start_server().await;
    s.service.add_user("ops", PASSWORD).await.unwrap();
    let receiver = Receiver::start().await;
    let (app, _) = s.setup("order.created", &receiver.url()).await;
    let url = portal_link(&s, &app, false).await;
    let path = &url[url.find("/portal/").unwrap()..];

    let operator = Browser::new(&s);
    operator.login("ops").await;
    let refused = operator.get(path).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(
        refused.body.contains("logged in") && refused.body.contains("operator"),
        "{}",
        refused.body
    );
    assert!(refused.body.contains("Log out") || refused.body.contains("log out"));
    assert!(
        !refused
            .cookies
            .iter()
            .any(|c| c.starts_with("herald_session=")),
        "{:?}",
        refused.cookies
    );
    // The entrance's second step refuses too, whatever it carries.
    let refused = operator.get(&format!("{path}?enter=guess")).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let overview = operator.get("/overview").await;
    assert_eq!(overview.status, StatusCode::OK, "still the operator");
    assert!(overview.body.contains("ops"));

    // A link arriving from another site carries none of the browser's SameSite=Strict cookies,
    // so its first answer cannot know who is logged in: it starts no session, and forwards
    // to a same-site step that can see.
    let fresh = Browser::new(&s);
    let entrance = fresh.get(path).await;
    assert_eq!(entrance.status, StatusCode::OK);
    assert!(
        !entrance
            .cookies
            .iter()
            .any(|c| c.starts_with("herald_session=")),
        "{:?}",
        entrance.cookies
    );
    // A tenant without an operator's session gets in.
    let portal = fresh.enter_portal(&url).await;
    assert_eq!(portal.status, StatusCode::OK);
    assert!(portal.body.contains(&format!("/apps/{app}")));
    assert!(!portal.body.contains("Webhook queue"), "the portal's pages");
    s.stop().await;
}

// ---- 3. absolute links ---------------------------------------------------------------------

#[tokio::test]
async fn links_never_come_from_the_requests_host_header() {
    let s = start_server().await;
    s.service.add_user("ops", PASSWORD).await.unwrap();
    let listen = s
        .base
        .trim_end_matches("/api/v1")
        .trim_start_matches("http://")
        .to_string();
    let receiver = Receiver::start().await;
    let (app, _) = s.setup("order.created", &receiver.url()).await;

    let (status, access) = {
        let r = s
            .client
            .post(s.url(&format!("/auth/app-portal-access/{app}")))
            .bearer_auth(&s.token)
            .header("host", "evil.example")
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        (r.status(), r.json::<Value>().await.unwrap())
    };
    assert_eq!(status, StatusCode::OK);
    let url = access["url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("http://{listen}/portal/access/")),
        "{url}"
    );

    let b = Browser::new(&s);
    let csrf = b.login("ops").await;
    let made = b
        .client
        .post(format!("{}/apps/{app}/portal-link", b.base))
        .header("host", "evil.example")
        .form(&[("csrf", csrf.as_str()), ("expiry", "3600")])
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), StatusCode::OK);
    let page = made.text().await.unwrap();
    assert!(page.contains(&format!("http://{listen}/portal/access/")));
    assert!(!page.contains("evil.example"));
    let overview = b
        .client
        .get(format!("{}/overview", b.base))
        .header("host", "evil.example")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(overview.contains(&format!("http://{listen}/api/v1")));
    assert!(!overview.contains("evil.example"));

    // Said once, at warn, with what to set.
    let warned: Vec<String> = logs()
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("public_url") && l.contains(&listen))
        .map(str::to_string)
        .collect();
    assert_eq!(warned.len(), 1, "{warned:?}");
    s.stop().await;

    // With public_url, links use it.
    let s = start_server_with(|c| c.public_url = Some("https://herald.example.com/".into())).await;
    let (app, _) = s.setup("order.created", &receiver.url()).await;
    let url = portal_link(&s, &app, false).await;
    assert!(
        url.starts_with("https://herald.example.com/portal/access/hpl_"),
        "{url}"
    );
    s.stop().await;

    // The setup link, made before any request: the listen address too.
    let s = start_server().await;
    let listen = s.base.trim_end_matches("/api/v1").to_string();
    let link = s.service.setup_link().await.unwrap().unwrap();
    assert!(link.starts_with(&format!("{listen}/setup/")), "{link}");
    s.stop().await;
}

// ---- 4. what a failed login logs -------------------------------------------------------------

#[tokio::test]
async fn a_refused_login_logs_nothing_that_was_typed() {
    logs();
    let s = start_server_with(|c| c.login_attempts_per_minute = 2).await;
    s.service.add_user("ops", PASSWORD).await.unwrap();
    let port = s
        .base
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches("/api/v1");
    // People type their password into the username field.
    let typed_name = format!("Typed-Password-{port}-In-Username");
    let typed_password = format!("typed-password-{port}");
    let b = Browser::new(&s);
    let mut statuses = Vec::new();
    for name in [
        typed_name.as_str(),
        typed_name.as_str(),
        typed_name.as_str(),
        "ops",
    ] {
        let form = b.get("/login").await;
        let csrf = csrf_of(&form.body);
        let done = b
            .post(
                "/login",
                &[
                    ("csrf", &csrf),
                    ("username", name),
                    ("password", &typed_password),
                ],
            )
            .await;
        statuses.push(done.status);
    }
    assert_eq!(
        statuses,
        [
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED,
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::UNAUTHORIZED
        ]
    );
    // A bearer token that is not one, on the API.
    let (status, _) = s
        .request(reqwest::Method::GET, "/app", None, Some(&typed_password))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let logged = logs();
    assert!(
        logged.contains("dashboard login refused"),
        "the refusal is logged"
    );
    assert!(logged.contains("login throttled"));
    for secret in [&typed_name, &typed_password] {
        assert!(!logged.contains(secret.as_str()), "{secret} was logged");
    }
    s.stop().await;
}

// ---- 5. a read-only portal's pages -----------------------------------------------------------

/// The `<form>` tags of a page that post, by their action.
fn post_forms(html: &str) -> Vec<String> {
    html.match_indices("<form")
        .filter_map(|(at, _)| {
            let tag = html[at..].split('>').next().unwrap().to_lowercase();
            tag.contains(r#"method="post""#).then(|| {
                tag.split(r#"action=""#)
                    .nth(1)
                    .map_or("", |a| a.split('"').next().unwrap())
                    .to_string()
            })
        })
        .collect()
}

/// The dashboard paths a page links to.
fn links(html: &str) -> Vec<String> {
    html.split(r#"href=""#)
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(|href| href.replace("&amp;", "&"))
        .filter(|href| href.starts_with('/') && !href.starts_with("//"))
        .filter(|href| !href.starts_with("/static/"))
        .collect()
}

#[tokio::test]
async fn a_read_only_portal_is_shown_no_control_it_cannot_use() {
    let s = start_server().await;
    let receiver = Receiver::start_with(Behaviour {
        then: 500,
        ..Behaviour::default()
    })
    .await;
    let (app, ep) = s.setup("order.created", &receiver.url()).await;
    let (status, trigger) = s
        .post(
            &format!("/app/{app}/trigger"),
            json!({"endpointId": ep, "eventTypes": ["order.created"], "condition": "true"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{trigger}");
    let msg = s.send(&app, "order.created", json!({"n": 1})).await;
    let msg = msg["id"].as_str().unwrap().to_string();
    // The deliveries use every attempt: the application has an open alert to acknowledge.
    eventually(Duration::from_secs(20), || async {
        let (_, alerts) = s.get("/alert").await;
        alerts["data"].as_array().is_some_and(|a| !a.is_empty())
    })
    .await;

    let b = Browser::new(&s);
    let url = portal_link(&s, &app, true).await;
    assert_eq!(b.enter_portal(&url).await.status, StatusCode::OK);

    // Every page the portal links to, and the forms a read-only link has no business seeing.
    let mut todo: VecDeque<String> = [
        "/".to_string(),
        format!("/apps/{app}"),
        format!("/apps/{app}/edit"),
        format!("/apps/{app}/endpoints/new"),
        format!("/apps/{app}/endpoints/{ep}"),
        format!("/apps/{app}/endpoints/{ep}/edit"),
        format!("/apps/{app}/triggers/new"),
        format!("/apps/{app}/messages/{msg}"),
        "/queue".to_string(),
        format!("/queue?endpoint={ep}"),
        format!("/messages/find?q={msg}"),
        "/alerts".to_string(),
        "/alerts?all=1".to_string(),
        "/event-types".to_string(),
        "/event-types/order.created".to_string(),
    ]
    .into();
    let mut seen = BTreeSet::new();
    let mut shown = Vec::new();
    while let Some(path) = todo.pop_front() {
        if !seen.insert(path.clone()) || seen.len() > 400 {
            continue;
        }
        let page = b.get(&path).await;
        if let Some(location) = page.location {
            todo.push_back(location);
            continue;
        }
        let forms: Vec<String> = post_forms(&page.body)
            .into_iter()
            .filter(|action| action != "/logout")
            .collect();
        assert!(forms.is_empty(), "{path} shows forms that post: {forms:?}");
        assert!(!page.body.contains("data-preview"), "{path} posts previews");
        if page.status == StatusCode::OK {
            shown.push((path.clone(), page.body.clone()));
            todo.extend(links(&page.body));
        }
    }
    let shown_paths: Vec<&str> = shown.iter().map(|(p, _)| p.as_str()).collect();
    let alerts = shown.iter().find(|(p, _)| p == "/alerts").expect("/alerts");
    assert!(alerts.1.contains("Delivery failed"), "the alert is listed");
    for page in [
        format!("/apps/{app}"),
        format!("/apps/{app}/endpoints/{ep}"),
        format!("/apps/{app}/messages/{msg}"),
        format!("/apps/{app}/triggers/{}", trigger["id"].as_str().unwrap()),
        format!("/queue?endpoint={ep}"),
    ] {
        assert!(
            shown_paths.contains(&page.as_str()),
            "{page} in {shown_paths:?}"
        );
    }
    s.stop().await;
}

// ---- 6. keep-alive after an early answer -----------------------------------------------------

/// A keep-alive HTTP/1.1 client written by hand, as the SDKs' pools use a connection.
struct Raw {
    stream: tokio::net::TcpStream,
    read: Vec<u8>,
}

struct RawAnswer {
    status: u16,
    head: String,
}

impl RawAnswer {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_ascii_lowercase())
        })
    }
}

const RAW_WAIT: Duration = Duration::from_secs(10);

impl Raw {
    async fn connect(s: &TestServer) -> Raw {
        let addr = s
            .base
            .trim_start_matches("http://")
            .trim_end_matches("/api/v1");
        Raw {
            stream: tokio::net::TcpStream::connect(addr).await.unwrap(),
            read: Vec::new(),
        }
    }

    /// Sends a request; its `Content-Length` is the body's unless `headers` declare one.
    async fn send(&mut self, method: &str, path: &str, headers: &[&str], body: &[u8]) {
        let mut request = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
        if !headers
            .iter()
            .any(|h| h.to_ascii_lowercase().starts_with("content-length:"))
        {
            request.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        for h in headers {
            request.push_str(h);
            request.push_str("\r\n");
        }
        request.push_str("\r\n");
        let mut bytes = request.into_bytes();
        bytes.extend_from_slice(body);
        self.stream.write_all(&bytes).await.unwrap();
    }

    async fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 16 * 1024];
        let n = tokio::time::timeout(RAW_WAIT, self.stream.read(&mut chunk))
            .await
            .expect("an answer in time")
            .expect("the connection is not reset");
        self.read.extend_from_slice(&chunk[..n]);
        n
    }

    async fn answer(&mut self) -> RawAnswer {
        let end = loop {
            if let Some(at) = self.read.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            assert!(self.fill().await > 0, "closed before an answer");
        };
        let head = String::from_utf8(self.read[..end].to_vec()).unwrap();
        let mut answer = RawAnswer {
            status: head.split(' ').nth(1).unwrap().parse().unwrap(),
            head,
        };
        let length: usize = answer
            .header("content-length")
            .expect("answers have a length")
            .parse()
            .unwrap();
        while self.read.len() < end + length {
            assert!(self.fill().await > 0, "closed inside an answer");
        }
        self.read.drain(..end + length);
        answer.head.make_ascii_lowercase();
        answer
    }

    /// The server closed its side after the last answer, in order (no reset, nothing more).
    async fn closed_cleanly(&mut self) -> bool {
        self.fill().await == 0 && self.read.is_empty()
    }

    /// After answer `a`: when it says `Connection: close`, the server closes in order; when it
    /// does not, the connection answers the next request. Answers whether it closed.
    async fn closes_or_serves_on(&mut self, a: &RawAnswer) -> bool {
        if a.header("connection").as_deref() == Some("close") {
            assert!(self.closed_cleanly().await, "closed in order: {}", a.head);
            return true;
        }
        self.send("GET", "/api/v1/health", &[], b"").await;
        assert_eq!(
            self.answer().await.status,
            200,
            "kept alive after {}",
            a.head
        );
        false
    }
}

#[tokio::test]
async fn an_answer_before_the_body_is_read_says_the_connection_closes() {
    let s = start_server_with(|c| c.request_body_max_bytes = 1024).await;
    let auth = format!("Authorization: Bearer {}", s.token);
    let json = "Content-Type: application/json";
    let app = br#"{"name": "kept alive"}"#;

    // Answers that read their body keep the connection usable, failures included.
    let mut c = Raw::connect(&s).await;
    c.send("POST", "/api/v1/app", &[&auth, json], app).await;
    let a = c.answer().await;
    assert_eq!(a.status, 201, "{}", a.head);
    assert_eq!(a.header("connection"), None, "{}", a.head);
    c.send("POST", "/api/v1/app", &[&auth, json], br#"{"name": 7}"#)
        .await;
    assert_eq!(c.answer().await.status, 422);
    c.send("GET", "/api/v1/app", &[&auth], b"").await;
    assert_eq!(c.answer().await.status, 200);

    // Refused before the body is read (one declared larger than the limit is refused once
    // what arrived passes the limit, the rest still to come): the answer says the connection
    // closes, and it does.
    let part = format!(r#"{{"name": "{}"#, "x".repeat(1500));
    let form = "Content-Type: application/x-www-form-urlencoded";
    let declared = format!("Content-Length: {}", 1024 * 1024);
    let unread: [(&str, Vec<&str>, &[u8], u16); 4] = [
        ("/api/v1/app", vec![json], app, 401),
        (
            "/api/v1/app",
            vec![&auth, json, &declared],
            part.as_bytes(),
            413,
        ),
        ("/api/v1/nowhere", vec![&auth, json], app, 404),
        ("/apps", vec![form], b"name=x&csrf=y", 403),
    ];
    for (path, headers, body, status) in unread {
        let mut c = Raw::connect(&s).await;
        c.send("GET", "/api/v1/health", &[], b"").await;
        let first = c.answer().await;
        assert_eq!(first.header("connection"), None, "{}", first.head);
        c.send("POST", path, &headers, body).await;
        let a = c.answer().await;
        assert_eq!(a.status, status, "{path}: {}", a.head);
        assert!(c.closes_or_serves_on(&a).await, "{path}: {}", a.head);
    }
    // A body that arrived whole before its refusal: closed in order, or kept usable.
    let big = format!(r#"{{"name": "{}"}}"#, "x".repeat(2000));
    let mut c = Raw::connect(&s).await;
    c.send("POST", "/api/v1/app", &[&auth, json], big.as_bytes())
        .await;
    let a = c.answer().await;
    assert_eq!(a.status, 413);
    c.closes_or_serves_on(&a).await;
    s.stop().await;
}

// ---- 7. a tenant and its application's uid ----------------------------------------------------

#[tokio::test]
async fn only_an_admin_changes_an_applications_uid() {
    let s = start_server().await;
    let (status, mine) = s
        .post("/app", json!({"name": "Mine", "uid": "tenant-a"}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let mine = mine["id"].as_str().unwrap().to_string();
    let (status, _) = s
        .post("/app", json!({"name": "Theirs", "uid": "tenant-b"}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let scoped = s
        .service
        .create_token("scoped", Some(&mine))
        .await
        .unwrap()
        .text;
    let call = |method: reqwest::Method, body: Value| {
        let (s, scoped, mine) = (&s, &scoped, &mine);
        async move {
            s.request(method, &format!("/app/{mine}"), Some(body), Some(scoped))
                .await
        }
    };
    use reqwest::Method;
    for (method, body) in [
        (Method::PUT, json!({"name": "Mine", "uid": "tenant-b"})),
        (Method::PUT, json!({"name": "Mine", "uid": "tenant-c"})),
        (Method::PUT, json!({"name": "Mine"})),
        (Method::PATCH, json!({"uid": "tenant-b"})),
        (Method::PATCH, json!({"uid": "tenant-c"})),
        (Method::PATCH, json!({"uid": null})),
    ] {
        let (status, answer) = call(method.clone(), body.clone()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {body}: {answer}");
        assert_eq!(answer["code"], "insufficient_access", "{answer}");
        assert!(
            answer["detail"].as_str().unwrap().contains("uid"),
            "{answer}"
        );
    }
    // Its own uid, sent again or left out of a PATCH, is fine; so are the other fields.
    let (status, answer) = call(Method::PUT, json!({"name": "Mine 2", "uid": "tenant-a"})).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, answer) = call(Method::PATCH, json!({"name": "Mine 3"})).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["uid"], "tenant-a");
    // An admin changes it.
    let (status, _) = s
        .request(
            Method::PATCH,
            &format!("/app/{mine}"),
            Some(json!({"uid": "tenant-b"})),
            Some(&s.token),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, answer) = s
        .request(
            Method::PATCH,
            &format!("/app/{mine}"),
            Some(json!({"uid": "tenant-c"})),
            Some(&s.token),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["uid"], "tenant-c");

    // The portal's form: the uid is shown, not editable; a forged one is refused.
    let b = Browser::new(&s);
    let url = portal_link(&s, &mine, false).await;
    assert_eq!(b.enter_portal(&url).await.status, StatusCode::OK);
    let form = b.get(&format!("/apps/{mine}/edit")).await;
    assert_eq!(form.status, StatusCode::OK);
    let uid_input = form.body.split(r#"id="uid""#).nth(1).unwrap();
    assert!(uid_input.split('>').next().unwrap().contains("readonly"));
    let csrf = csrf_of(&form.body);
    let saved = b
        .post(
            &format!("/apps/{mine}"),
            &[("csrf", &csrf), ("name", "Mine 4"), ("uid", "tenant-b")],
        )
        .await;
    assert_eq!(saved.status, StatusCode::FORBIDDEN, "{}", saved.body);
    assert!(!saved.body.contains("exists"));
    let saved = b
        .post(
            &format!("/apps/{mine}"),
            &[("csrf", &csrf), ("name", "Mine 4"), ("uid", "tenant-c")],
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    let (_, app) = s.get(&format!("/app/{mine}")).await;
    assert_eq!(app["name"], "Mine 4");
    s.stop().await;
}

// ---- 8. dates out of range -------------------------------------------------------------------

#[tokio::test]
async fn dates_out_of_range_are_refused_naming_the_field() {
    let s = start_server().await;
    s.service.add_user("ops", PASSWORD).await.unwrap();
    let receiver = Receiver::start().await;
    let (app, ep) = s.setup("order.created", &receiver.url()).await;
    let recent = "2025-01-01T00:00:00Z";
    let far = [
        "-262000-01-01T00:00:00",
        "+262000-01-01T00:00:00",
        "-9999-01-01T00:00:00",
        "+10000-01-01T00:00:00",
        "9999999-01-01T00:00:00Z",
    ];
    let check = |status: StatusCode, answer: &Value, place: &str, field: &str, what: &str| {
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{what}: {answer}");
        assert_eq!(
            answer["detail"][0]["loc"],
            json!([place, field]),
            "{what}: {answer}"
        );
    };
    for date in far {
        for action in ["recover", "replay-missing"] {
            let path = format!("/app/{app}/endpoint/{ep}/{action}");
            let (status, answer) = s.post(&path, json!({"since": date})).await;
            check(
                status,
                &answer,
                "body",
                "since",
                &format!("{action} since {date}"),
            );
            let (status, answer) = s.post(&path, json!({"since": recent, "until": date})).await;
            check(
                status,
                &answer,
                "body",
                "until",
                &format!("{action} until {date}"),
            );
        }
        let q = encoded(date);
        for (path, field) in [
            (format!("/app/{app}/endpoint/{ep}/stats?since={q}"), "since"),
            (format!("/app/{app}/endpoint/{ep}/stats?until={q}"), "until"),
            (format!("/app/{app}/msg?before={q}"), "before"),
            (format!("/app/{app}/msg?after={q}"), "after"),
            (
                format!("/app/{app}/attempt/endpoint/{ep}?after={q}"),
                "after",
            ),
            (format!("/app/{app}/endpoint/{ep}/msg?before={q}"), "before"),
        ] {
            let (status, answer) = s.get(&path).await;
            check(status, &answer, "query", field, &path);
        }
    }
    // The dashboard's fields go through the same conversion: a page saying so, not a crash.
    let b = Browser::new(&s);
    let csrf = b.login("ops").await;
    for date in far {
        let done = b
            .post(
                &format!("/apps/{app}/endpoints/{ep}/recover"),
                &[("csrf", &csrf), ("since", date)],
            )
            .await;
        assert_eq!(done.status, StatusCode::BAD_REQUEST, "{date}");
        let queue = b.get(&format!("/queue?since={}", encoded(date))).await;
        assert_eq!(queue.status, StatusCode::OK, "{date}");
    }
    // Still serving.
    let (status, _) = s
        .post(
            &format!("/app/{app}/endpoint/{ep}/recover"),
            json!({"since": recent}),
        )
        .await;
    assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR);
    s.stop().await;
}
