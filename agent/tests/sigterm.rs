//! The agent binary against Debian's Mosquitto: it announces itself retained `Online`, and on
//! SIGTERM (what systemd sends) it publishes `Offline` and exits with success.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ember_wire::{topic, HostId, Message, Status};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

const MOSQUITTO: &str = "/usr/sbin/mosquitto";

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn sigterm_publishes_offline_and_exits_cleanly() {
    assert!(
        std::path::Path::new(MOSQUITTO).exists(),
        "{MOSQUITTO} is missing: install Debian's `mosquitto` (.ci/run does)"
    );
    let port = free_port();
    let conf = std::env::temp_dir().join(format!("ember-mosquitto-{port}.conf"));
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\nallow_anonymous true\n"),
    )
    .unwrap();
    let _broker = Kill(
        Command::new(MOSQUITTO)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto starts"),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "mosquitto did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }

    let host = HostId::new("sigterm-pi").unwrap();
    let mut options = MqttOptions::new("sigterm-watcher", "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(10));
    let (client, mut events) = AsyncClient::new(options, 10);
    client
        .subscribe(
            topic::topic(&host, topic::Kind::Status).as_str(),
            QoS::AtLeastOnce,
        )
        .await
        .unwrap();

    let agent = Command::new(env!("CARGO_BIN_EXE_ember-agent"))
        .args([
            "--broker",
            &format!("127.0.0.1:{port}"),
            "--host-id",
            "sigterm-pi",
        ])
        .env("EMBER_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("the agent starts");
    let pid = agent.id();
    let mut agent = Kill(agent);

    let mut next_status = async || loop {
        if let Event::Incoming(Packet::Publish(p)) = events.poll().await.expect("watcher") {
            match ember_wire::decode(&p.payload)
                .expect("a valid envelope")
                .message
            {
                Message::Status(s) => return (s, p.retain),
                other => panic!("status topic carried {other:?}"),
            }
        }
    };
    let (online, _) = tokio::time::timeout(Duration::from_secs(10), next_status())
        .await
        .expect("Online within 10 s");
    assert_eq!(online, Status::Online { interval_ms: 1000 });

    let killed = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let (offline, _) = tokio::time::timeout(Duration::from_secs(5), next_status())
        .await
        .expect("Offline within 5 s of SIGTERM");
    assert_eq!(offline, Status::Offline);
    let deadline = Instant::now() + Duration::from_secs(5);
    let exit = loop {
        if let Some(exit) = agent.0.try_wait().unwrap() {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "the agent did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "exit status {exit}");
    let _ = std::fs::remove_file(conf);
}
