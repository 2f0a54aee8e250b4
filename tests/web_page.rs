//! The controller's web page end to end: the emulated demo runs a real-time workload in this
//! process with its API (and the embedded page) on a loopback port, and tests/web/page.mjs drives
//! the page in headless Chromium through playwright-core (from web/node_modules, installed by
//! build.rs): the map shows the edges /api/graph reports, follows the traffic as it grows, shows
//! an older window on the time slider, sorts the pairs table numerically, and reports an
//! unreachable API on the page, with no console error or failed request.
//!
//! Needs Chromium (Debian: chromium) and Node.js. Skipped without Chromium, except under CI
//! (CI=true), where it must run.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use vmdep::demo::emulated::{self, DemoOptions};
use vmdep::demo::workload::WorkloadSpec;

mod support;

use support::env::chromium_or_skip;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_the_live_demo_in_chromium() {
    let Some(chromium) = chromium_or_skip("the_page_shows_the_live_demo_in_chromium") else {
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let started = Instant::now();
    // Real time, so that the traffic and the windows change while the page is open; the API
    // lingers after the workload so that a slow browser still finds it. The test stops the demo
    // once the page was checked.
    let options = DemoOptions {
        workload: WorkloadSpec {
            duration: Duration::from_secs(20),
            seed: 11,
            scale: 1.0,
        },
        real_time: true,
        http_listen: Some("127.0.0.1:0".parse().unwrap()),
        linger: Duration::from_secs(30),
        ..DemoOptions::default()
    };
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel::<SocketAddr>();
    let mut addr_tx = Some(addr_tx);
    let demo = tokio::spawn(emulated::run(options, move |progress| {
        if let (Some(tx), Some(addr)) = (addr_tx.take(), progress.http_addr) {
            let _ = tx.send(addr);
        }
    }));
    let addr = match tokio::time::timeout(Duration::from_secs(60), addr_rx).await {
        Ok(Ok(addr)) => addr,
        Ok(Err(_)) => panic!("the demo stopped before serving its API: {:?}", demo.await),
        Err(_) => panic!("the demo did not serve its API within a minute"),
    };
    eprintln!(
        "the demo serves the page on http://{addr}/ after {:?}",
        started.elapsed()
    );

    let script = root.join("tests/web/page.mjs");
    let run = tokio::process::Command::new("node")
        .arg(&script)
        .arg(format!("http://{addr}/"))
        .env("CHROMIUM", &chromium)
        .current_dir(root)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(90), run)
        .await
        .expect("the page script finishes within 90 s")
        .expect("node runs (Debian: apt-get install nodejs)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    eprintln!("page checked after {:?}", started.elapsed());

    // The demo would linger on; the page is checked, so it stops here.
    if demo.is_finished() {
        panic!(
            "the demo ended while the page was checked: {:?}",
            demo.await
        );
    }
    demo.abort();
    assert!(
        output.status.success(),
        "{} failed ({}):\n{stdout}\n{stderr}",
        script.display(),
        output.status
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");
}
