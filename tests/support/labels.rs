//! DPI's labels in a netns demo's report (report.json's shape) against the workload's
//! conversations: the check the netns demo tests share.

use serde_json::Value;

fn conversation(label: &Value) -> String {
    format!(
        "{} → {}:{}",
        label["client"].as_str().unwrap_or("?"),
        label["server"].as_str().unwrap_or("?"),
        label["server_port"]
    )
}

/// Whether the report's pairs put `a` and `b` on one server.
fn same_server(report: &Value, a: &str, b: &str) -> bool {
    report["pairs"].as_array().into_iter().flatten().any(|p| {
        let (src, dst) = (p["src"].as_str(), p["dst"].as_str());
        (src == Some(a) && dst == Some(b) || src == Some(b) && dst == Some(a))
            && p["same_server"] == true
    })
}

/// Checks that the run's mirrored conversations got the workload's labels:
///
/// - every same-server conversation: its server copies each of its frames to DPI from the
///   first one, so each must carry its protocol's label (a DNS lookup of one datagram each
///   way, a backup stream its port's);
/// - the cross-server conversations mirrored while they spoke: which pairs the controller
///   measures depends on Open vSwitch's random sampling, and a pair measured from a later
///   window on may have had little of a conversation left to show, so of at least
///   `min_cross` such conversations at least three quarters must carry their protocol.
pub fn assert_mirrored_conversations_labeled(report: &Value, min_cross: usize) {
    let labels = report["labels"].as_array().expect("the report's labels");
    let (local, cross): (Vec<&Value>, Vec<&Value>) = labels.iter().partition(|l| {
        same_server(
            report,
            l["client"].as_str().unwrap(),
            l["server"].as_str().unwrap(),
        )
    });
    let unlabeled: Vec<String> = local
        .iter()
        .filter(|l| l["mirrored"] != true || l["matches"] != true)
        .map(|l| {
            format!(
                "{}: {} is DPI's {}",
                conversation(l),
                l["truth_protocol"],
                l["dpi_protocol"]
            )
        })
        .collect();
    assert!(
        unlabeled.is_empty(),
        "same-server conversations without their label: {unlabeled:#?}"
    );
    let mirrored: Vec<&&Value> = cross.iter().filter(|l| l["mirrored"] == true).collect();
    let labeled = mirrored.iter().filter(|l| l["matches"] == true).count();
    assert!(
        mirrored.len() >= min_cross && labeled * 4 >= mirrored.len() * 3,
        "{labeled} of {} mirrored cross-server conversations labeled (at least {min_cross} \
         expected, three quarters of them labeled): {mirrored:#?}",
        mirrored.len()
    );
}
