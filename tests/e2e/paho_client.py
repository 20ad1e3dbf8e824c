"""paho-mqtt (PyPI) as a real client of the collector, for tests/e2e/mqtt5.rs.

Usage: paho_client.py PORT PROTOCOL TOPIC, PROTOCOL 5 or 311. Connects, prints the CONNACK's
reason code and (MQTT 5) its properties, subscribes to TOPIC and prints the first message's
topic and payload; exits 1 if any of it does not come within 10 s.
"""

import sys
import threading

import paho.mqtt.client as mqtt

port, protocol, topic = int(sys.argv[1]), sys.argv[2], sys.argv[3]
version = mqtt.MQTTv5 if protocol == "5" else mqtt.MQTTv311
done = threading.Event()


def on_connect(client, userdata, flags, reason, properties):
    print(f"connack {reason.value}", flush=True)
    if properties is not None:
        for name in ("ReceiveMaximum", "MaximumPacketSize", "TopicAliasMaximum"):
            print(f"{name} {getattr(properties, name, None)}", flush=True)
    if reason.value == 0:
        client.subscribe(topic, qos=1)
    else:
        done.set()


def on_message(client, userdata, message):
    print(f"message {message.topic} {message.payload.decode()}", flush=True)
    done.set()


client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"paho-{protocol}", protocol=version)
client.on_connect = on_connect
client.on_message = on_message
client.connect("127.0.0.1", port, keepalive=30)
client.loop_start()
ok = done.wait(10)
client.disconnect()
client.loop_stop()
sys.exit(0 if ok else 1)
