//! The browser suite (TESTING.md layer 4): headless Chromium, driven through chromedriver,
//! uses the dashboard as an operator and as a tenant would, and saves a screenshot of every
//! page (desktop and narrow) under `target/screenshots/` for review.
//!
//! Ignored by a plain `cargo test` (it needs the Debian packages `chromium` and
//! `chromium-driver`); `.ci/run` runs it with `cargo test --test browser -- --ignored`.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use fantoccini::{Client, Locator};
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery";
const WAIT: Duration = Duration::from_secs(20);

/// chromedriver on a free port, stopped when dropped.
struct Driver {
    child: Child,
    url: String,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn find_binary(names: &[&str]) -> String {
    for name in names {
        for dir in ["/usr/bin", "/usr/local/bin", "/usr/lib/chromium"] {
            let p = format!("{dir}/{name}");
            if std::path::Path::new(&p).exists() {
                return p;
            }
        }
    }
    panic!("none of {names:?} is installed: apt-get install -y chromium chromium-driver");
}

/// Starts chromedriver and a headless Chromium session with a fresh profile.
async fn browser() -> (Driver, Client) {
    let port = free_port();
    let child = Command::new(find_binary(&["chromedriver"]))
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let profile = tempfile::tempdir().unwrap();
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _profile: profile,
    };
    // Ready when its status endpoint answers.
    let http = reqwest::Client::new();
    let start = Instant::now();
    loop {
        if let Ok(r) = http.get(format!("{}/status", driver.url)).send().await
            && r.status().is_success()
        {
            break;
        }
        assert!(start.elapsed() < WAIT, "chromedriver did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let args = vec![
        "--headless".to_string(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-dev-shm-usage".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        "--no-first-run".into(),
        "--hide-scrollbars".into(),
        "--window-size=1400,1000".into(),
        format!("--user-data-dir={}", driver._profile.path().display()),
    ];
    let mut caps = serde_json::Map::new();
    caps.insert("browserName".into(), json!("chrome"));
    caps.insert(
        "goog:chromeOptions".into(),
        json!({"binary": find_binary(&["chromium", "chromium-browser"]), "args": args}),
    );
    let client = Client::with_capabilities_and_connector(
        &driver.url,
        &caps,
        hyper_util::client::legacy::connect::HttpConnector::new(),
    )
    .await
    .expect("a Chromium session");
    (driver, client)
}

/// Saves screenshots of the current page at desktop and narrow widths, whole page.
struct Shots {
    dir: PathBuf,
}

impl Shots {
    fn new() -> Shots {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        Shots { dir }
    }

    async fn take(&self, c: &Client, name: &str) {
        for (label, width) in [("desktop", 1400u32), ("narrow", 420u32)] {
            c.set_window_size(width, 900).await.unwrap();
            // The window is taller than its viewport by the browser's frame: grow it until
            // the whole page fits.
            for _ in 0..3 {
                let sizes = c
                    .execute(
                        "return [document.documentElement.scrollHeight, window.innerHeight, window.outerHeight];",
                        vec![],
                    )
                    .await
                    .unwrap();
                let get = |i: usize| sizes[i].as_u64().unwrap_or(900) as u32;
                let (page, inner, outer) = (get(0), get(1), get(2));
                if inner >= page {
                    break;
                }
                let want = (page + outer.saturating_sub(inner)).clamp(600, 6000);
                c.set_window_size(width, want).await.unwrap();
            }
            let png = c.screenshot().await.unwrap();
            std::fs::write(self.dir.join(format!("{name}-{label}.png")), png).unwrap();
        }
        c.set_window_size(1400, 1000).await.unwrap();
    }
}

async fn source(c: &Client) -> String {
    c.source().await.unwrap()
}

/// Reloads the page until its source contains `text`.
async fn reload_until(c: &Client, text: &str) {
    let start = Instant::now();
    loop {
        if source(c).await.contains(text) {
            return;
        }
        assert!(
            start.elapsed() < WAIT,
            "{text:?} never appeared on {}",
            c.current_url().await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
        c.refresh().await.unwrap();
    }
}

async fn fill(c: &Client, selector: &str, text: &str) {
    let e = c.find(Locator::Css(selector)).await.unwrap();
    e.clear().await.unwrap();
    e.send_keys(text).await.unwrap();
}

/// Sets a textarea or input by script (long texts, newlines), then lets the page know.
async fn set_value(c: &Client, selector: &str, text: &str) {
    c.execute(
        "const e = document.querySelector(arguments[0]); e.value = arguments[1]; \
         e.dispatchEvent(new Event('input', {bubbles: true}));",
        vec![json!(selector), json!(text)],
    )
    .await
    .unwrap();
}

/// Clicks something that loads a new page, and waits until the new page has loaded.
async fn click(c: &Client, selector: &str) {
    c.execute("window.__old_page = true;", vec![])
        .await
        .unwrap();
    c.find(Locator::Css(selector))
        .await
        .unwrap_or_else(|e| panic!("{selector}: {e}"))
        .click()
        .await
        .unwrap();
    wait_for_new_page(c).await;
}

/// Clicks something on the page that does not load another (a checkbox, a radio button).
async fn tick(c: &Client, selector: &str) {
    c.find(Locator::Css(selector))
        .await
        .unwrap_or_else(|e| panic!("{selector}: {e}"))
        .click()
        .await
        .unwrap();
}

async fn wait_for_new_page(c: &Client) {
    let start = Instant::now();
    loop {
        let fresh = c
            .execute(
                "return window.__old_page !== true && document.readyState === 'complete';",
                vec![],
            )
            .await
            .map(|v| v == Value::Bool(true))
            .unwrap_or(false);
        if fresh {
            return;
        }
        assert!(start.elapsed() < WAIT, "no new page loaded");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn path(c: &Client) -> String {
    let url = c.current_url().await.unwrap();
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    }
}

#[tokio::test]
#[ignore = "needs chromium and chromium-driver (apt-get install -y chromium chromium-driver)"]
async fn the_dashboard_in_a_real_browser() {
    let s = start_server().await;
    let base = s.base.trim_end_matches("/api/v1").to_string();
    let ok = Receiver::start().await;
    let failing = Receiver::start_with(Behaviour {
        then: 500,
        ..Default::default()
    })
    .await;
    let (_driver, c) = browser().await;
    let shots = Shots::new();

    // ---- first start: the setup link creates the first user --------------------------------
    let link = s.service.setup_link().await.unwrap().unwrap();
    c.goto(&format!("{base}{}", &link[link.find("/setup/").unwrap()..]))
        .await
        .unwrap();
    shots.take(&c, "01-setup").await;
    fill(&c, "#username", "ops").await;
    fill(&c, "#password", PASSWORD).await;
    fill(&c, "#confirm", PASSWORD).await;
    click(&c, "form.stack button[type=submit]").await;
    assert_eq!(path(&c).await, "/overview");
    shots.take(&c, "02-overview-empty").await;

    // ---- log out; a wrong password is refused; log in ---------------------------------------
    click(&c, ".who button").await;
    assert_eq!(path(&c).await, "/login");
    fill(&c, "#username", "ops").await;
    fill(&c, "#password", "not the password").await;
    click(&c, "form.stack button[type=submit]").await;
    let page = source(&c).await;
    assert!(page.contains("Wrong username or password."));
    assert!(!page.contains("Log out"), "still logged out");
    shots.take(&c, "03-login-refused").await;
    fill(&c, "#username", "ops").await;
    fill(&c, "#password", PASSWORD).await;
    click(&c, "form.stack button[type=submit]").await;
    assert!(source(&c).await.contains("Log out"));

    // ---- the event catalog -----------------------------------------------------------------
    c.goto(&format!("{base}/event-types")).await.unwrap();
    shots.take(&c, "04-event-types-empty").await;
    click(&c, ".page-head a.btn[href='/event-types/new']").await;
    fill(&c, "#name", "order.created").await;
    fill(&c, "#group", "order").await;
    set_value(&c, "#description", "A customer placed an order.").await;
    set_value(
        &c,
        "#schemas",
        r#"{"1": {"type": "object", "required": ["orderId"], "properties": {"orderId": {"type": "integer"}, "total": {"type": "string"}, "status": {"type": "string"}}}}"#,
    )
    .await;
    set_value(&c, "#example", "{not json").await;
    click(&c, "form.stack button[type=submit]").await;
    let page = source(&c).await;
    assert!(
        page.contains(r#"id="example-err""#),
        "the error is next to its field"
    );
    shots.take(&c, "05-event-type-form-error").await;
    set_value(
        &c,
        "#example",
        r#"{"orderId": 1001, "total": "12.50", "status": "NEW"}"#,
    )
    .await;
    click(&c, "form.stack button[type=submit]").await;
    assert_eq!(path(&c).await, "/event-types/order.created?done=created");
    shots.take(&c, "06-event-type").await;
    for (name, example) in [
        (
            "order.updated",
            r#"{"orderId": 1001, "status": "FULFILLED", "total": "12.50"}"#,
        ),
        (
            "customer.created",
            r#"{"customerId": "c_1", "email": "ada@example.com"}"#,
        ),
    ] {
        c.goto(&format!("{base}/event-types/new")).await.unwrap();
        fill(&c, "#name", name).await;
        set_value(&c, "#example", example).await;
        click(&c, "form.stack button[type=submit]").await;
        assert!(path(&c).await.ends_with("?done=created"));
    }
    c.goto(&format!("{base}/event-types")).await.unwrap();
    shots.take(&c, "07-event-types").await;

    // ---- an application ----------------------------------------------------------------------
    c.goto(&format!("{base}/apps")).await.unwrap();
    shots.take(&c, "08-apps-empty").await;
    click(&c, ".page-head a.btn[href='/apps/new']").await;
    fill(&c, "#name", "Acme shop").await;
    fill(&c, "#uid", "acme").await;
    shots.take(&c, "09-app-form").await;
    click(&c, "form.stack button[type=submit]").await;
    let app_path = path(&c).await;
    assert!(app_path.starts_with("/apps/app_"), "{app_path}");
    let app_path = app_path.split('?').next().unwrap().to_string();
    let app_id = app_path.trim_start_matches("/apps/").to_string();
    shots.take(&c, "10-app-empty").await;

    // ---- an endpoint pointing at a real receiver: the event types must be chosen ------------
    click(
        &c,
        &format!(".page-head a.btn[href='{app_path}/endpoints/new']"),
    )
    .await;
    fill(&c, "#url", &ok.url()).await;
    fill(&c, "#description", "Order system").await;
    click(&c, "#endpoint-form button[type=submit]").await;
    let page = source(&c).await;
    assert!(
        page.contains(r#"id="eventTypes-err""#),
        "an explicit choice is required: {} {page}",
        path(&c).await
    );
    shots.take(&c, "11-endpoint-form-error").await;
    tick(&c, "input[name=scope][value=some]").await;
    tick(&c, "input[name=event_types][value='order.created']").await;
    tick(&c, "input[name=event_types][value='order.updated']").await;
    set_value(&c, "#headers", "X-Shop-Token: abc123").await;
    click(&c, "#endpoint-form button[type=submit]").await;
    let ep_path = path(&c).await;
    assert!(ep_path.contains("/endpoints/ep_"), "{ep_path}");
    let ep_path = ep_path.split('?').next().unwrap().to_string();
    let ep_id = ep_path.rsplit('/').next().unwrap().to_string();
    let page = source(&c).await;
    assert!(page.contains("whsec_••••"), "the secret is masked");
    shots.take(&c, "12-endpoint").await;
    // Reveal on request, then it is on that page only.
    click(&c, &format!("form[action='{ep_path}/secret'] button")).await;
    let page = source(&c).await;
    let secret = s
        .get(&format!("/app/{app_id}/endpoint/{ep_id}/secret"))
        .await
        .1["key"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(page.contains(&secret), "revealed");
    c.goto(&format!("{base}{ep_path}")).await.unwrap();
    assert!(!source(&c).await.contains(&secret), "masked again");
    c.goto(&format!("{base}{ep_path}/edit")).await.unwrap();
    shots.take(&c, "13-endpoint-edit").await;

    // A second endpoint whose receiver always fails, to show failures and alerts.
    c.goto(&format!("{base}{app_path}/endpoints/new"))
        .await
        .unwrap();
    fill(&c, "#url", &failing.url()).await;
    tick(&c, "input[name=scope][value=all]").await;
    click(&c, "#endpoint-form button[type=submit]").await;
    let failing_path = path(&c).await;
    assert!(failing_path.contains("?done=created"));
    let failing_path = failing_path.split('?').next().unwrap().to_string();

    // ---- a trigger with a template, previewed against the example -----------------------------
    c.goto(&format!("{base}{app_path}/triggers/new"))
        .await
        .unwrap();
    c.find(Locator::Css("#endpoint"))
        .await
        .unwrap()
        .select_by_value(&ep_id)
        .await
        .unwrap();
    tick(&c, "input[name=event_types][value='order.updated']").await;
    fill(&c, "#condition", r#"payload.status == "FULFILLED""#).await;
    set_value(
        &c,
        "#template",
        "<order id=\"{{ payload.orderId }}\">\n  <status>{{ payload.status }}</status>\n  <total>{{ payload.total }}</total>\n</order>",
    )
    .await;
    c.find(Locator::Css("#content_type"))
        .await
        .unwrap()
        .select_by_value("xml")
        .await
        .unwrap();
    c.find(Locator::Css("#priority"))
        .await
        .unwrap()
        .select_by_value("high")
        .await
        .unwrap();
    fill(&c, "#unique_key", "{{ payload.orderId }}").await;
    fill(&c, "#description", "Fulfilled orders to the books, as XML").await;
    click(&c, "button[name=action][value=preview]").await;
    let page = source(&c).await;
    assert!(
        page.contains("&lt;status&gt;FULFILLED&lt;/status&gt;"),
        "the preview renders the example"
    );
    assert!(page.contains("payload.orderId"), "merge fields are listed");
    shots.take(&c, "14-trigger-editor").await;
    click(&c, "button[name=action][value=save]").await;
    assert!(
        path(&c).await.contains("/triggers/trg_"),
        "{}",
        path(&c).await
    );
    c.goto(&format!("{base}{app_path}")).await.unwrap();
    assert!(
        source(&c)
            .await
            .contains("XML template</b>, <b>high priority")
    );

    // ---- messages through the API; the queue; a message and its attempts --------------------
    let created = s
        .send(
            &app_id,
            "order.created",
            json!({"orderId": 1001, "total": "12.50", "status": "NEW"}),
        )
        .await;
    s.send(
        &app_id,
        "order.updated",
        json!({"orderId": 1001, "status": "FULFILLED", "total": "12.50"}),
    )
    .await;
    s.send(&app_id, "customer.created", json!({"customerId": "c_1"}))
        .await;
    let msg_id = created["id"].as_str().unwrap().to_string();
    ok.wait_for(3, WAIT).await; // created + updated (subscription) + updated (trigger)
    let xml = ok
        .received()
        .into_iter()
        .find(|r| r.header("content-type") == "application/xml")
        .expect("the trigger's XML arrived");
    assert!(String::from_utf8_lossy(&xml.body).contains("<status>FULFILLED</status>"));

    c.goto(&format!("{base}/queue")).await.unwrap();
    reload_until(&c, "badge bad\">Failed").await; // the failing endpoint used its retries
    let page = source(&c).await;
    assert!(page.contains(&msg_id) && page.contains("Succeeded"));
    shots.take(&c, "15-queue").await;
    c.goto(&format!("{base}/queue?state=failed")).await.unwrap();
    shots.take(&c, "16-queue-failed").await;
    c.goto(&format!("{base}/queue")).await.unwrap();
    click(
        &c,
        &format!("a[href='{app_path}/messages/{msg_id}'][title]"),
    )
    .await;
    assert_eq!(path(&c).await, format!("{app_path}/messages/{msg_id}"));
    reload_until(&c, "answer ").await;
    let page = source(&c).await;
    assert!(page.contains("webhook-signature") && page.contains("x-shop-token"));
    assert!(!page.contains("whsec_"), "never the secret");
    // Open the first attempt's response and request headers for the screenshot.
    c.execute(
        "document.querySelectorAll('table.attempts tbody tr:first-child details').forEach(d => d.open = true);",
        vec![],
    )
    .await
    .unwrap();
    shots.take(&c, "17-message").await;
    let before = ok.count();
    click(
        &c,
        &format!(
            "form[action='{app_path}/messages/{msg_id}/resend'] input[value='{ep_id}'] ~ button"
        ),
    )
    .await;
    assert!(source(&c).await.contains("Queued again"));
    ok.wait_for(before + 1, WAIT).await;
    let start = Instant::now();
    loop {
        c.refresh().await.unwrap();
        let page = source(&c).await;
        if page.contains("Manual") && !page.contains("Not attempted yet") {
            break;
        }
        assert!(start.elapsed() < WAIT, "the resend was not attempted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shots.take(&c, "18-message-resent").await;

    // ---- a form posted without its CSRF token is refused ---------------------------------------
    c.execute(
        "window.__old_page = true; const f = document.createElement('form'); f.method = 'post'; f.action = '/apps'; \
         const i = document.createElement('input'); i.name = 'name'; i.value = 'Forged'; \
         f.appendChild(i); document.body.appendChild(f); f.submit();",
        vec![],
    )
    .await
    .unwrap();
    let start = Instant::now();
    while !source(&c).await.contains("CSRF") {
        assert!(start.elapsed() < WAIT, "the forged form was not refused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shots.take(&c, "19-csrf-refused").await;
    let (_, apps) = s.get("/app").await;
    assert!(
        !apps["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["name"] == "Forged"),
        "nothing was created"
    );

    // ---- the rest of the operator's pages, with data ------------------------------------------
    c.goto(&format!("{base}/overview")).await.unwrap();
    assert!(
        source(&c).await.contains(&failing.url()),
        "the failing endpoint is listed"
    );
    shots.take(&c, "20-overview").await;
    c.goto(&format!("{base}/alerts")).await.unwrap();
    assert!(source(&c).await.contains("Delivery failed"));
    shots.take(&c, "21-alerts").await;
    c.goto(&format!("{base}{app_path}")).await.unwrap();
    shots.take(&c, "22-app").await;
    c.goto(&format!("{base}{ep_path}")).await.unwrap();
    click(&c, &format!("form[action='{ep_path}/test'] button")).await;
    assert!(source(&c).await.contains("Test results"));
    shots.take(&c, "23-endpoint-tested").await;
    c.goto(&format!("{base}{failing_path}")).await.unwrap();
    click(&c, &format!("form[action='{failing_path}/recover'] button")).await;
    let page = source(&c).await;
    assert!(
        page.contains("This will touch") && page.contains("3 deliveries"),
        "{page}"
    );
    shots.take(&c, "24-recover-confirm").await;

    // ---- the tenant portal: one application, nothing else -----------------------------------
    let (other_app, other_ep) = s.setup("order.created", &ok.url()).await;
    let other_msg = s
        .send(&other_app, "order.created", json!({"orderId": 7}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    c.goto(&format!("{base}/apps")).await.unwrap();
    shots.take(&c, "25-apps").await;
    let (status, access) = s
        .post(
            &format!("/auth/app-portal-access/{app_id}"),
            json!({"expiry": 3600}),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::OK, "{access}");
    let url = access["url"].as_str().unwrap();
    c.delete_all_cookies().await.unwrap();
    c.goto(&format!("{base}{}", &url[url.find("/portal/").unwrap()..]))
        .await
        .unwrap();
    let start = Instant::now();
    while path(&c).await != app_path {
        assert!(start.elapsed() < WAIT, "the portal link did not forward");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let page = source(&c).await;
    assert!(page.contains("Acme shop") && !page.contains("Webhook queue"));
    shots.take(&c, "26-portal-app").await;
    c.goto(&format!("{base}/queue")).await.unwrap();
    let page = source(&c).await;
    assert!(page.contains(&msg_id) && !page.contains(&other_msg));
    shots.take(&c, "27-portal-messages").await;
    // Change the endpoint there.
    c.goto(&format!("{base}{ep_path}/edit")).await.unwrap();
    fill(&c, "#description", "Order system (changed in the portal)").await;
    click(&c, "#endpoint-form button[type=submit]").await;
    assert_eq!(path(&c).await, format!("{ep_path}?done=saved"));
    let (_, ep) = s.get(&format!("/app/{app_id}/endpoint/{ep_id}")).await;
    assert_eq!(ep["description"], "Order system (changed in the portal)");
    shots.take(&c, "28-portal-endpoint").await;
    // Another application's endpoints, messages and ids are not found.
    for p in [
        format!("/apps/{other_app}"),
        format!("/apps/{other_app}/endpoints/{other_ep}"),
        format!("{app_path}/endpoints/{other_ep}"),
        format!("/apps/{other_app}/messages/{other_msg}"),
        format!("{app_path}/messages/{other_msg}"),
        "/overview".to_string(),
    ] {
        c.goto(&format!("{base}{p}")).await.unwrap();
        let page = source(&c).await;
        assert!(page.contains("Not found"), "{p}");
        assert!(!page.contains(&other_msg) || p.contains(&other_msg), "{p}");
    }
    shots.take(&c, "29-portal-not-found").await;
    let check: Value = reqwest::get(format!("{base}/static/herald.js"))
        .await
        .unwrap()
        .text()
        .await
        .map(Value::String)
        .unwrap();
    assert!(check.as_str().unwrap().contains("copy"));

    c.close().await.unwrap();
    s.stop().await;
}
