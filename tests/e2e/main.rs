//! Ember's end-to-end tests: a real collector (embedded rumqttd, HTTP API) on free loopback
//! ports, real agents and real MQTT clients against it.
//!
//! Modules:
//! - `support`: starting a collector, HTTP and MQTT helpers shared by the tests.
//! - `browser`: a small WebDriver client for Debian's headless Chromium.
//! - `dashboard`: the dashboard in a real browser (issue #6).
//! - `commands`: the agent answers commands it can do and refuses the rest.
//! - `foundation`: one agent's real samples reach the API (issue #2).
//! - `ingest`: bad payloads and spoofing are dropped and counted, good hosts keep flowing.
//! - `harness`: helpers for the collector tests of issue #5 (edited config, event streams,
//!   MQTT clients, a real Mosquitto).
//! - `collector_api`: many agents, history by range and resolution, `/metrics` as Prometheus
//!   text, every route of `docs/openapi.json` (issue #5).
//! - `status_events`: online / stale / offline from thresholds and the last will, in the API and
//!   the event stream (issue #5).
//! - `mqtt_bridge`: JSON state and Home Assistant discovery read by an MQTT client (issue #5).
//! - `external_broker`: two collectors sharing a Mosquitto broker's load (issue #5).
//! - `inventory`: the inventory is published again when it changes.
//! - `outage`: a 60 s broker outage loses no sample and duplicates none (issue #3).
//! - `drain`: a stopping agent sends its outbox (acknowledged) before `Offline`, the backlog
//!   of an outage that just ended too, and stops within its timeout when the broker refuses or
//!   stops answering.
//! - `simulation`: many synthetic hosts from one process (issue #3).
//! - `alerts`: webhooks to a real HTTP receiver with retries, the MQTT alert topic and the
//!   host's banner topic, silences, commands from the API to a real agent and back with the
//!   audit log, and the dashboard's alerts and command buttons in Chromium (issue #7).
//! - `http_security`: read and operator tokens, the dashboard's login, security headers, no
//!   secret in the logs (issue #8).
//! - `http_limits`: idle sockets do not starve HTTPS, half-sent requests are closed, Host and
//!   Origin checks against DNS rebinding and login CSRF (issue #20).
//! - `limits`: the connection limit, refused clients reconnecting (issue #9).
//! - `connect_storm`: a fleet of simulated agents connecting at once, to a fresh collector and
//!   after a restart: all listed in time, nothing acknowledged dropped (issue #20).
//! - `mqtt5`: MQTT 5.0 clients (Mosquitto's, rumqttc's v5) against the embedded broker: the
//!   CONNACK's properties, reason codes, what rumqttd does and does not do (issue #21).
//! - `security`: MQTT authentication, TLS and mTLS with the onboarding certificates, no host
//!   publishes for another, a flood does not starve the others (issue #8).
//! - `conformance`: MQTT 3.1.1 conformance cases, each against the embedded broker and Debian's
//!   Mosquitto in the same run, with a raw-packet client (issue #21).
//! - `real_clients`: `mosquitto_sub`/`mosquitto_pub` and paho-mqtt (keep-alive 0) read the JSON
//!   state and Home Assistant discovery from the embedded broker on MQTT 3.1.1 (issue #21).

mod browser;
mod support;

mod alerts;
mod commands;
mod conformance;
mod connect_storm;
mod dashboard;
mod drain;
mod foundation;
mod harness;
mod ingest;
mod inventory;
mod limits;
mod outage;
mod real_clients;
mod security;
mod simulation;

mod collector_api;
mod external_broker;
mod http_limits;
mod http_security;
mod mqtt5;
mod mqtt_bridge;
mod status_events;
