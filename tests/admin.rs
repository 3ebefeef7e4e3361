//! The dashboard over HTTP, as a browser without JavaScript uses it: a cookie jar, forms that
//! post back. Login and its refusals, CSRF, sessions, the setup link, and the tenant portal's
//! scoping (another application's things answer 404).

mod common;

use std::time::Duration;

use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery";

/// A browser-like client: cookies kept, redirects not followed (so each answer is seen).
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn root(s: &TestServer) -> String {
    s.base.trim_end_matches("/api/v1").to_string()
}

/// The value of the first hidden `csrf` field of a page.
fn csrf_of(html: &str) -> String {
    let marker = r#"name="csrf" value=""#;
    let start = html.find(marker).expect("a form with a CSRF token") + marker.len();
    html[start..].split('"').next().unwrap().to_string()
}

async fn get(c: &reqwest::Client, url: &str) -> (StatusCode, String, Option<String>) {
    let r = c.get(url).send().await.unwrap();
    let status = r.status();
    let location = r
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_string());
    (status, r.text().await.unwrap(), location)
}

async fn post(
    c: &reqwest::Client,
    url: &str,
    form: &[(&str, &str)],
) -> (StatusCode, String, Option<String>) {
    let r = c.post(url).form(form).send().await.unwrap();
    let status = r.status();
    let location = r
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_string());
    (status, r.text().await.unwrap(), location)
}

