#!/usr/bin/env python3
"""A fake Azure Event Hubs AMQP endpoint for offline tests of gridmq's Event Hubs sink.

It answers what the real `azure_messaging_eventhubs` SDK asks of a namespace, and no more:

- SASL ANONYMOUS on plain AMQP (the SDK's `with_custom_endpoint("amqp://127.0.0.1:PORT")`);
- `$cbs` put-token: any token is accepted (status-code 202, correlation-id = the request's
  message-id), except one signed with the key name given by `--reject-key-name` (401);
- `$management` READ of `com.microsoft:eventhub`: `name`, `partition_count`,
  `partition_ids` (an AMQP array of strings) and `created_at`; 404 for another hub's name;
- a sending link to the hub (its address' path is `/<hub>` or `/<hub>/Partitions/<id>`):
  the receiving end advertises `max-message-size` on attach (the SDK's `create_batch` needs
  it); a link to any other entity is refused with `amqp:not-found`.

Every message received on a hub link is recorded as JSON lines: one line per event, a batch
(message format 0x80013700, one envelope whose data sections are whole messages) being
unpacked, with the envelope's message annotations (`x-opt-partition-key`) beside each event's
own body, properties, application properties and message annotations.

Usage: server.py [--port N] [--hub NAME] [--record FILE] [--reject-key-name NAME]
The first line on stdout is the port listened on (127.0.0.1 only). Stop it by its pid.
"""

import argparse
import base64
import json
import socket
import sys
import time
import uuid
from urllib.parse import unquote, urlparse

from proton import (UNDESCRIBED, Array, Condition, Data, Described, Endpoint, Message, int32,
                    timestamp)
from proton.handlers import MessagingHandler
from proton.reactor import Container

BATCH_FORMAT = 0x80013700
MAX_MESSAGE_SIZE = 1024 * 1024
PARTITIONS = ["0", "1", "2", "3"]

# AMQP 1.0 message section descriptors.
HEADER, DELIVERY_ANNOTATIONS, MESSAGE_ANNOTATIONS = 0x70, 0x71, 0x72
PROPERTIES, APPLICATION_PROPERTIES, DATA, SEQUENCE, VALUE, FOOTER = (
    0x73, 0x74, 0x75, 0x76, 0x77, 0x78)


def plain(value):
    """An AMQP value as JSON: bytes as text when they are UTF-8, else base64."""
    if isinstance(value, Described):
        return {"descriptor": plain(value.descriptor), "value": plain(value.value)}
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return {"base64": base64.b64encode(raw).decode("ascii")}
    if isinstance(value, dict):
        return {str(plain(k)): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, uuid.UUID):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value if not isinstance(value, str) else str(value)
    return str(value)


def sections(raw):
    """The sections of an encoded message, as (descriptor code, value) pairs."""
    found = []
    data = Data()
    while raw:
        data.clear()
        used = data.decode(raw)
        raw = raw[used:]
        data.rewind()
        data.next()
        item = data.get_object()
        if isinstance(item, Described):
            found.append((int(item.descriptor), owned(item.value)))
    return found


