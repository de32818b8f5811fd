"""Drives gridmq's data plane with the unmodified Azure `azure-eventgrid` SDK (4.2x).

Run by tests/tests/interop/azure_eventgrid.rs, one process per scenario:

    python3 eventgrid_scenario.py SCENARIO ENDPOINT KEY TOPIC SUBSCRIPTION [CA_PEM]

With CA_PEM, the clients trust that certificate (`connection_verify`), as a user of a
self-signed gridmq would. The scenario prints one JSON object on stdout: what the SDK returned,
for the Rust test to assert on. Any SDK exception fails the process with its traceback.
"""

import json
import sys
import time

from azure.core.credentials import AzureKeyCredential
from azure.core.messaging import CloudEvent
from azure.eventgrid import EventGridConsumerClient, EventGridPublisherClient
from azure.eventgrid.models import ReleaseDelay


def received_facts(details):
    return [
        {
            "lockToken": d.broker_properties.lock_token,
            "deliveryCount": d.broker_properties.delivery_count,
            "id": d.event.id,
            "source": d.event.source,
            "type": d.event.type,
            "subject": d.event.subject,
            "data": d.event.data,
            "extensions": {k: v for k, v in (d.event.extensions or {}).items()},
        }
        for d in details
    ]


def outcome(result):
    return {
        "succeeded": list(result.succeeded_lock_tokens),
        "failed": [
            {"lockToken": f.lock_token, "code": f.error.code, "message": f.error.message}
            for f in result.failed_lock_tokens
        ],
    }


def receive_until(consumer, count, deadline_secs):
    """Receives until `count` events arrived or the deadline passed."""
    got = []
    deadline = time.time() + deadline_secs
    while len(got) < count and time.time() < deadline:
        wait = max(1, min(10, int(deadline - time.time())))
        got.extend(consumer.receive(max_events=count - len(got), max_wait_time=wait))
    return got


def lifecycle(publisher, consumer):
    """Publish one and a batch; receive; renew; acknowledge, release with a delay, reject."""
    report = {}
    publisher.send(
        CloudEvent(
            source="/sdk/test",
            type="Sdk.Single",
            subject="orders/1",
            data={"n": 1, "name": "one"},
            extensions={"tenant": "contoso"},
        )
    )
    publisher.send(
        [CloudEvent(source="/sdk/test", type="Sdk.Batch", data={"n": n}) for n in (2, 3, 4)]
    )
    first = receive_until(consumer, 4, 30)
    report["received"] = received_facts(first)
    by_n = {d.event.data["n"]: d.broker_properties.lock_token for d in first}
    tokens = [by_n[n] for n in (1, 2, 3, 4)]

    report["renew"] = outcome(consumer.renew_locks(lock_tokens=tokens))
    report["acknowledge"] = outcome(consumer.acknowledge(lock_tokens=[tokens[0], "not-a-token"]))
    report["acknowledgeAgain"] = outcome(consumer.acknowledge(lock_tokens=[tokens[0]]))
    started = time.time()
    report["releaseDelayed"] = outcome(
        consumer.release(lock_tokens=[tokens[1]], release_delay=ReleaseDelay.TEN_SECONDS)
    )
    report["reject"] = outcome(consumer.reject(lock_tokens=[tokens[2]]))
    report["releaseNow"] = outcome(consumer.release(lock_tokens=[tokens[3]]))

    # The event released without delay comes back at once; the delayed one after ~10 s.
    again = receive_until(consumer, 1, 10)
    report["redelivered"] = received_facts(again)
    consumer.acknowledge(lock_tokens=[d.broker_properties.lock_token for d in again])
    delayed = receive_until(consumer, 1, 30)
    report["delayed"] = received_facts(delayed)
    report["delayedAfterSecs"] = time.time() - started
    consumer.acknowledge(lock_tokens=[d.broker_properties.lock_token for d in delayed])
    # Acknowledged, rejected and released-and-acknowledged: nothing is left.
    report["leftOver"] = received_facts(consumer.receive(max_events=10, max_wait_time=1))
    return report


def drain(publisher, consumer, expected):
    """Receives `expected` events (published by the test, e.g. over MQTT) and acknowledges them."""
    got = receive_until(consumer, expected, 30)
    result = outcome(consumer.acknowledge(lock_tokens=[d.broker_properties.lock_token for d in got]))
    return {"received": received_facts(got), "acknowledge": result}


def acknowledge(consumer, tokens):
    """Acknowledges lock tokens received elsewhere (on another node of a cluster)."""
    return {"acknowledge": outcome(consumer.acknowledge(lock_tokens=tokens))}


def main():
    scenario, endpoint, key, topic, subscription = sys.argv[1:6]
    extra = {"connection_verify": sys.argv[6]} if len(sys.argv) > 6 else {}
    credential = AzureKeyCredential(key)
    publisher = EventGridPublisherClient(endpoint, credential, namespace_topic=topic, **extra)
    consumer = EventGridConsumerClient(
        endpoint, credential, namespace_topic=topic, subscription=subscription, **extra
    )
    with publisher, consumer:
        if scenario == "lifecycle":
            report = lifecycle(publisher, consumer)
        elif scenario.startswith("drain:"):
            report = drain(publisher, consumer, int(scenario.split(":", 1)[1]))
        elif scenario.startswith("acknowledge:"):
            report = acknowledge(consumer, scenario.split(":", 1)[1].split(","))
        else:
            raise SystemExit(f"unknown scenario {scenario}")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
