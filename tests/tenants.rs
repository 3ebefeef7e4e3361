//! Hostile tenants (DESIGN.md section 11): a corpus of template, condition and unique-key
//! bombs, driven through every place a tenant's source runs — the API preview and trigger
//! save with an app-scoped token, the portal's preview and save with a portal session, ingest
//! (conditions and unique keys run in the writer) and delivery (templates) — against the real
//! binary, while another tenant keeps creating messages.
//!
//! Every bomb must be answered with a 4xx or fail its attempt with a reason, costing Herald
//! less than a second of CPU; Herald's resident memory stays within 64 MB of its baseline; the
//! process never restarts; and the other tenant's creates keep a p99 under 50 ms.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::child::{HeraldProcess, create_token};
use common::{Receiver, eventually};
use reqwest::StatusCode;
use serde_json::{Value, json};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Condition,
    Template,
    UniqueKey,
}

/// The bombs. `payload.s` is a 100 000-byte string and `payload.list` a list of 1 000
/// numbers, in the event type's example and in the messages sent.
const BOMBS: &[(Kind, &str)] = &[
    // Output and string growth.
    (Kind::Template, r#"{{ "a"|indent(1000000000000) }}"#),
    (
        Kind::Template,
        r#"{{ payload.s|replace("x", "\n")|indent(100000) }}"#,
    ),
    (Kind::Template, r#"{{ "a" * 100000000 }}"#),
    (Kind::Template, r#"{{ payload.s * 10000 }}"#),
    (Kind::Template, r#"{{ payload.s|escape * 100 }}"#),
    (Kind::Template, r#"{{ payload.s|pprint * 100 }}"#),
    (Kind::Template, r#"{{ ("%s"|format(payload.s)) * 100 }}"#),
    (
        Kind::Template,
        r#"{% for i in range(100000) %}{{ payload.s }}{% endfor %}"#,
    ),
    (
        Kind::Template,
        r#"{% set s = payload.s %}{% set s = s ~ s %}{% set s = s ~ s %}{% set s = s ~ s %}{% set s = s ~ s %}{{ s }}"#,
    ),
    (
        Kind::Template,
        r#"{% set ns = namespace(s='xxxxxxxxxxxxxxxx') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s }}"#,
    ),
    (Kind::Template, r#"{{ payload.s|replace("x", payload.s) }}"#),
    (
        Kind::Template,
        r#"{{ payload.s|replace("", "yyyyyyyyyyyyyyyyyyyy") }}"#,
    ),
    (Kind::Template, r#"{{ range(100000)|join(payload.s) }}"#),
    (
        Kind::Template,
        r#"{{ payload.list|map("string")|join(payload.s) }}"#,
    ),
    (Kind::Template, r#"{{ "%1000000000000d"|format(1) }}"#),
    (Kind::Template, r#"{{ "%*d"|format(100000000, 1) }}"#),
    (Kind::Template, r#"{{ "%.100000000f"|format(1.5) }}"#),
    (Kind::Template, r#"{{ payload|tojson(indent=1000000000) }}"#),
    // List growth.
    (Kind::Template, r#"{{ [0] * 100000000 }}"#),
    (Kind::Template, r#"{{ (0,) * 100000000 }}"#),
    (Kind::Template, r#"{{ payload.list * 1000000 }}"#),
    (Kind::Template, r#"{{ ([0] * 100000000)|sum }}"#),
    (
        Kind::Template,
        r#"{% set ns = namespace(l=[1]) %}{% for i in range(64) %}{% set ns.l = ns.l + ns.l %}{% endfor %}{{ ns.l|length }}"#,
    ),
    (
        Kind::Template,
        r#"{% set ns = namespace(l=[]) %}{% for i in range(100000) %}{% set ns.l = ns.l + [payload.s] %}{% endfor %}"#,
    ),
    (
        Kind::Template,
        r#"{{ payload.list|batch(1000000000000, 0)|list }}"#,
    ),
    (
        Kind::Template,
        r#"{{ payload.list|slice(1000000000000)|list }}"#,
    ),
    (
        Kind::Template,
        r#"{{ (payload.s ~ " ")|split|list * 100000 }}"#,
    ),
    (Kind::Template, r#"{{ payload.s|lines|list * 100000 }}"#),
    (Kind::Template, r#"{{ payload.s|list }}"#),
    (Kind::Template, r#"{{ range(100000)|list|tojson }}"#),
    (
        Kind::Template,
        r#"{{ payload.list|chain(payload.list, payload.list)|list * 1000 }}"#,
    ),
    (
        Kind::Template,
        r#"{{ dict(a=payload.s, b=payload.s, c=payload.s, d=payload.s, e=payload.s, f=payload.s, g=payload.s, h=payload.s, i=payload.s, j=payload.s, k=payload.s) }}"#,
    ),
    // Iteration and time.
    (
        Kind::Template,
        r#"{% for a in range(10000) %}{% for b in range(10000) %}{% endfor %}{% endfor %}"#,
    ),
    (
        Kind::Template,
        r#"{% for i in range(100000) %}{% for j in range(100000) %}{{ payload.s == payload.s }}{% endfor %}{% endfor %}"#,
    ),
    (
        Kind::Template,
        r#"{% for i in range(100000) %}{% if payload.s[::-1] %}{% endif %}{% endfor %}"#,
    ),
    (
        Kind::Template,
        r#"{% for i in range(100000) %}{% if payload.s in payload.s ~ "y" %}{% endif %}{% endfor %}"#,
    ),
    (
        Kind::Template,
        r#"{% for i in range(100000) %}{{ payload.s|upper|length }}{% endfor %}"#,
    ),
    (
        Kind::Template,
        r#"{% for i in range(100000) %}{{ payload.s|list|unique|length }}{% endfor %}"#,
    ),
    // Conditions: evaluated in the writer while a message is stored.
    (Kind::Condition, r#"([0]*100000000)|sum > 0"#),
    (Kind::Condition, r#"("a" * 100000000)|length > 0"#),
    (Kind::Condition, r#"payload.s|indent(1000000000000)"#),
    (
        Kind::Condition,
        r#"(payload.s ~ payload.s ~ payload.s ~ payload.s ~ payload.s ~ payload.s ~ payload.s ~ payload.s ~ payload.s ~ payload.s ~ payload.s)|length > 0"#,
    ),
    (
        Kind::Condition,
        r#"range(100000)|map("string")|join(payload.s)|length > 0"#,
    ),
    (
        Kind::Condition,
        r#"payload.list|batch(1000000000000, 0)|list|length > 0"#,
    ),
    (
        Kind::Condition,
        r#"payload.s|replace("x", payload.s)|length > 0"#,
    ),
    (Kind::Condition, r#"(payload.s * 100)|length > 0"#),
    (Kind::Condition, r#""%1000000000000d"|format(1)|length > 0"#),
    (
        Kind::Condition,
        r#"payload|tojson(indent=100000000)|length > 0"#,
    ),
    (Kind::Condition, r#"(range(100000)|list * 100)|length > 0"#),
    (Kind::Condition, r#"payload.s|list|length > 0"#),
    (
        Kind::Condition,
        r#"(payload.list * 100000)|select("odd")|list|length > 0"#,
    ),
    // Unique keys: rendered in the writer too.
    (Kind::UniqueKey, r#"{{ payload.s ~ payload.s }}"#),
    (Kind::UniqueKey, r#"{{ "k" * 100000000 }}"#),
    (
        Kind::UniqueKey,
        r#"{% for i in range(100000) %}{{ i }}{% endfor %}"#,
    ),
    (Kind::UniqueKey, r#"{{ payload.s|indent(1000000000) }}"#),
    (Kind::UniqueKey, r#"{{ range(100000)|join("-") }}"#),
];

/// The payload the example and every message carry.
fn payload() -> Value {
    json!({"s": "x".repeat(100_000), "list": (0..1000).collect::<Vec<_>>(), "n": 1_000_000_000_000u64})
}

/// Rounds of benign traffic before the baseline is taken.
const WARM_UP_ROUNDS: usize = 150;

fn field(kind: Kind) -> &'static str {
    match kind {
        Kind::Condition => "condition",
        Kind::Template => "template",
        Kind::UniqueKey => "uniqueKey",
    }
}

fn form_field(kind: Kind) -> &'static str {
    match kind {
        Kind::Condition => "condition",
        Kind::Template => "template",
        Kind::UniqueKey => "unique_key",
    }
}

fn csrf_of(html: &str) -> String {
    let marker = r#"name="csrf" value=""#;
    let at = html.find(marker).expect("a csrf field") + marker.len();
    html[at..at + html[at..].find('"').unwrap()].to_string()
}

/// The start of an answer, for a failure message.
fn short(text: &str) -> &str {
    let mut end = text.len().min(300);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The tests here measure latency on a machine of two cores: one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_templates_fail_alone() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.redb");
    let admin = create_token(&db, None);
    let hostile_rx = Receiver::start().await;
    let calm_rx = Receiver::start().await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();

    // Setup as an admin: the catalog, two tenants, an endpoint each.
    let mut herald = HeraldProcess::start(&db, &[]).await;
    let api = |h: &HeraldProcess, path: &str| h.url(&format!("/api/v1{path}"));
    for (name, example) in [("order.created", Some(payload())), ("order.raw", None)] {
        let mut body = json!({"name": name, "description": "orders"});
        if let Some(e) = example {
            body["example"] = e;
        }
        let r = client
            .post(api(&herald, "/event-type"))
            .bearer_auth(&admin)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    }
    let mut endpoints = Vec::new();
    for (uid, rx) in [("hostile", &hostile_rx), ("calm", &calm_rx)] {
        let r = client
            .post(api(&herald, "/app"))
            .bearer_auth(&admin)
            .json(&json!({"name": uid, "uid": uid}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
        let r = client
            .post(api(&herald, &format!("/app/{uid}/endpoint")))
            .bearer_auth(&admin)
            .json(&json!({"url": rx.url()}))
            .send()
            .await
            .unwrap();
        let ep: Value = r.json().await.unwrap();
        endpoints.push(ep["id"].as_str().unwrap().to_string());
    }
    let hostile_ep = endpoints[0].clone();
    herald.terminate();
    let tenant = create_token(&db, Some("hostile"));
    let mut herald = HeraldProcess::start(&db, &[]).await;
    let pid = herald.pid();

    // A portal session of the hostile tenant, writable.
    let r = client
        .post(api(&herald, "/auth/app-portal-access/hostile"))
        .bearer_auth(&admin)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let access: Value = r.json().await.unwrap();
    let link = access["url"].as_str().unwrap();
    let portal = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    // The entrance page forwards to a same-site second step, which starts the session.
    let path = &link[link.find("/portal/access/").unwrap()..];
    let entrance = portal.get(herald.url(path)).send().await.unwrap();
    assert!(entrance.status().is_success());
    let page = entrance.text().await.unwrap();
    let start = page.find("url=").expect("the entrance forwards") + "url=".len();
    let step = page[start..]
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&");
    let entered = portal.get(herald.url(&step)).send().await.unwrap();
    assert_eq!(
        entered.status(),
        StatusCode::SEE_OTHER,
        "the portal session starts"
    );
    let page = portal
        .get(herald.url("/apps/hostile/triggers/new"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let csrf = csrf_of(&page.text().await.unwrap());

    // The other tenant creates messages throughout, one at a time, and times each.
    let stop = Arc::new(AtomicBool::new(false));
    let calm = {
        let (stop, client, url, admin) = (
            stop.clone(),
            client.clone(),
            api(&herald, "/app/calm/msg"),
            admin.clone(),
        );
        tokio::spawn(async move {
            let mut took = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let r = client
                    .post(&url)
                    .bearer_auth(&admin)
                    .json(&json!({"eventType": "order.raw", "payload": {"n": took.len()}}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), StatusCode::ACCEPTED);
                took.push(started.elapsed());
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            took
        })
    };
    // The same paths with templates that work, so the baseline is that of a Herald in the
    // steady state of this traffic: threads started, page cache and allocator heaps filled by
    // 100 KB messages. Without bombs its RSS grows ~45 MB in the first 15 rounds and ~20 MB
    // more until about round 150, then stays. The bombs must add no more than 64 MB to it.
    let benign = [
        (Kind::Template, "{{ payload.s|length }}"),
        (Kind::Condition, "payload.list|length > 10"),
        (Kind::UniqueKey, "{{ msgId }}"),
    ];
    for &(kind, source) in benign.iter().cycle().take(WARM_UP_ROUNDS) {
        let mut body = json!({"eventType": "order.created"});
        body[field(kind)] = json!(source);
        let r = client
            .post(api(&herald, "/app/hostile/trigger/preview"))
            .bearer_auth(&tenant)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "warm-up preview {source}");
        let form = [
            ("csrf", csrf.as_str()),
            ("endpoint", hostile_ep.as_str()),
            ("event_types", "order.created"),
            ("preview_type", "order.created"),
            (form_field(kind), source),
        ];
        let r = portal
            .post(herald.url("/apps/hostile/triggers/preview"))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::OK,
            "warm-up portal preview {source}"
        );
        let mut trigger = json!({"endpointId": hostile_ep, "eventTypes": ["order.raw"]});
        trigger[field(kind)] = json!(source);
        let r = client
            .post(api(&herald, "/app/hostile/trigger"))
            .bearer_auth(&tenant)
            .json(&trigger)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "warm-up save {source}");
        let saved: Value = r.json().await.unwrap();
        let before = hostile_rx.count();
        let r = client
            .post(api(&herald, "/app/hostile/msg"))
            .bearer_auth(&tenant)
            .json(&json!({"eventType": "order.raw", "payload": payload()}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        hostile_rx
            .wait_for(before + 2, Duration::from_secs(20))
            .await;
        let id = saved["id"].as_str().unwrap();
        client
            .delete(api(&herald, &format!("/app/hostile/trigger/{id}")))
            .bearer_auth(&tenant)
            .send()
            .await
            .unwrap();
    }
    // Herald's resident memory, sampled throughout from here.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baseline = herald.rss_bytes();
    let peak = Arc::new(AtomicU64::new(baseline));
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(common::child::rss_bytes_of(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    let mut cpu_max = 0.0f64;
    for (n, &(kind, source)) in BOMBS.iter().enumerate() {
        let what = format!("bomb {n} ({kind:?}) {source}");
        // The API preview, app-scoped: refused with the reason, within a second of CPU.
        let cpu = herald.cpu_seconds();
        let mut body = json!({"eventType": "order.created"});
        body[field(kind)] = json!(source);
        let r = client
            .post(api(&herald, "/app/hostile/trigger/preview"))
            .bearer_auth(&tenant)
            .json(&body)
            .send()
            .await
            .unwrap();
        let spent = herald.cpu_seconds() - cpu;
        cpu_max = cpu_max.max(spent);
        let status = r.status();
        let text = r.text().await.unwrap();
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{what}: preview {}",
            short(&text)
        );
        assert!(
            text.contains("stopped"),
            "{what}: preview names the bound: {}",
            short(&text)
        );
        assert!(spent < 1.0, "{what}: preview took {spent:.2} s of CPU");

        // Saving it on an event type whose example shows it: refused.
        let mut trigger = json!({"endpointId": hostile_ep, "eventTypes": ["order.created"]});
        trigger[field(kind)] = json!(source);
        let r = client
            .post(api(&herald, "/app/hostile/trigger"))
            .bearer_auth(&tenant)
            .json(&trigger)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{what}: save {}",
            short(&text)
        );
        assert!(
            text.contains(field(kind)),
            "{what}: the refusal names the field: {}",
            short(&text)
        );

        // The same through the portal: the live preview and the form.
        let form = [
            ("csrf", csrf.as_str()),
            ("endpoint", hostile_ep.as_str()),
            ("event_types", "order.created"),
            ("preview_type", "order.created"),
            ("content_type", "json"),
            ("priority", "normal"),
            ("enabled", "on"),
            (form_field(kind), source),
        ];
        let cpu = herald.cpu_seconds();
        let r = portal
            .post(herald.url("/apps/hostile/triggers/preview"))
            .form(&form)
            .send()
            .await
            .unwrap();
        cpu_max = cpu_max.max(herald.cpu_seconds() - cpu);
        assert_eq!(
            r.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{what}: portal preview"
        );
        let r = portal
            .post(herald.url("/apps/hostile/triggers"))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{what}: portal save"
        );
        assert!(
            r.text().await.unwrap().contains("stopped"),
            "{what}: the portal says why"
        );

        // On an event type without an example it saves; then it runs on real messages.
        trigger["eventTypes"] = json!(["order.raw"]);
        let r = client
            .post(api(&herald, "/app/hostile/trigger"))
            .bearer_auth(&tenant)
            .json(&trigger)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::CREATED,
            "{what}: saves without an example"
        );
        let saved: Value = r.json().await.unwrap();
        // Bombs in conditions spend this tenant's share of the writer: it may be told to wait
        // (429, nothing written), and then its create goes in.
        let mut r;
        let mut waited = 0;
        let mut took;
        loop {
            let started = Instant::now();
            r = client
                .post(api(&herald, "/app/hostile/msg"))
                .bearer_auth(&tenant)
                .json(&json!({"eventType": "order.raw", "payload": payload()}))
                .send()
                .await
                .unwrap();
            took = started.elapsed();
            if r.status() != StatusCode::TOO_MANY_REQUESTS || waited == 50 {
                break;
            }
            waited += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            r.status(),
            StatusCode::ACCEPTED,
            "{what}: the ingest is not failed"
        );
        assert!(
            took < Duration::from_secs(1),
            "{what}: ingest took {took:?}"
        );
        let msg: Value = r.json().await.unwrap();
        let msg_id = msg["id"].as_str().unwrap().to_string();
        if kind == Kind::Template {
            // The delivery's attempt fails with the bound as its reason.
            let url = api(&herald, &format!("/app/hostile/attempt/msg/{msg_id}"));
            let stopped = |page: &Value| {
                page["data"].as_array().is_some_and(|attempts| {
                    attempts.iter().any(|a| {
                        a["response"]
                            .as_str()
                            .is_some_and(|t| t.contains("stopped"))
                            && a["status"] != json!(0)
                    })
                })
            };
            eventually(Duration::from_secs(20), || async {
                match client.get(&url).bearer_auth(&tenant).send().await {
                    Ok(r) => r.json::<Value>().await.is_ok_and(|p| stopped(&p)),
                    Err(_) => false,
                }
            })
            .await;
        }
        let id = saved["id"].as_str().unwrap();
        let r = client
            .delete(api(&herald, &format!("/app/hostile/trigger/{id}")))
            .bearer_auth(&tenant)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
        assert!(herald.alive(), "{what}: Herald is still running");
    }

    stop.store(true, Ordering::Relaxed);
    let mut took = calm.await.unwrap();
    sampler.await.unwrap();
    took.sort();
    let (p50, p99) = (percentile(&took, 0.50), percentile(&took, 0.99));
    let grew = peak.load(Ordering::Relaxed).saturating_sub(baseline);
    println!(
        "hostile tenants: {} bombs; other tenant's creates: {} at p50 {:?}, p99 {:?}, max {:?}; \
         Herald RSS baseline {} MB, peak +{} MB; most CPU for one preview {:.3} s",
        BOMBS.len(),
        took.len(),
        p50,
        p99,
        took.last().copied().unwrap_or_default(),
        baseline / 1_000_000,
        grew / 1_000_000,
        cpu_max,
    );
    assert!(BOMBS.len() >= 40);
    assert!(
        herald.alive() && herald.pid() == pid,
        "Herald never restarted"
    );
    // The goal is 50 ms (the figure is printed above); asserted generously, as this runs on
    // two cores that other tests and builds may share.
    assert!(
        p99 < Duration::from_millis(100),
        "the other tenant's p99 was {p99:?}"
    );
    assert!(grew < 64 * 1024 * 1024, "Herald grew by {grew} bytes");
    assert!(
        calm_rx.count() > 0,
        "the other tenant's messages were delivered"
    );
    herald.terminate();
}

/// A tenant sending many messages at once (eight senders) whose trigger condition takes its whole routing
/// budget each time: its own creates are refused (429) once its share of the writer is spent,
/// and another tenant's creates keep their latency.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tenant_flooding_the_writer_with_costly_conditions_delays_only_itself() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.redb");
    let admin = create_token(&db, None);
    let rx = Receiver::start().await;
    let herald = HeraldProcess::start(&db, &[]).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let post = |path: &str, body: Value| {
        client
            .post(herald.url(&format!("/api/v1{path}")))
            .bearer_auth(&admin)
            .json(&body)
            .send()
    };
    let r = post(
        "/event-type",
        json!({"name": "order.raw", "description": ""}),
    )
    .await
    .unwrap();
    assert!(r.status().is_success());
    let mut hostile_ep = String::new();
    for uid in ["hostile", "calm"] {
        assert!(
            post("/app", json!({"name": uid, "uid": uid}))
                .await
                .unwrap()
                .status()
                .is_success()
        );
        let ep: Value = post(&format!("/app/{uid}/endpoint"), json!({"url": rx.url()}))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if uid == "hostile" {
            hostile_ep = ep["id"].as_str().unwrap().to_string();
        }
    }
    // Each evaluation tests numbers until the message's routing budget stops it.
    let r = post(
        "/app/hostile/trigger",
        json!({"endpointId": hostile_ep, "eventTypes": ["order.raw"],
               "condition": "range(100000)|select(\"odd\")|list|length > 0"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);

    let stop = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicU64::new(0));
    let accepted = Arc::new(AtomicU64::new(0));
    let mut flood = Vec::new();
    for _ in 0..8 {
        let (stop, refused, accepted) = (stop.clone(), refused.clone(), accepted.clone());
        let (client, url, admin) = (
            client.clone(),
            herald.url("/api/v1/app/hostile/msg"),
            admin.clone(),
        );
        flood.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let r = client
                    .post(&url)
                    .bearer_auth(&admin)
                    .json(&json!({"eventType": "order.raw", "payload": {}}))
                    .send()
                    .await
                    .unwrap();
                match r.status() {
                    StatusCode::ACCEPTED => {
                        accepted.fetch_add(1, Ordering::Relaxed);
                    }
                    // As the SDKs do: wait a moment after a 429.
                    StatusCode::TOO_MANY_REQUESTS => {
                        refused.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    other => panic!("hostile create answered {other}"),
                }
            }
        }));
    }
    let mut took = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(4) {
        let t = Instant::now();
        let r = post(
            "/app/calm/msg",
            json!({"eventType": "order.raw", "payload": {"n": took.len()}}),
        )
        .await
        .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::ACCEPTED,
            "the other tenant is never refused"
        );
        took.push(t.elapsed());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for f in flood {
        f.await.unwrap();
    }
    took.sort();
    let p99 = percentile(&took, 0.99);
    println!(
        "writer flood: other tenant's creates: {} at p50 {:?}, p99 {:?}; flooding tenant: {} accepted, {} refused (429)",
        took.len(),
        percentile(&took, 0.5),
        p99,
        accepted.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
    );
    assert!(
        refused.load(Ordering::Relaxed) > 0,
        "the flooding tenant was held to its share"
    );
    assert!(
        accepted.load(Ordering::Relaxed) > 0,
        "and still got some messages in"
    );
    // The goal is 50 ms (the figure is printed above); asserted generously, as this runs on
    // two cores that other tests and builds may share.
    assert!(
        p99 < Duration::from_millis(100),
        "the other tenant's p99 was {p99:?}"
    );
}
