//! Ember's end-to-end tests: a real collector (embedded rumqttd, HTTP API) on free loopback
//! ports, real agents and real MQTT clients against it.
//!
//! Modules:
//! - `support`: starting a collector, HTTP and MQTT helpers shared by the tests.
//! - `foundation`: one agent's real samples reach the API (issue #2).
//! - `ingest`: bad payloads and spoofing are dropped and counted, good hosts keep flowing.
//! - `outage`: a 60 s broker outage loses no sample and duplicates none (issue #3).
//! - `simulation`: many synthetic hosts from one process (issue #3).

mod support;

mod foundation;
mod ingest;
mod outage;
mod simulation;
