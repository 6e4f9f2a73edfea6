//! Hostile input and overload, against a real `medic run`: credentials in URLs never shown,
//! series limits against a target that invents series, slow and idle HTTP clients.

#[path = "support/daemon.rs"]
mod support;

use std::time::Duration;

use support::{DEADLINE, Medic, Target, WebhookSink, metric_value, wait_for};

fn base_config(dir: &std::path::Path, extra: &str) -> String {
    format!(
        "global:\n  listen_address: 127.0.0.1:0\n  state_dir: {}\n  evaluation_interval: 300ms\n  collect_interval: 300ms\n{extra}",
        dir.join("state").display()
    )
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

const SECRET: &str = "hunter2-in-url";

/// `user:pass@` in the URLs of a probe, a scrape target and an http actuator: medic still
/// uses them, but the password shows nowhere: not in the log, not in the journal's action
/// message, not in the probe's `instance` label on `/metrics`, not in the webhook payload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_in_urls_are_redacted_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let target = Target::start().await;
    target.set_failing(true);
    let hook = WebhookSink::start().await;
    let closed = closed_port();
    std::fs::write(
        d.join("rules.yaml"),
        r#"groups:
- name: site
  interval: 300ms
  rules:
  - alert: SiteDown
    expr: probe_success{probe="site"} == 0
    annotations: {summary: "{{ $labels.instance }} is down"}
    remediate:
    - {action: http, target: admin, cooldown: 1h}
"#,
    )
    .unwrap();
    let config = base_config(
        d,
        &format!(
            r#"  export_collected: true
collectors:
  site:
    type: http_probe
    url: "http://admin:{SECRET}@{addr}/health"
    timeout: 300ms
  app:
    type: scrape
    url: "http://admin:{SECRET}@127.0.0.1:{closed}/metrics"
    timeout: 300ms
actuators:
  admin:
    type: http
    url: "http://admin:{SECRET}@127.0.0.1:{closed}/drain"
    timeout: 2s
notifiers:
  sink:
    type: webhook
    url: {hook}
    timeout: 5s
rule_files: [rules.yaml]
"#,
            addr = target.addr,
            hook = hook.url(),
        ),
    );
    let medic = Medic::start(d, &config);
    let shown = format!("http://admin:***@{}/health", target.addr);

    let payload = wait_for("the firing webhook", || async {
        hook.find("firing", "SiteDown")
    })
    .await;
    let journal = d.join("state/journal.db");
    let message: String = wait_for("the action's outcome in the journal", || async {
        let db = rusqlite::Connection::open_with_flags(
            &journal,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .ok()?;
        db.query_row(
            "SELECT message FROM actions WHERE status != 'running' ORDER BY id LIMIT 1",
            [],
            |r| r.get::<_, Option<String>>(0),
        )
        .ok()
        .flatten()
    })
    .await;
    let (_, metrics) = medic.get("/metrics").await;
    // the scrape target's outage is logged once it has failed
    wait_for("the scrape outage in the log", || async {
        medic.logs().contains("target down").then_some(())
    })
    .await;

    let alert = &payload["alerts"][0];
    assert_eq!(alert["labels"]["instance"], shown.as_str(), "{payload}");
    assert!(
        metric_value(
            &metrics,
            &format!("probe_success{{instance=\"{shown}\",probe=\"site\"}}")
        )
        .is_some(),
        "{metrics}"
    );
    assert!(
        message.contains(&format!("http://admin:***@127.0.0.1:{closed}/drain")),
        "{message}"
    );
    for (what, text) in [
        ("log", medic.logs()),
        ("journal message", message),
        ("/metrics", metrics),
        ("webhook", payload.to_string()),
    ] {
        assert!(
            !text.contains(SECRET),
            "the password shows in the {what}:\n{text}"
        );
    }
    let _ = DEADLINE;
    let _ = Duration::ZERO;
}