/// Logs `c` in as `user`; answers the CSRF token of the session's forms.
async fn login(s: &TestServer, c: &reqwest::Client, user: &str, password: &str) -> String {
    let base = root(s);
    let (status, page, _) = get(c, &format!("{base}/login")).await;
    assert_eq!(status, StatusCode::OK);
    let csrf = csrf_of(&page);
    let (status, _, location) = post(
        c,
        &format!("{base}/login"),
        &[
            ("csrf", &csrf),
            ("username", user),
            ("password", password),
            ("next", "/overview"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "login accepted");
    assert_eq!(location.as_deref(), Some("/overview"));
    let (status, page, _) = get(c, &format!("{base}/overview")).await;
    assert_eq!(status, StatusCode::OK);
    csrf_of(&page)
}

#[tokio::test]
async fn login_sessions_and_logout() {
    let s = start_server().await;
    s.service.add_user("ops", PASSWORD).await.unwrap();
    let base = root(&s);
    let c = browser();

    // Without a session every page sends to the login form, and comes back afterwards.
    let (status, _, location) = get(&c, &format!("{base}/queue?state=failed")).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        location.as_deref(),
        Some("/login?next=%2Fqueue%3Fstate%3Dfailed")
    );

    let csrf = login(&s, &c, "ops", PASSWORD).await;
    let r = c.get(format!("{base}/overview")).send().await.unwrap();
    assert!(
        r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    assert!(
        r.headers()["server-timing"]
            .to_str()
            .unwrap()
            .starts_with("app;dur=")
    );
    let page = r.text().await.unwrap();
    assert!(
        page.contains("Overview") && page.contains("ops"),
        "logged in as ops"
    );

    // A login form's token belongs to its browser: another browser's is refused.
    let (a, b) = (browser(), browser());
    let (_, page_a, _) = get(&a, &format!("{base}/login")).await;
    let (_, page_b, _) = get(&b, &format!("{base}/login")).await;
    let r = b
        .post(format!("{base}/login"))
        .form(&[
            ("csrf", csrf_of(&page_a).as_str()),
            ("username", "ops"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // The session cookie is HttpOnly and SameSite=Strict.
    let r = b
        .post(format!("{base}/login"))
        .form(&[
            ("csrf", csrf_of(&page_b).as_str()),
            ("username", "ops"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|v| v.starts_with("herald_session="))
        .expect("a session cookie")
        .to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(!cookie.contains("Secure"), "plain http: not Secure");

    // Logout needs the CSRF token, then ends the session.
    let (status, _, _) = post(&c, &format!("{base}/logout"), &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, location) = post(&c, &format!("{base}/logout"), &[("csrf", &csrf)]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location.as_deref(), Some("/login"));
    let (status, _, location) = get(&c, &format!("{base}/overview")).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(location.unwrap().starts_with("/login"));
    s.stop().await;
}

#[tokio::test]
async fn a_wrong_password_is_refused_and_attempts_are_throttled() {
    let s = start_server_with(|c| c.login_attempts_per_minute = 3).await;
    s.service.add_user("ops", PASSWORD).await.unwrap();
    let base = root(&s);
    let c = browser();
    let (_, page, _) = get(&c, &format!("{base}/login")).await;
    let csrf = csrf_of(&page);
    for attempt in 0..3 {
        let (status, page, _) = post(
            &c,
            &format!("{base}/login"),
            &[
                ("csrf", &csrf),
                ("username", "ops"),
                ("password", "wrong password"),
            ],
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "attempt {attempt}");
        assert!(page.contains("Wrong username or password."));
        assert!(!page.contains("herald_session"));
    }
    // An unknown user gets the same answer as a wrong password... once the quota allows.
    let (status, page, _) = post(
        &c,
        &format!("{base}/login"),
        &[("csrf", &csrf), ("username", "ops"), ("password", PASSWORD)],
    )
    .await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "even the right password waits"
    );
    assert!(page.contains("Too many login attempts"), "{page}");
    let (status, page, _) = post(
        &c,
        &format!("{base}/login"),
        &[
            ("csrf", &csrf),
            ("username", "nobody"),
            ("password", PASSWORD),
        ],
    )
    .await;
    assert!(
        status == StatusCode::UNAUTHORIZED || status == StatusCode::TOO_MANY_REQUESTS,
        "{status}"
    );
    assert!(!page.contains("nobody does not exist"));
    // A form without the login token is refused before any password is looked at.
    let (status, _, _) = post(
        &c,
        &format!("{base}/login"),
        &[("username", "ops"), ("password", PASSWORD)],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    s.stop().await;
}

#[tokio::test]
async fn forms_without_the_csrf_token_are_refused() {
    let s = start_server().await;
    s.service.add_user("ops", PASSWORD).await.unwrap();
    let base = root(&s);
    let c = browser();
    let csrf = login(&s, &c, "ops", PASSWORD).await;

    let (status, page, _) = post(&c, &format!("{base}/apps"), &[("name", "Sneaky")]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(page.contains("CSRF"), "{page}");
    let (status, _, _) = post(
        &c,
        &format!("{base}/apps"),
        &[("name", "Sneaky"), ("csrf", "not-the-token")],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, apps) = s.get("/app").await;
    assert_eq!(
        apps["data"].as_array().unwrap().len(),
        0,
        "nothing was created"
    );

    // With the token it works, and a field error is shown next to its field.
    let (status, page, _) = post(
        &c,
        &format!("{base}/apps"),
        &[("name", "Shop"), ("uid", "app_bad"), ("csrf", &csrf)],
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        page.contains(r#"id="uid-err""#) && page.contains("may not start with"),
        "{page}"
    );
    let (status, _, location) = post(
        &c,
        &format!("{base}/apps"),
        &[("name", "Shop"), ("uid", "shop"), ("csrf", &csrf)],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let location = location.unwrap();
    assert!(location.starts_with("/apps/app_") && location.ends_with("?done=created"));
    let (status, page, _) = get(&c, &format!("{base}{location}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Created.") && page.contains("No endpoints yet"));
    s.stop().await;
}

#[tokio::test]
async fn the_setup_link_creates_the_first_user_once() {
    let s = start_server().await;
    let base = root(&s);
    let link = s.service.setup_link().await.unwrap().expect("no user yet");
    let path = &link[link.find("/setup/").unwrap()..];
    let c = browser();
    let (status, page, _) = get(&c, &format!("{base}{path}")).await;
    assert_eq!(status, StatusCode::OK);
    let csrf = csrf_of(&page);
    let (status, page, _) = post(
        &c,
        &format!("{base}{path}"),
        &[
            ("csrf", &csrf),
            ("username", "first"),
            ("password", PASSWORD),
            ("confirm", "typo"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains(r#"id="confirm-err""#));
    let (status, _, location) = post(
        &c,
        &format!("{base}{path}"),
        &[
            ("csrf", &csrf),
            ("username", "first"),
            ("password", PASSWORD),
            ("confirm", PASSWORD),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location.as_deref(), Some("/overview"));
    let (status, _, _) = get(&c, &format!("{base}/overview")).await;
    assert_eq!(status, StatusCode::OK, "logged in as the new user");
    // Used once: gone.
    let other = browser();
    let (status, _, _) = get(&other, &format!("{base}{path}")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        s.service.setup_link().await.unwrap().is_none(),
        "a user exists"
    );
    s.stop().await;
}

/// Two applications with an endpoint and a delivered message each.
async fn two_tenants(s: &TestServer, receiver: &Receiver) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for name in ["mine", "theirs"] {
        let (app, ep) = s.setup("order.created", &receiver.url()).await;
        let (st, _) = s
            .request(
                reqwest::Method::PATCH,
                &format!("/app/{app}"),
                Some(json!({"name": name})),
                Some(&s.token),
            )
            .await;
        assert_eq!(st, StatusCode::OK);
        let msg = s.send(&app, "order.created", json!({"tenant": name})).await;
        out.push((app, ep, msg["id"].as_str().unwrap().to_string()));
    }
    receiver.wait_for(2, Duration::from_secs(10)).await;
    out
}

/// Opens the portal link at `path`: its entrance page forwards to a second, same-site step,
/// which starts the session and answers where the portal is.
async fn enter_portal(c: &reqwest::Client, base: &str, path: &str) -> String {
    let (status, page, _) = get(c, &format!("{base}{path}")).await;
    assert_eq!(status, StatusCode::OK);
    let marker = "url=";
    let start = page.find(marker).expect("the entrance forwards") + marker.len();
    let step = page[start..].split('"').next().unwrap();
    let (status, _, location) = get(c, &format!("{base}{step}")).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    location.expect("into the portal")
}

#[tokio::test]
async fn a_portal_link_sees_one_application_and_nothing_else() {
    let s = start_server().await;
    let receiver = Receiver::start().await;
    let tenants = two_tenants(&s, &receiver).await;
    let (mine, my_ep, my_msg) = &tenants[0];
    let (theirs, their_ep, their_msg) = &tenants[1];
    let base = root(&s);

    // Only an admin token may make portal links; the answer is Svix's {url, token}.
    let scoped = s
        .service
        .create_token("scoped", Some(mine))
        .await
        .unwrap()
        .text;
    let (st, _) = s
        .request(
            reqwest::Method::POST,
            &format!("/auth/app-portal-access/{mine}"),
            Some(json!({})),
            Some(&scoped),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = s
        .post("/auth/app-portal-access/app_nothing", json!({}))
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = s
        .post(
            &format!("/auth/app-portal-access/{mine}"),
            json!({"expiry": 1}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    let (st, access) = s
        .post(
            &format!("/auth/app-portal-access/{mine}"),
            json!({"expiry": 3600}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{access}");
    let url = access["url"].as_str().unwrap();
    assert!(url.contains(access["token"].as_str().unwrap()));
    let path = &url[url.find("/portal/access/").unwrap()..];

    let c = browser();
    let location = enter_portal(&c, &base, path).await;
    assert_eq!(
        location,
        format!("/apps/{mine}"),
        "forwards into the portal"
    );
    let (status, page, _) = get(&c, &format!("{base}/apps/{mine}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("mine") && !page.contains("theirs"));
    assert!(
        !page.contains("Webhook queue"),
        "the operator's navigation is hidden"
    );
    let (status, _, _) = get(&c, &format!("{base}/apps/{mine}/endpoints/{my_ep}")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, page, _) = get(&c, &format!("{base}/apps/{mine}/messages/{my_msg}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Succeeded"));

    // Everything of the other application is not found, however it is named.
    for path in [
        format!("/apps/{theirs}"),
        format!("/apps/{theirs}/endpoints/{their_ep}"),
        format!("/apps/{mine}/endpoints/{their_ep}"),
        format!("/apps/{theirs}/messages/{their_msg}"),
        format!("/apps/{mine}/messages/{their_msg}"),
        format!("/apps/{theirs}/edit"),
        format!("/apps/{theirs}/endpoints/new"),
        "/overview".to_string(),
        "/alerts/nothing".to_string(),
        "/apps/new".to_string(),
        "/event-types/new".to_string(),
    ] {
        let (status, page, _) = get(&c, &format!("{base}{path}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert!(
            !page.contains(their_msg) && !page.contains(their_ep),
            "{path}"
        );
    }
    let (status, page, _) = get(&c, &format!("{base}/queue?app={theirs}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        !page.contains(their_msg),
        "the queue shows nothing of theirs"
    );
    let (_, page, _) = get(&c, &format!("{base}/queue")).await;
    assert!(page.contains(my_msg) && !page.contains(their_msg));
    let (status, _, _) = get(&c, &format!("{base}/messages/find?q={their_msg}")).await;
    assert_ne!(status, StatusCode::SEE_OTHER, "no way to their message");

    // Changing their endpoint through my session is not found either.
    let (_, page, _) = get(&c, &format!("{base}/apps/{mine}/endpoints/{my_ep}")).await;
    let csrf = csrf_of(&page);
    let (status, _, _) = post(
        &c,
        &format!("{base}/apps/{theirs}/endpoints/{their_ep}/disable"),
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = post(
        &c,
        &format!("{base}/apps/{mine}/endpoints/{their_ep}/disable"),
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, ep) = s.get(&format!("/app/{theirs}/endpoint/{their_ep}")).await;
    assert_eq!(ep["disabled"], false);
    // Mine, it may change.
    let (status, _, _) = post(
        &c,
        &format!("{base}/apps/{mine}/endpoints/{my_ep}/disable"),
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, ep) = s.get(&format!("/app/{mine}/endpoint/{my_ep}")).await;
    assert_eq!(ep["disabled"], true);
    s.stop().await;
}

#[tokio::test]
async fn a_read_only_portal_link_looks_but_does_not_change() {
    let s = start_server().await;
    let receiver = Receiver::start().await;
    let tenants = two_tenants(&s, &receiver).await;
    let (mine, my_ep, my_msg) = &tenants[0];
    let base = root(&s);
    let (st, access) = s
        .post(
            &format!("/auth/app-portal-access/{mine}"),
            json!({"readOnly": true}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let url = access["url"].as_str().unwrap();
    let c = browser();
    enter_portal(&c, &base, &url[url.find("/portal/").unwrap()..]).await;
    let (status, page, _) = get(&c, &format!("{base}/apps/{mine}/endpoints/{my_ep}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Read-only link"));
    assert!(
        !page.contains("/rotate") && !page.contains("/disable"),
        "no change forms"
    );
    let csrf = csrf_of(&page);
    for action in ["disable", "rotate", "secret"] {
        let (status, page, _) = post(
            &c,
            &format!("{base}/apps/{mine}/endpoints/{my_ep}/{action}"),
            &[("csrf", &csrf)],
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{action}");
        assert!(page.contains("read-only"));
    }
    let (status, _, _) = post(
        &c,
        &format!("{base}/apps/{mine}/messages/{my_msg}/resend"),
        &[("csrf", &csrf), ("endpoint", my_ep)],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, ep) = s.get(&format!("/app/{mine}/endpoint/{my_ep}")).await;
    assert_eq!(ep["disabled"], false);
    // Logging out still works.
    let (status, _, _) = post(&c, &format!("{base}/logout"), &[("csrf", &csrf)]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    s.stop().await;
}

#[tokio::test]
async fn every_page_renders_for_an_operator() {
    let s = start_server().await;
    s.service.add_user("ops", PASSWORD).await.unwrap();
    let receiver = Receiver::start().await;
    let tenants = two_tenants(&s, &receiver).await;
    let (app, ep, msg) = &tenants[0];
    let base = root(&s);
    let c = browser();
    login(&s, &c, "ops", PASSWORD).await;
    let pages = [
        "/overview".to_string(),
        "/queue".to_string(),
        format!("/queue?app={app}&state=succeeded&window=24h"),
        format!("/queue?endpoint={ep}"),
        "/apps".to_string(),
        "/apps?q=min".to_string(),
        "/apps/new".to_string(),
        format!("/apps/{app}"),
        format!("/apps/{app}/edit"),
        format!("/apps/{app}/endpoints/new"),
        format!("/apps/{app}/endpoints/{ep}"),
        format!("/apps/{app}/endpoints/{ep}/edit"),
        format!("/apps/{app}/messages/{msg}"),
        format!("/apps/{app}/triggers/new"),
        format!("/apps/{app}/triggers/builtin_{ep}"),
        "/event-types".to_string(),
        "/event-types/new".to_string(),
        "/event-types/order.created".to_string(),
        "/event-types/order.created/edit".to_string(),
        "/alerts".to_string(),
        "/alerts?all=1".to_string(),
    ];
    for path in pages {
        let (status, page, _) = get(&c, &format!("{base}{path}")).await;
        assert_eq!(status, StatusCode::OK, "{path}: {page}");
        assert!(page.contains("</html>"), "{path}");
    }
    // The queue finds the message and the message page shows its attempt.
    let (_, page, _) = get(&c, &format!("{base}/queue?app={app}")).await;
    assert!(page.contains(msg.as_str()));
    let (_, page, _) = get(&c, &format!("{base}/apps/{app}/messages/{msg}")).await;
    assert!(
        page.contains("webhook-signature") && page.contains("answer "),
        "{page}"
    );
    assert!(!page.contains("whsec_"), "the secret is never on the page");
    // The request headers shown are those the receiver got (rebuilt, so when the request
    // started in the second the page names, the signature is the same).
    let header = |name: &str| {
        let start = page.find(&format!("<td>{name}</td><td>")).unwrap() + name.len() + 13;
        page[start..].split('<').next().unwrap().to_string()
    };
    let got = receiver
        .received()
        .into_iter()
        .find(|r| r.header("webhook-id") == msg.as_str())
        .unwrap();
    assert_eq!(header("webhook-id"), got.header("webhook-id"));
    if header("webhook-timestamp") == got.header("webhook-timestamp") {
        assert_eq!(header("webhook-signature"), got.header("webhook-signature"));
    }
    // The message search opens a message by id.
    let (status, _, location) = get(&c, &format!("{base}/messages/find?q={msg}")).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location.unwrap(), format!("/apps/{app}/messages/{msg}"));
    // Unknown things are a 404 page, unknown API paths stay JSON.
    let (status, page, _) = get(&c, &format!("{base}/apps/app_nothing")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(page.contains("Not found"));
    let r = c
        .get(format!("{base}/api/v1/nothing"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["detail"], "No such route");
    // Static assets are served from the binary.
    let r = c
        .get(format!("{base}/static/herald.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
    s.stop().await;
}

/// Server render time of every dashboard page with 100 000 messages in the database (issue 6
/// asks for well under 100 ms each). Not a timed assertion: it prints a table. Run with
/// `cargo test --release --test admin -- --ignored --nocapture render_times`
/// (`HERALD_TIMING_MESSAGES=1000000` for a million).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "fills a database with 100 000 messages; prints timings"]
async fn render_times_with_100k_messages() {
    use herald::model::Caller;
    use herald::service::{AppInput, EndpointInput, EventTypeInput, MessageInput};
    let messages: usize = std::env::var("HERALD_TIMING_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    const APPS: usize = 10;
    let s = start_server_with(|c| c.retry_schedule_ms = vec![10, 10, 10]).await;
    s.service.add_user("ops", PASSWORD).await.unwrap();
    let ok = Receiver::start().await;
    let failing = Receiver::start_with(Behaviour {
        then: 500,
        ..Default::default()
    })
    .await;
    let svc = s.service.clone();
    for name in ["order.created", "order.updated", "order.failed"] {
        svc.create_event_type(
            Caller::Admin,
            EventTypeInput {
                name: name.into(),
                description: format!("{name} events"),
                example_json: Some(r#"{"orderId":1,"status":"NEW"}"#.into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    }
    let mut apps = Vec::new();
    for i in 0..APPS {
        let (app, _) = svc
            .create_app(
                Caller::Admin,
                AppInput {
                    name: format!("Shop {i}"),
                    uid: Some(format!("shop-{i}")),
                    ..Default::default()
                },
                false,
            )
            .await
            .unwrap();
        let ep = svc
            .create_endpoint(
                Caller::Admin,
                &app.id.to_string(),
                EndpointInput {
                    url: ok.url(),
                    event_types: Some(vec!["order.created".into(), "order.updated".into()]),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        svc.create_endpoint(
            Caller::Admin,
            &app.id.to_string(),
            EndpointInput {
                url: failing.url(),
                event_types: Some(vec!["order.failed".into()]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        apps.push((app.id.to_string(), ep.id.to_string()));
    }
    let started = std::time::Instant::now();
    let started_ms = herald::model::now_millis();
    let mut tasks = Vec::new();
    let per_task = messages / 50;
    for t in 0..50 {
        let svc = svc.clone();
        let apps = apps.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..per_task {
                let n = t * per_task + i;
                let event_type = match n % 100 {
                    0 => "order.failed",
                    x if x % 2 == 0 => "order.created",
                    _ => "order.updated",
                };
                svc.send_message(
                    Caller::Admin,
                    &apps[n % APPS].0,
                    MessageInput {
                        event_type: event_type.into(),
                        payload_json: format!(
                            r#"{{"orderId":{n},"status":"NEW","total":"12.50"}}"#
                        ),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    println!(
        "ingested {messages} messages in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // Let delivery finish, so the pages show settled history (and delivery does not compete).
    let overview_settled = || async {
        let o = svc.overview(Caller::Admin).await.unwrap();
        o.queue_depth.iter().map(|(_, n)| n).sum::<u64>() == 0
    };
    eventually(Duration::from_secs(900), overview_settled).await;
    println!(
        "delivered in {:.1} s since the first message; receiver got {}",
        started.elapsed().as_secs_f64(),
        ok.count() + failing.count()
    );

    let base = root(&s);
    let c = browser();
    login(&s, &c, "ops", PASSWORD).await;
    let (app, ep) = apps[3].clone();
    let recent = svc
        .queue(
            Caller::Admin,
            herald::service::QueueFilter {
                app: Some(app.clone()),
                limit: 1,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let msg = recent.items[0].message.id.to_string();
    // A cursor deep in history: the oldest message's neighbourhood.
    let (_, page, _) = get(&c, &format!("{base}/queue")).await;
    assert!(page.contains("Older"));
    // A cursor deep in history: one second after the first message, so the page walks back
    // to the oldest messages.
    let deep_cursor =
        herald::model::MessageId(herald::model::id_floor_at_millis(started_ms + 1_000)).to_string();
    let pages = [
        ("overview", "/overview".to_string()),
        ("queue", "/queue".to_string()),
        ("queue, deep cursor", format!("/queue?before={deep_cursor}")),
        ("queue by application", format!("/queue?app={app}")),
        ("queue by endpoint", format!("/queue?endpoint={ep}")),
        ("queue, failed", "/queue?state=failed".to_string()),
        (
            "queue, event type",
            "/queue?event_type=order.failed".to_string(),
        ),
        (
            "queue, last hour",
            "/queue?window=1h&state=succeeded".to_string(),
        ),
        ("message", format!("/apps/{app}/messages/{msg}")),
        ("applications", "/apps".to_string()),
        ("applications, search", "/apps?q=shop 7".to_string()),
        ("application", format!("/apps/{app}")),
        ("endpoint", format!("/apps/{app}/endpoints/{ep}")),
        ("endpoint edit", format!("/apps/{app}/endpoints/{ep}/edit")),
        ("trigger editor", format!("/apps/{app}/triggers/new")),
        ("event types", "/event-types".to_string()),
        ("event type", "/event-types/order.created".to_string()),
        ("alerts", "/alerts".to_string()),
    ];
    println!("\n| page | server ms (median of 7) | max | bytes |");
    println!("|---|---:|---:|---:|");
    for (name, path) in pages {
        let mut times = Vec::new();
        let mut bytes = 0;
        for _ in 0..7 {
            let r = c.get(format!("{base}{path}")).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            let timing = r.headers()["server-timing"].to_str().unwrap().to_string();
            let ms: f64 = timing.trim_start_matches("app;dur=").parse().unwrap();
            bytes = r.text().await.unwrap().len();
            times.push(ms);
        }
        times.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!(
            "| {name} | {:.1} | {:.1} | {bytes} |",
            times[times.len() / 2],
            times[times.len() - 1]
        );
    }
    s.stop().await;
}
