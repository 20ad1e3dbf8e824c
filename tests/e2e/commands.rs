//! The agent's side of commands (issue #3: it subscribes on every connect; the full command
//! feature is issue #7): a command it can do is done, anything else is refused, never run.

use std::time::Duration;

use ember_wire::{Action, Outcome};

use crate::support::{eventually, send_command, spawn_agent, TestCollector};

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
