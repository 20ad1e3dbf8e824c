//! The agent's side of commands (issue #3: it subscribes on every connect; the full command
//! feature is issue #7): a command it can do is done, anything else is refused, never run.

use std::time::Duration;

use ember_wire::{Action, Outcome};

use crate::support::{eventually, send_command, send_command_times, spawn_agent, TestCollector};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn republish_is_done_and_unknown_commands_are_refused() {
    let c = TestCollector::start().await;
    let (_stop, _agent) = spawn_agent(c.agent_config("cmd-host", "500ms"));
    eventually(Duration::from_secs(10), "the agent online", || async {
        let (_, h) = c.get("/api/hosts/cmd-host").await;
        (h["status"] == "online").then_some(())
    })
    .await;
    let done = send_command(c.mqtt_port(), "cmd-host", Action::RepublishInventory).await;
    assert_eq!(done.outcome, Outcome::Done);
    let refused = send_command(
        c.mqtt_port(),
        "cmd-host",
        Action::Named(ember_wire::heapless::String::from("rm-rf")),
    )
    .await;
    assert_eq!(refused.outcome, Outcome::Refused);
    assert!(!refused.detail.is_empty());
}

/// Issue #20: the same command delivered twice (QoS 1 redelivers it when its acknowledgement
/// is lost) ran twice. Now the second delivery gets the first result, and nothing runs again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_20_a_command_delivered_twice_runs_once() {
    let c = TestCollector::start().await;
    let runs = std::env::temp_dir().join(format!("ember-e2e-cmd-runs-{}", std::process::id()));
    let _ = std::fs::remove_file(&runs);
    let mut config = c.agent_config("cmd-twice", "500ms");
    config.commands = ember_agent::command::validate(
        &toml::from_str(&format!(
            "count = {{ run = [\"/bin/sh\", \"-c\", \"echo run >> {}; echo counted\"] }}\n",
            runs.display()
        ))
        .unwrap(),
    )
    .unwrap();
    let (_stop, _agent) = spawn_agent(config);
    eventually(Duration::from_secs(10), "the agent online", || async {
        let (_, h) = c.get("/api/hosts/cmd-twice").await;
        (h["status"] == "online").then_some(())
    })
    .await;
    let count = Action::Named(ember_wire::heapless::String::from("count"));
    let results = send_command_times(c.mqtt_port(), "cmd-twice", count, 2).await;
    assert_eq!(results[0], results[1]);
    assert_eq!(results[0].outcome, Outcome::Done);
    assert_eq!(results[0].detail.as_str(), "counted");
    let lines = std::fs::read_to_string(&runs).unwrap();
    std::fs::remove_file(&runs).unwrap();
    assert_eq!(lines, "run\n", "the command ran once");
}