def owned(value):
    """A decoded value detached from the decoder's buffer (binaries are views into it)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, Described):
        return Described(value.descriptor, owned(value.value))
    if isinstance(value, dict):
        return {owned(k): owned(v) for k, v in value.items()}
    if isinstance(value, list):
        return [owned(v) for v in value]
    return value


PROPERTY_NAMES = ["message_id", "user_id", "to", "subject", "reply_to", "correlation_id",
                  "content_type", "content_encoding", "absolute_expiry_time", "creation_time",
                  "group_id", "group_sequence", "reply_to_group_id"]


def describe(raw):
    """One encoded message as a JSON-ready dict."""
    record = {"body": None, "properties": {}, "application_properties": {},
              "message_annotations": {}}
    bodies = []
    for code, value in sections(raw):
        if code == MESSAGE_ANNOTATIONS:
            record["message_annotations"] = plain(value)
        elif code == PROPERTIES:
            fields = value if isinstance(value, list) else []
            record["properties"] = {
                name: plain(field) for name, field in zip(PROPERTY_NAMES, fields)
                if field is not None}
        elif code == APPLICATION_PROPERTIES:
            record["application_properties"] = plain(value)
        elif code in (DATA, SEQUENCE, VALUE):
            bodies.append(value)
    if len(bodies) == 1:
        record["body"] = plain(bodies[0])
    elif bodies:
        record["body"] = [plain(body) for body in bodies]
    return record, bodies


def is_envelope(raw):
    """Whether a message is a batch envelope: every data section holds a whole message."""
    codes = [(code, value) for code, value in sections(raw) if code == DATA]
    return bool(codes) and all(
        bytes(value)[:2] == b"\x00\x53" and len(value) > 2
        and HEADER <= bytes(value)[2] <= FOOTER for _, value in codes)


class FakeEventHubs(MessagingHandler):
    def __init__(self, port, hub, record, reject_key_name):
        super().__init__(auto_accept=False, prefetch=100)
        self.port = port
        self.hub = hub
        self.record = record
        self.reject_key_name = reject_key_name
        self.batches = 0

    def on_start(self, event):
        event.container.sasl_enabled = True
        event.container.allowed_mechs = "ANONYMOUS"
        event.container.listen(f"127.0.0.1:{self.port}")
        # The port goes out only once the listener is up, so a reader may connect at once.
        print(self.port, flush=True)

    def on_link_opening(self, event):
        link = event.link
        if link.remote_source.address:
            link.source.address = link.remote_source.address
        if link.remote_target.address:
            link.target.address = link.remote_target.address
        if link.is_receiver:
            link.max_message_size = MAX_MESSAGE_SIZE

    def on_link_opened(self, event):
        link = event.link
        if link.is_receiver:
            address = link.remote_target.address or ""
            if address not in ("$cbs", "$management") and not self.is_our_hub(address):
                link.condition = Condition("amqp:not-found",
                                                f"the messaging entity '{address}' could not be found")
                link.close()

    def is_our_hub(self, address):
        path = unquote(urlparse(address).path if "://" in address else address).strip("/")
        parts = path.split("/")
        return parts[0] == self.hub and (len(parts) == 1 or (len(parts) == 3 and parts[1] == "Partitions"))

    def on_message(self, event):
        # Unused: deliveries are read raw in on_delivery so batches can be unpacked.
        pass

    def on_delivery(self, event):
        delivery = event.delivery
        link = event.link
        if not link.is_receiver or not delivery.readable or delivery.partial:
            return
        raw = link.recv(delivery.pending)
        link.advance()
        address = link.remote_target.address or ""
        if address == "$cbs":
            self.put_token(event, raw)
        elif address == "$management":
            self.management(event, raw)
        elif self.is_our_hub(address):
            self.received(address, raw)
        else:
            # A transfer that raced the link's refusal: not delivered, not recorded.
            delivery.local.condition = Condition("amqp:not-found", f"no entity '{address}'")
            delivery.update(delivery.REJECTED)
            delivery.settle()
            return
        delivery.update(delivery.ACCEPTED)
        delivery.settle()

    def reply(self, event, request, properties, body):
        # The client receives replies on an open link whose target is the request's reply-to
        # (its source is the node asked, `$cbs` or `$management`); closed ones linger.
        node = event.link.remote_target.address
        link, fallback = None, None
        active = Endpoint.LOCAL_ACTIVE | Endpoint.REMOTE_ACTIVE
        candidate = event.connection.link_head(active)
        while candidate:
            if candidate.is_sender:
                if candidate.remote_target.address == request.reply_to:
                    link = candidate
                    break
                if candidate.remote_source.address == node:
                    fallback = candidate
            candidate = candidate.next(active)
        link = link or fallback
        if link is None:
            print("fake-eventhubs: no reply link for", request.reply_to, file=sys.stderr)
            return
        response = Message(body=body, properties=properties)
        response.correlation_id = request.id
        response.address = request.reply_to
        link.send(response)

    def put_token(self, event, raw):
        request = Message()
        request.decode(raw)
        token = request.body if isinstance(request.body, str) else str(request.body)
        status, text = 202, "Accepted"
        if self.reject_key_name and f"skn={self.reject_key_name}" in token:
            status, text = 401, "InvalidSignature: the token has an invalid signature"
        self.reply(event, request,
                   {"status-code": int32(status), "status-description": text}, None)

    def management(self, event, raw):
        request = Message()
        request.decode(raw)
        props = request.properties or {}
        name = props.get("name")
        if props.get("operation") != "READ" or props.get("type") != "com.microsoft:eventhub":
            self.reply(event, request,
                       {"status-code": int32(501), "status-description": "not implemented"}, None)
            return
        if name != self.hub:
            self.reply(event, request,
                       {"status-code": int32(404),
                        "status-description": f"the messaging entity '{name}' could not be found"},
                       None)
            return
        # An undescribed AMQP array of strings, as the SDK requires.
        partition_ids = Array(UNDESCRIBED, Data.STRING, *PARTITIONS)
        body = {
            "name": self.hub,
            "partition_count": int32(len(PARTITIONS)),
            "partition_ids": partition_ids,
            "created_at": timestamp(int(time.time() * 1000)),
        }
        self.reply(event, request,
                   {"status-code": int32(200), "status-description": "OK"}, body)

    def received(self, address, raw):
        self.batches += 1
        envelope, bodies = describe(raw)
        if is_envelope(raw):
            events = [describe(bytes(body))[0] for body in bodies]
        else:
            events = [envelope]
            envelope = {"message_annotations": envelope["message_annotations"]}
        for index, record in enumerate(events):
            record["address"] = address
            record["batch"] = self.batches
            record["index"] = index
            record["batch_size"] = len(events)
            record["envelope_annotations"] = envelope["message_annotations"]
            record["partition_key"] = envelope["message_annotations"].get("x-opt-partition-key")
            self.record.write(json.dumps(record, sort_keys=True) + "\n")
            self.record.flush()


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1; 0 picks a free one")
    parser.add_argument("--hub", default="hub", help="the event hub's name")
    parser.add_argument("--record", help="file to append received events to (default stdout)")
    parser.add_argument("--reject-key-name", help="refuse tokens signed with this key name")
    args = parser.parse_args()
    port = args.port or free_port()
    record = open(args.record, "a", encoding="utf-8") if args.record else sys.stdout
    Container(FakeEventHubs(port, args.hub, record, args.reject_key_name)).run()


if __name__ == "__main__":
    main()
