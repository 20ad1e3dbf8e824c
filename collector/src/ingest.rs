//! Ingest: reads what agents publish through the broker's in-process link and hands it to the
//! [`Store`]. The thread is thin; the decisions are in the store.

use std::sync::{Arc, RwLock};

use ember_wire::topic;
use rumqttd::local::{LinkRx, LinkTx};
use rumqttd::protocol::{Filter, Packet, QoS, RetainForwardRule, Subscribe};
use rumqttd::Notification;

use crate::store::{Reject, Store};

/// Subscribes to everything agents publish and starts the ingest thread.
pub async fn spawn(
    mut link_tx: LinkTx,
    link_rx: LinkRx,
    store: Arc<RwLock<Store>>,
) -> anyhow::Result<()> {
    // LinkTx::subscribe never forwards retained messages; ask for them explicitly, so that the
    // hosts' retained status and inventory arrive even if they were published before we started.
    let subscribe = Subscribe {
        pkid: 1,
        filters: vec![Filter {
            path: topic::FROM_AGENTS.to_string(),
            qos: QoS::AtMostOnce,
            nolocal: true,
            preserve_retain: true,
            retain_forward_rule: RetainForwardRule::OnEverySubscribe,
        }],
    };
    link_tx.send(Packet::Subscribe(subscribe, None)).await?;
    std::thread::Builder::new()
        .name("ember-ingest".into())
        .spawn(move || {
            // Keep the sending half alive with the thread: dropping it disconnects the link.
            let _link_tx = link_tx;
            run(link_rx, &store)
        })?;
    Ok(())
}

fn run(mut link_rx: LinkRx, store: &RwLock<Store>) {
    loop {
        match link_rx.recv() {
            Ok(Some(Notification::Forward(forward))) => {
                let topic = String::from_utf8_lossy(&forward.publish.topic);
                let result = store.write().unwrap_or_else(|e| e.into_inner()).ingest(
                    &topic,
                    &forward.publish.payload,
                    crate::now_ms(),
                );
                if let Err(reject) = result {
                    log_reject(&topic, reject);
                }
            }
            // The router pauses a link after `max_outgoing_packet_count` forwards until it says
            // it is ready again; without this ingest stalls.
            Ok(Some(Notification::Unschedule)) => {
                if let Err(e) = link_rx.ready() {
                    tracing::error!("broker link closed: {e}");
                    return;
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!("broker link closed: {e}");
                return;
            }
        }
    }
}

fn log_reject(topic: &str, reject: Reject) {
    // Debug level: a misbehaving publisher must not flood the log; the counters show it.
    tracing::debug!(%topic, ?reject, "message dropped");
}
